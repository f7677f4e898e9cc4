"""The one shape every channel module has.

A channel module turns a provider's webhook request into normalized messages:

1. ``verify(request)`` raises :class:`~threadline.errors.SignatureInvalid` unless the
   provider signed exactly this request (its official SDK validator where one exists);
2. ``normalize(request)`` returns the :class:`InboundMessage` drafts and the
   :class:`StatusUpdate` s it carries, or raises
   :class:`~threadline.errors.MalformedRequest`;
3. ``acknowledge()`` is the answer the provider expects once they are stored.

The webhook pipeline (:mod:`threadline.webhook`) calls these in that order, stores
the drafts and answers; adding a channel means writing these three methods.

Two optional items may also come out of ``normalize``: a :class:`MessageEdit` (the
provider changed or deleted a message it sent us before: Slack's
``message_changed``/``message_deleted``), and an :class:`Acknowledgement` when this
one request needs its own answer (Slack's ``url_verification`` handshake echoes a
challenge). The pipeline answers with that instead of ``acknowledge()``, so the
protocol stays three methods with no per-request state on the adapter.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from threadline.errors import MalformedRequest
from threadline.jsonsafe import load_json
from threadline.model import Model
from threadline.schema import (
    AuthorRole,
    Channel,
    Identity,
    Message,
    MessageStatus,
    Part,
    utc_now,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

# The request headers an envelope keeps, per provider: what verifying the request
# again needs (the signature and the values it covers) and what explains a delivery
# (retries). An allowlist, so a header a provider adds later is not stored unseen.
# Telegram's X-Telegram-Bot-Api-Secret-Token is a fixed shared secret, not a
# signature: keeping it would let anyone holding an export forge Telegram webhooks.
COMMON_AUDIT_HEADERS = frozenset({"content-type", "user-agent"})
AUDIT_HEADERS: Mapping[str, frozenset[str]] = {
    "twilio": frozenset({"x-twilio-signature", "i-twilio-idempotency-token"}),
    "slack": frozenset(
        {
            "x-slack-signature",
            "x-slack-request-timestamp",
            "x-slack-retry-num",
            "x-slack-retry-reason",
        }
    ),
    "meta": frozenset({"x-hub-signature-256", "x-hub-signature"}),
    "telegram": frozenset(),
}


def audit_headers(headers: Mapping[str, str], provider: str | None) -> dict[str, str]:
    """The headers of ``headers`` an envelope may keep for ``provider`` (names lower-cased)."""
    allowed = COMMON_AUDIT_HEADERS | AUDIT_HEADERS.get(provider or "", frozenset())
    return {name.lower(): value for name, value in headers.items() if name.lower() in allowed}


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP request, as the provider sent (and signed) it."""

    method: str
    url: str
    """The full URL the provider called: what it signed. Query string byte for byte."""
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: bytes
    received_at: datetime = field(default_factory=utc_now)

    @classmethod
    def from_http_api_event(
        cls, event: Mapping[str, Any], public_base_url: str | None = None
    ) -> WebhookRequest:
        """Build from an API Gateway HTTP API (payload v2.0) event.

        The URL is ``public_base_url`` + path when a proxy or custom domain sits in
        front (the provider signed that host), else the request's own scheme and host.
        ``rawQueryString`` is used as is: re-encoding or re-ordering it would change
        what the provider signed.
        """
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        context = event.get("requestContext") or {}
        path = event.get("rawPath") or (context.get("http") or {}).get("path") or "/"
        query = event.get("rawQueryString") or ""
        if public_base_url:
            base = public_base_url.rstrip("/")
        else:
            scheme = headers.get("x-forwarded-proto", "https").split(",")[0].strip()
            host = headers.get("host") or context.get("domainName") or "localhost"
            base = f"{scheme}://{host}"
        url = base + path + (f"?{query}" if query else "")
        raw_body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw_body, validate=True)
            except ValueError as exc:
                raise MalformedRequest("body is not valid base64") from exc
        else:
            body = raw_body.encode("utf-8")
        method = (context.get("http") or {}).get("method", "POST")
        return cls(method=method, url=url, headers=headers, body=body)

    def envelope(self, provider: str | None = None) -> bytes:
        """The request as stored for audit and replay: enough to verify it again.

        Only the headers :func:`audit_headers` allows for ``provider`` are kept: the
        signature and what it covers, never a bearer secret (Telegram's secret token).
        """
        try:
            body: dict[str, str] = {"body": self.body.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"body_base64": base64.b64encode(self.body).decode("ascii")}
        document = {
            "method": self.method,
            "url": self.url,
            "headers": audit_headers(self.headers, provider),
            "received_at": self.received_at.isoformat(),
            **body,
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class InboundMessage(Model):
    """A message as a channel understood it, before it has a customer or a timeline id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    provider: str
    provider_message_id: str = Field(min_length=1, max_length=256)
    author_role: AuthorRole = AuthorRole.CUSTOMER
    sender: Identity
    recipient: Identity | None = None
    sender_display_name: str | None = None
    sent_at: datetime | None = None
    parts: list[Part] = Field(default_factory=list)
    in_reply_to: str | None = None
    thread_id: str | None = None
    channel_data: dict[str, Any] = Field(default_factory=dict)
    consent_keyword: str | None = None
    """An opt-out/opt-in keyword the provider itself recognised (Twilio's OptOutType)."""
    verified_identities: list[Identity] = Field(default_factory=list)
    """Other identities of the sender that the provider has verified (Slack: the
    account's confirmed e-mail). A new sender is filed on the customer who already
    owns one of them, so channels share one timeline; nothing unverified goes here."""
    reply_to: dict[str, str] | None = None
    """Where a reply to this sender goes on this channel beyond the identity itself
    (Slack: the conversation id and thread). Kept on the identity; outbound replies
    carry it in ``channel_data["reply_to"]``."""


class StatusUpdate(Model):
    """A provider telling us what became of a message we sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    provider_message_id: str = Field(min_length=1, max_length=256)
    status: MessageStatus
    at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    customer_id: str | None = None
    """Known when the callback URL we gave the provider names the message."""
    message_id: str | None = None
    channel_data: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Acknowledgement:
    """What to answer the provider once everything it sent is stored."""

    status: int = 200
    content_type: str = "application/json"
    body: str = ""


class MessageEdit(Model):
    """A provider telling us a message it sent before was changed or deleted.

    Not a new message: the stored one is updated, its earlier parts kept in its
    ``revisions``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    provider_message_id: str = Field(min_length=1, max_length=256)
    """The edited message's id, as it was stored (the DEDUP key finds it)."""
    kind: Literal["edited", "deleted"]
    edit_id: str = Field(min_length=1, max_length=256)
    """The provider's id for this change (Slack's event_id): a retry is applied once."""
    parts: list[Part] = Field(default_factory=list)
    """The message's new content; empty for a deletion."""
    at: datetime | None = None
    channel_data: dict[str, Any] = Field(default_factory=dict)


Normalized = InboundMessage | StatusUpdate | MessageEdit | Acknowledgement


def build(model: type[ModelT], **fields: Any) -> ModelT:
    """``model(**fields)``, or MalformedRequest when the provider's values do not fit.

    Channels build their messages and status updates through this so that an
    out-of-range value from a provider (an over-long id, a latitude of 91) is a
    400, never a 500.
    """
    try:
        return model(**fields)
    except ValidationError as exc:
        fields_at_fault = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise MalformedRequest(f"invalid values for: {', '.join(fields_at_fault)}") from exc


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    aliases: tuple[str, ...] = ()
    """Other ids the provider's messages will use for this one (e-mail: the
    Message-ID header we wrote), mapped to the message like the provider id, so a
    customer's reply that names one can be threaded."""
    delivered: bool = False
    """The provider handed it to the customer's device while we waited (web chat's
    push to an open socket): the dispatcher records ``delivered`` right away."""


class SendFailed(Exception):
    """The provider did not take the message.

    ``retryable`` is true for rate limits (429), provider errors (5xx) and network
    failures: the dispatcher tries again later. Anything else is final.
    """

    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class Sender(Protocol):
    """What each channel module offers the dispatcher for outbound messages."""

    provider: str

    def send(self, message: Message) -> SendResult: ...


class ChannelAdapter(Protocol):
    """The protocol each module under ``threadline.channels`` implements."""

    provider: str

    def verify(self, request: WebhookRequest) -> None: ...

    def normalize(self, request: WebhookRequest) -> list[Normalized]: ...

    def acknowledge(self) -> Acknowledgement: ...


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON webhook body that must be an object; MalformedRequest (400) otherwise.

    The one parser for providers' JSON bodies (:func:`threadline.jsonsafe.load_json`):
    depth bounded, NaN and out-of-range numbers refused, lone surrogates repaired so
    the message is kept, and a channel's normalizer only sees values it can store.
    """
    document = load_json(body, surrogates="repair")
    if not isinstance(document, dict):
        raise MalformedRequest("body is not a JSON object")
    return document
