"""API Gateway HTTP API (payload 2.0) events as Twilio's requests arrive, and a store double.

The event shape follows "Create AWS Lambda proxy integrations for HTTP APIs in API
Gateway" (payload format 2.0): lower-cased header names, ``rawPath`` and
``rawQueryString`` as sent, and a form body base64-encoded with ``isBase64Encoded``.
Signatures come from twilio's own ``RequestValidator.compute_signature``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from threadline.channels.base import InboundMessage
from threadline.schema import RawPayloadRef
from threadline.store import IngestResult, KeptRaw, RawPayload

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # a fake auth token
API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
PATH = "/webhooks/twilio/messaging"


def url_for(host: str = API_HOST, path: str = PATH, query: str = "", scheme: str = "https") -> str:
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def sign(
    url: str, params: dict[str, str], token: str = AUTH_TOKEN, algorithm: str | None = None
) -> str:
    validator = RequestValidator(token)
    if algorithm is None:
        return validator.compute_signature(url, params)
    return validator.compute_signature(url, params, algorithm)


def http_api_event(
    body: bytes | str,
    *,
    signature: str | None = None,
    host: str = API_HOST,
    path: str = PATH,
    query: str = "",
    headers: dict[str, str] | None = None,
    base64_encoded: bool = True,
) -> dict[str, Any]:
    """An HTTP API v2.0 event for a POST carrying ``body``."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    all_headers = {
        "accept": "*/*",
        "content-length": str(len(raw)),
        "content-type": "application/x-www-form-urlencoded",
        "host": host,
        "i-twilio-idempotency-token": "5f0a3a2e-0000-4000-8000-000000000000",
        "user-agent": "TwilioProxy/1.1",
        "x-amzn-trace-id": "Root=1-00000000-000000000000000000000000",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if signature is not None:
        all_headers["x-twilio-signature"] = signature
    all_headers.update(headers or {})
    if base64_encoded:
        event_body: str = base64.b64encode(raw).decode("ascii")
    else:
        event_body = body if isinstance(body, str) else body.decode("utf-8")
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".")[0],
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "TwilioProxy/1.1",
            },
            "requestId": "Xo9ZxjHmIAMEJdw=",
            "routeKey": f"POST {path}",
            "stage": "$default",
            "time": "23/Nov/2026:07:16:49 +0000",
            "timeEpoch": 1795331809000,
        },
        "body": event_body,
        "isBase64Encoded": base64_encoded,
    }


def signed_event(
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
    host: str = API_HOST,
    path: str = PATH,
    query: str = "",
    headers: dict[str, str] | None = None,
    algorithm: str | None = None,
) -> dict[str, Any]:
    """A form POST signed by Twilio for ``signed_url`` (default: the URL it arrives at)."""
    url = signed_url or url_for(host, path, query)
    return http_api_event(
        urlencode(params),
        signature=sign(url, params, token, algorithm),
        host=host,
        path=path,
        query=query,
        headers=headers,
    )


@dataclass
class RecordingStore:
    """Stands in for TimelineStore: records keep_raw/ingest calls, or raises ``fail_with``."""

    fail_on: str | None = None
    """``"keep_raw"`` or ``"ingest"``: the call that raises ``fail_with``."""
    fail_with: BaseException | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def raws(self) -> list[RawPayload]:
        return [arg for name, arg in self.calls if name == "keep_raw"]

    @property
    def ingested(self) -> list[InboundMessage]:
        return [arg[0] for name, arg in self.calls if name == "ingest"]

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw:
        if self.fail_on == "keep_raw" and self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("keep_raw", raw))
        ref = RawPayloadRef(
            location="inline",
            content_type=raw.content_type,
            size=len(raw.envelope),
            sha256=raw.body_sha256,
        )
        return KeptRaw(ref=ref, inline=raw.envelope.decode("utf-8"))

    def ingest(
        self, inbound: InboundMessage, raw: KeptRaw, *, received_at: datetime | None = None
    ) -> IngestResult:
        if self.fail_on == "ingest" and self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("ingest", (inbound, raw, received_at)))
        return IngestResult(message_id="01J0000000000000000000000M", customer_id="01J0C")
