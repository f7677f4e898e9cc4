"""Which stack the CLI talks to, and how: its URL, its secrets, its API token.

Local (the default): ``THREADLINE_URL``, else ``http://127.0.0.1:$THREADLINE_PORT``
(3000), the same variables ``make dev`` reads. Provider secrets come from the
running stack's ``GET /_dev/secrets`` (a local-only route), so nothing is copied
by hand. Deployed (``--at https://...``): secrets come from the environment
(``TWILIO_AUTH_TOKEN``, ``SLACK_SIGNING_SECRET``, ``META_APP_SECRET``,
``TELEGRAM_SECRET_TOKEN``), and nothing under ``/_dev`` exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

DEFAULT_PORT = 3000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TIMEOUT_SECONDS = 30.0


class CliError(Exception):
    """A one-line message for the user; the command exits non-zero with it."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Target:
    """A threadline stack at ``base_url``: the local one (``make dev``) or a deployed one."""

    def __init__(
        self,
        base_url: str,
        *,
        deployed: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        host = parts.hostname or ""
        # Deployed (--at): secrets from the environment and no /_dev routes, whatever
        # the host (a tunnel or a port-forward can be on 127.0.0.1 too).
        self.local = not deployed
        if host == "localhost" and parts.port:
            # The local stack listens on 127.0.0.1 and checks Twilio signatures against
            # its own URL (PublicBaseUrl), so sign for the URL it knows itself by.
            parts = parts._replace(netloc=f"127.0.0.1:{parts.port}")
        self.base_url = parts.geturl()
        self.environ = os.environ if environ is None else environ
        self.session = requests.Session()
        # A developer's HTTP(S)_PROXY must not see loopback traffic.
        self.session.trust_env = host not in LOOPBACK_HOSTS
        self._secrets: dict[str, str] | None = None

    @classmethod
    def resolve(cls, at: str | None, environ: Mapping[str, str] | None = None) -> Target:
        environ = os.environ if environ is None else environ
        if at:
            if urlsplit(at).scheme not in {"http", "https"}:
                raise CliError(f"--at wants a URL such as https://abc.execute-api..., not {at!r}")
            return cls(at, deployed=True, environ=environ)
        url = environ.get("THREADLINE_URL")
        if url:
            return cls(url, environ=environ)
        port = environ.get("THREADLINE_PORT") or str(DEFAULT_PORT)
        if not port.isdigit():
            raise CliError(f"THREADLINE_PORT={port!r} is not a port number")
        return cls(f"http://127.0.0.1:{port}", environ=environ)

    @property
    def api_token(self) -> str | None:
        return self.environ.get("THREADLINE_API_TOKEN") or None

    # ------------------------------------------------------------------- HTTP

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """One HTTP request; a stack that does not answer is a :class:`CliError`."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        try:
            return self.session.request(method, url, timeout=TIMEOUT_SECONDS, **kwargs)
        except requests.ConnectionError:
            hint = (
                "start it with `make dev`, or set THREADLINE_URL / pass --at URL"
                if self.local
                else "check the URL given to --at"
            )
            raise CliError(f"no threadline stack answers at {self.base_url}: {hint}") from None
        except requests.Timeout:
            raise CliError(
                f"{self.base_url} did not answer within {TIMEOUT_SECONDS:.0f} s"
            ) from None

    def api(
        self, method: str, path: str, *, allow: frozenset[int] = frozenset(), **kwargs: Any
    ) -> requests.Response:
        """A REST API call with the bearer token; refusals other than ``allow`` are errors."""
        if not self.local and not self.api_token:
            raise CliError(
                "a deployed stack's /v1 routes need SigV4-signed IAM credentials, which this "
                "CLI does not send; set THREADLINE_API_TOKEN if your stack takes a bearer token"
            )
        headers = dict(kwargs.pop("headers", None) or {})
        if self.api_token:
            headers["Authorization"] = f"Bearer {self.api_token}"
        response = self.request(method, path, headers=headers, **kwargs)
        if response.status_code in allow or response.ok:
            return response
        if response.status_code in {401, 403}:
            raise CliError(
                f"the API refused the request ({response.status_code}): set THREADLINE_API_TOKEN "
                "to the token the stack was started with"
            )
        raise CliError(
            f"{method} {path.split('?')[0]} answered {response.status_code}: {error_text(response)}"
        )

    def dev(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A call to a local-only ``/_dev`` route."""
        if not self.local:
            raise CliError(f"{path} exists only on the local stack (`make dev`), not at --at URLs")
        response = self.request(method, path, **kwargs)
        if response.status_code == 404 and path == "/_dev/secrets":
            raise CliError(f"{self.base_url} is not a threadline local stack (no /_dev/secrets)")
        return response

    # ---------------------------------------------------------------- secrets

    def secret(self, name: str) -> str:
        """A provider secret: the local stack's own, or the environment's for --at."""
        if not self.local:
            value = self.environ.get(name)
            if not value:
                raise CliError(
                    f"{name} is not set: a deployed stack's secrets come from your environment"
                )
            return value
        if self._secrets is None:
            response = self.dev("GET", "/_dev/secrets")
            if not response.ok:
                raise CliError(f"GET /_dev/secrets answered {response.status_code}")
            self._secrets = dict(response.json().get("secrets") or {})
        value = self._secrets.get(name)
        if not value:
            raise CliError(f"the local stack has no {name} (its template names no such secret)")
        return value


def error_text(response: requests.Response) -> str:
    """The message of an error answer, on one line."""
    try:
        document = response.json()
    except ValueError:
        return response.text.strip().replace("\n", " ")[:300] or response.reason
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and error.get("message"):
            code = f" ({error['code']})" if error.get("code") else ""
            return f"{error['message']}{code}"
        if document.get("message"):
            return str(document["message"])
    return str(document)[:300]
