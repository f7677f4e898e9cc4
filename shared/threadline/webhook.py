"""The webhook pipeline every channel handler runs: verify, normalize, store, answer.

Its answers follow the rules providers rely on: 2xx only once every message in the
request is durably stored; 403 for a bad signature; 400 for a malformed body; 413
for an oversized one; 5xx when storage failed, so the provider retries (and the
store acknowledges the retry without storing twice). No answer carries a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel

from threadline.channels.base import (
    Acknowledgement,
    ChannelAdapter,
    InboundMessage,
    MessageEdit,
    Normalized,
    StatusUpdate,
    WebhookRequest,
)
from threadline.errors import (
    MalformedRequest,
    PayloadTooLarge,
    SignatureInvalid,
    StorageUnavailable,
    ThreadlineError,
)
from threadline.logs import logger
from threadline.settings import webhook_settings
from threadline.store import KeptRaw, RawPayload
from threadline.telemetry import MESSAGES_RECEIVED, count_message

MAX_BODY_BYTES = 1024 * 1024
# The most one normalized message may weigh (its JSON: parts and channel_data). A
# DynamoDB item holds 400 KB and an EventBridge event 256 KB; every provider's own
# text limit (docs/channels.md, "Message size") is far below this.
MAX_MESSAGE_BYTES = 200 * 1024


def http_response(
    status: int, body: str = "", content_type: str = "application/json"
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2.0) response."""
    return {"statusCode": status, "headers": {"Content-Type": content_type}, "body": body}


def error_response(error: ThreadlineError) -> dict[str, Any]:
    document = {"error": {"code": error.code, "message": error.message}}
    return http_response(error.status, json.dumps(document))


class WebhookStore(Protocol):
    """What the pipeline needs of the store: TimelineStore, or a test double."""

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw: ...

    def ingest(
        self, inbound: InboundMessage, raw: KeptRaw, *, received_at: datetime | None = None
    ) -> Any: ...

    def apply_status(self, update: StatusUpdate) -> Any: ...

    def apply_edit(self, edit: MessageEdit, raw: KeptRaw | None = None) -> Any: ...


