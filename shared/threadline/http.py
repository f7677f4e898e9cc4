"""The one HTTP client for providers without an official Python SDK, and for CRM webhooks.

threadline calls the Meta Graph API, the Telegram Bot API and CRM webhook receivers
through this module, never through a second HTTP library. It wraps urllib3, which
botocore already loads in every Lambda, so it adds nothing to a cold start.

Every call has a connect and a read timeout. Nothing is retried and no redirect is
followed here: the dispatcher and the webhook worker own retries (with backoff and a
dead-letter queue), and a redirect to another host would bypass the checks made on
the URL a caller chose.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import urllib3

from threadline import __version__

USER_AGENT = f"threadline/{__version__}"
CONNECT_TIMEOUT_SECONDS = 3.05
READ_TIMEOUT_SECONDS = 10.0


class TransportError(Exception):
    """No HTTP answer came back: connection refused or reset, DNS failure, timeout."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class HttpResponse:
    status: int
    # Header names are lower-cased.
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """429 and 5xx: the provider asks to be tried again later."""
        return self.status == 429 or self.status >= 500

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return jsonlib.loads(self.body)

    def retry_after(self, now: datetime | None = None) -> float | None:
        """Seconds the ``Retry-After`` header asks for (delta or HTTP date), if any."""
        return parse_retry_after(self.headers.get("retry-after"), now)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """RFC 9110 ``Retry-After``: delay seconds or an HTTP date; None when absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    # delay-seconds is digits only; float() would also take "nan", "inf" and "-5".
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


@dataclass
class HttpClient:
    """A pooled client; keep one per process (module level) so connections are reused."""

    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    _pool: urllib3.PoolManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pool = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout),
            headers={"User-Agent": USER_AGENT},
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        timeout: float | None = None,
        connect_to: str | None = None,
    ) -> HttpResponse:
        """Send one request. ``json`` or ``body`` is the payload; ``fields`` a query string.

        ``connect_to`` is the IP address to connect to instead of resolving the URL's
        host again: the one :func:`threadline.ssrf.check_target` checked. TLS still
        sends and verifies the URL's host name (SNI and certificate), and the Host
        header names it, so the receiver sees an ordinary request; what it closes is
        the window between the check and the connection (DNS rebinding).
        """
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            all_headers.setdefault("Content-Type", "application/json")
        options: dict[str, Any] = {"headers": all_headers, "redirect": False}
        if timeout is not None:
            # Passing timeout=None would mean no timeout at all, so it is left out.
            options["timeout"] = urllib3.Timeout(
                connect=min(self.connect_timeout, timeout), read=timeout
            )
        if fields is not None and body is None:
            options["fields"] = dict(fields)
        else:
            options["body"] = body
        try:
            if connect_to is None:
                answer = self._pool.request(method, url, **options)
            else:
                answer = self._pinned_request(method, url, connect_to, options)
        except urllib3.exceptions.NewConnectionError as error:
            # Checked first: urllib3 makes a refused connection a kind of timeout.
            raise TransportError(f"{method} could not connect") from error
        except urllib3.exceptions.TimeoutError as error:
            raise TransportError(f"{method} timed out", timed_out=True) from error
        except urllib3.exceptions.HTTPError as error:
            # The message names the host but never the path or query, which can carry
            # tokens (Telegram puts the bot token in the path).
            raise TransportError(f"{method} failed: {type(error).__name__}") from error
        return HttpResponse(
            status=answer.status,
            headers={name.lower(): value for name, value in answer.headers.items()},
            body=answer.data,
        )

    def _pinned_request(
        self, method: str, url: str, address: str, options: dict[str, Any]
    ) -> urllib3.BaseHTTPResponse:
        """``method url`` over a connection to ``address``, never to a fresh DNS answer."""
        parts = urllib3.util.parse_url(url)
        host = parts.host or ""
        https = (parts.scheme or "").lower() == "https"
        port = parts.port or (443 if https else 80)
        pool: urllib3.HTTPConnectionPool
        common: dict[str, Any] = {
            "timeout": options.get("timeout")
            or urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout),
            "retries": False,
            "maxsize": 1,
        }
        if https:
            pool = urllib3.HTTPSConnectionPool(
                address, port, server_hostname=host, assert_hostname=host, **common
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, **common)
        headers = dict(options["headers"])
        headers["Host"] = host if parts.port is None else f"{host}:{port}"
        target = parts.request_uri
        if "fields" in options:
            target += ("&" if "?" in target else "?") + urlencode(options["fields"])
        try:
            return pool.urlopen(
                method, target, body=options.get("body"), headers=headers, redirect=False
            )
        finally:
            pool.close()

    def post_json(
        self,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        return self.request("POST", url, json=payload, headers=headers, timeout=timeout)

    def get(
        self,
        url: str,
        *,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        return self.request("GET", url, fields=fields, headers=headers, timeout=timeout)


_shared_client: HttpClient | None = None


def http_client() -> HttpClient:
    """The process-wide client (created on first use)."""
    global _shared_client
    if _shared_client is None:
        _shared_client = HttpClient()
    return _shared_client
