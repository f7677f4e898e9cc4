"""The Graph API client the Meta senders and the media downloader share.

Its root is ``META_API_BASE_URL`` (template parameter ``MetaApiBaseUrl``), the real
graph.facebook.com unless the deployment names another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadline.channels.base import SendFailed
from threadline.settings import api_base_url

if TYPE_CHECKING:
    # urllib3 (under threadline.http) is imported only when a call is made: the
    # webhook handler never calls out, and its cold start should not pay for it.
    from threadline.http import HttpClient, HttpResponse

GRAPH_API_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_API_VERSION = "v23.0"
# Graph API error codes that mean "slow down" (app, user, page, WhatsApp account and
# pair rate limits): the dispatcher retries them with backoff. Everything else is final.
RETRYABLE_GRAPH_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})


def graph_api_base_url() -> str:
    """The Graph API's root as this function's environment names it."""
    return api_base_url("META_API_BASE_URL", GRAPH_API_URL)


def graph_version() -> str:
    return os.environ.get("META_GRAPH_API_VERSION") or DEFAULT_GRAPH_API_VERSION


def send_failed(response: HttpResponse) -> SendFailed:
    """A Graph API refusal: rate limits and server errors retryable, anything else final."""
    try:
        document = response.json()
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    code_number = code if isinstance(code, int) and not isinstance(code, bool) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    retryable = response.retryable or code_number in RETRYABLE_GRAPH_CODES
    return SendFailed(
        str(code_number) if code_number is not None else str(response.status),
        message or f"the Graph API answered {response.status}",
        retryable=retryable,
        retry_after=response.retry_after() if retryable else None,
    )


class GraphClient:
    """Calls the Graph API at ``api_base_url`` (a version's root) with a bearer token."""

    def __init__(
        self,
        *,
        access_token: Callable[[], str],
        api_base_url: str = GRAPH_API_URL,
        version: str = DEFAULT_GRAPH_API_VERSION,
        client: HttpClient | None = None,
    ) -> None:
        self._access_token = access_token
        self.base_url = f"{api_base_url.rstrip('/')}/{version}"
        self._client = client

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        from threadline.http import TransportError, http_client

        client = self._client or http_client()
        # The token goes in a header, not the query string, so no URL carries it.
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        try:
            response = client.post_json(f"{self.base_url}/{path}", payload, headers=headers)
        except TransportError as exc:
            raise SendFailed("network_error", "Meta could not be reached", retryable=True) from exc
        if not response.ok:
            raise send_failed(response)
        try:
            document = response.json()
        except ValueError as exc:
            raise SendFailed(
                "bad_response", "the Graph API answer is not JSON", retryable=False
            ) from exc
        if not isinstance(document, dict):
            raise SendFailed(
                "bad_response", "the Graph API answer is not an object", retryable=False
            )
        return document