def process_request(
    request: WebhookRequest, channel: ChannelAdapter, store: WebhookStore
) -> Acknowledgement:
    """Verify, normalize and store one provider request; the answer it gets.

    Raises ThreadlineError for requests the provider must not retry as they are (bad
    signature, malformed, too large) and anything else when storage failed.
    """
    if len(request.body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    verify_request(request, channel)
    normalized = normalize_request(request, channel)
    messages = [item for item in normalized if isinstance(item, InboundMessage)]
    statuses = [item for item in normalized if isinstance(item, StatusUpdate)]
    edits = [item for item in normalized if isinstance(item, MessageEdit)]
    answers = [item for item in normalized if isinstance(item, Acknowledgement)]
    kept: list[InboundMessage | MessageEdit | StatusUpdate] = [*messages, *edits, *statuses]
    oversized = [item for item in kept if stored_size(item) > MAX_MESSAGE_BYTES]
    raw: KeptRaw | None = None
    if messages or edits or oversized:
        raw = store.keep_raw(
            RawPayload(
                envelope=request.envelope(channel.provider),
                provider=channel.provider,
                body_sha256=request.body_sha256,
            ),
            # One copy per request: a batch's messages share the S3 object. An
            # edit's request is kept in S3 and named by the message's revision. A
            # refused request is kept in S3 too, for audit.
            may_inline=len(messages) == 1 and not edits and not oversized,
        )
    if oversized:
        # No provider's documented limits come near (docs/channels.md, "Message
        # size"): only a forged or broken request gets here. It can never fit an
        # item, so it is refused for good (413) rather than answered 503 on every
        # retry; the request itself is kept in the raw bucket for audit.
        logger.warning(
            "webhook content too large to store",
            extra={
                "provider": channel.provider,
                "raw_key": raw.ref.key if raw else None,
                "size": max(stored_size(item) for item in oversized),
            },
        )
        raise PayloadTooLarge(f"the content is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        for message in messages:
            assert raw is not None
            logger.set_correlation_id(message.provider_message_id)
            result = store.ingest(message, raw, received_at=request.received_at)
            if not getattr(result, "duplicate", False):
                count_message(MESSAGES_RECEIVED, message.channel.value)
        for edit in edits:
            logger.set_correlation_id(edit.provider_message_id)
            store.apply_edit(edit, raw)
        for update in statuses:
            logger.set_correlation_id(update.provider_message_id)
            store.apply_status(update)
    except StorageUnavailable as error:
        if _refused_as_invalid(error):
            # DynamoDB refused the item itself (too large, too deep): a retry gets
            # the same answer, so the provider must not be asked to retry.
            raise PayloadTooLarge("the content cannot be stored as sent") from error
        raise
    # A request that needs its own answer (a handshake) says so itself.
    return answers[0] if answers else channel.acknowledge()


def verify_request(request: WebhookRequest, channel: ChannelAdapter) -> None:
    """``channel.verify``, with every way a forged request can break it answered 403.

    Providers send ASCII headers; a header holding anything else is a forgery, and
    the SDK validators raise TypeError or ValueError on it (hmac compares ASCII only).
    """
    for name, value in request.headers.items():
        if not (name.isascii() and value.isascii()):
            raise SignatureInvalid("a request header holds non-ASCII bytes")
    try:
        channel.verify(request)
    except (TypeError, ValueError, UnicodeError) as exc:
        raise SignatureInvalid("the signature headers are not well formed") from exc


def normalize_request(request: WebhookRequest, channel: ChannelAdapter) -> list[Normalized]:
    """``channel.normalize``; a body it could not read is a 400, whatever broke.

    Normalizing is a function of the signed body alone, so a retry of the same body
    breaks the same way: answering 5xx would only make the provider retry forever.
    The stack trace is logged (no body), so the parser can be fixed.
    """
    try:
        return channel.normalize(request)
    except ThreadlineError:
        raise
    except Exception as exc:
        logger.exception("webhook body not understood", extra={"provider": channel.provider})
        raise MalformedRequest("the body does not have the provider's shape") from exc


def stored_size(item: BaseModel) -> int:
    """Bytes of ``item`` as JSON: what its message item and event will carry."""
    return len(item.model_dump_json().encode("utf-8"))


def _refused_as_invalid(error: StorageUnavailable) -> bool:
    cause = error.__cause__
    response = getattr(cause, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code == "ValidationException"


def handle_webhook(
    event: Mapping[str, Any], channel: ChannelAdapter, store: WebhookStore
) -> dict[str, Any]:
    """Run one provider request through ``channel`` into ``store``; the HTTP answer."""
    try:
        request = WebhookRequest.from_http_api_event(event, webhook_settings().public_base_url)
        ack = process_request(request, channel, store)
        return http_response(ack.status, ack.body, ack.content_type)
    except ThreadlineError as error:
        logger.warning(
            "webhook refused",
            extra={"provider": channel.provider, "status": error.status, "code": error.code},
        )
        return error_response(error)
    except Exception:
        logger.exception("webhook failed", extra={"provider": channel.provider})
        return error_response(ThreadlineError("internal error"))


def request_from_queue(
    body: str,
    attributes: Mapping[str, str],
    path: str,
    *,
    signature_header: str,
    public_base_url: str | None = None,
) -> WebhookRequest:
    """A provider request that an API Gateway service integration parked on SQS.

    ``attributes`` are the message attributes the integration mapped: ``Signature``
    (the value of the provider's ``signature_header``), ``Host`` and ``ReceivedAt`` (epoch ms). The
    URL is rebuilt the way ``from_http_api_event`` builds it, so the signature is
    checked against the URL the provider called.
    """
    if public_base_url:
        base = public_base_url.rstrip("/")
    else:
        base = f"https://{attributes.get('Host') or 'localhost'}"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if attributes.get("Signature"):
        headers[signature_header.lower()] = attributes["Signature"]
    received_at = _epoch_millis(attributes.get("ReceivedAt"))
    request = WebhookRequest(method="POST", url=base + path, headers=headers, body=body.encode())
    return replace(request, received_at=received_at) if received_at else request


def _epoch_millis(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or "") / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
