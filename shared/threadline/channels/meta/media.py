"""WhatsApp media, downloaded on demand by the API (never in the webhook)."""

from __future__ import annotations

from threadline.channels.base import SendFailed
from threadline.channels.meta.graph import (
    GraphClient,
    graph_api_base_url,
    graph_version,
    send_failed,
)


class WhatsAppMediaClient(GraphClient):
    """Fetches a WhatsApp media file by its id, on demand (never in the webhook).

    The Cloud API gives a media URL valid for five minutes (``GET /<media-id>``),
    which is then downloaded with the same token. Callers keep the bytes where they
    need them (the raw bucket, under their sha256).
    """

    def fetch(self, media_id: str) -> tuple[bytes, str | None]:
        """(bytes, content type) of the media; SendFailed (retryable or not) otherwise."""
        from threadline.http import TransportError, http_client

        client = self._client or http_client()
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        try:
            located = client.get(f"{self.base_url}/{media_id}", headers=headers)
            if not located.ok:
                raise send_failed(located)
            document = located.json()
            url = document.get("url") if isinstance(document, dict) else None
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise SendFailed("bad_response", "no media URL in the answer", retryable=False)
            media = client.get(url, headers=headers)
        except TransportError as exc:
            raise SendFailed("network_error", "Meta could not be reached", retryable=True) from exc
        except ValueError as exc:
            raise SendFailed(
                "bad_response", "the media answer is not JSON", retryable=False
            ) from exc
        if not media.ok:
            raise send_failed(media)
        return media.body, media.headers.get("content-type")


def media_client_from_env() -> WhatsAppMediaClient:
    """The on-demand WhatsApp media downloader as template.yaml configures it (API)."""
    from threadline.secrets import get_secret

    return WhatsAppMediaClient(
        access_token=lambda: get_secret("META_ACCESS_TOKEN"),
        api_base_url=graph_api_base_url(),
        version=graph_version(),
    )
