"""The table's items: keys, (de)serialization and the message item, in one place.

Every module that reads or writes the threadline table goes through these, so an
item has one shape whoever writes it. docs/storage.md describes the layout.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from functools import cache
from typing import Any

from ulid import ULID

from threadline.errors import MalformedRequest
from threadline.schema import Identity, Message

PROFILE_SK = "PROFILE"
IDENT_SK = "IDENT"
DEDUP_SK = "DEDUP"
IDEMPOTENCY_SK = "IDEMPOTENCY"


def customer_pk(customer_id: str) -> str:
    return f"CUST#{customer_id}"


def identity_pk(identity: Identity) -> str:
    return f"IDENT#{identity.kind.value}#{identity.value}"


def message_sk(message_id: str) -> str:
    return f"MSG#{message_id}"


def conversation_sk(conversation_id: str) -> str:
    return f"CONV#{conversation_id}"


def conversation_pointer_pk(conversation_id: str) -> str:
    """The item that maps a conversation id to its customer (no scan, no index)."""
    return f"CONV#{conversation_id}"


CONVERSATION_POINTER_SK = "CONV"


def dedup_pk(provider: str, provider_message_id: str) -> str:
    return f"DEDUP#{provider}#{provider_message_id}"


def idempotency_pk(customer_id: str, key: str) -> str:
    return f"IDEMPOTENCY#{customer_id}#{key}"


def blob_pk(bucket: str, key: str) -> str:
    """The references to one S3 object (raw payload, attachment) that messages hold."""
    return f"BLOB#{bucket}/{key}"


def blob_ref_sk(message_id: str) -> str:
    return f"REF#{message_id}"


def expires_at(now: datetime, retention_days: int) -> int | None:
    """The DynamoDB TTL value (epoch seconds) ``retention_days`` after ``now``; None keeps."""
    if retention_days <= 0:
        return None
    return int(now.timestamp()) + retention_days * 86400


def stored_objects(message: Message, raw_bucket: str) -> list[tuple[str, str]]:
    """(bucket, key) of every S3 object a message points at, once each.

    The raw payload (and the raw payloads of its edits) and media parts kept in the
    raw bucket (``s3_key``: e-mail attachments, stored under their content hash).
    """
    from threadline.schema import MediaPart

    found: dict[tuple[str, str], None] = {}
    raws = [message.raw, *(revision.raw for revision in message.revisions)]
    for raw in raws:
        if raw is not None and raw.location == "s3" and raw.bucket and raw.key:
            found[(raw.bucket, raw.key)] = None
    parts = [*message.parts, *(p for revision in message.revisions for p in revision.parts)]
    for part in parts:
        if isinstance(part, MediaPart) and part.s3_key:
            found[(raw_bucket, part.s3_key)] = None
    return list(found)


def new_id(at: datetime) -> str:
    return str(ULID.from_datetime(at))


@cache
def _serializer() -> Any:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


@cache
def _deserializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    serializer = _serializer()
    return {k: serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    deserializer = _deserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


def encode_cursor(sort_key: str) -> str:
    document = json.dumps({"v": 1, "sk": sort_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(document).decode().rstrip("=")


MAX_CURSOR_LENGTH = 2048


def decode_cursor(cursor: str, *, prefix: str = "MSG#") -> str:
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise MalformedRequest("cursor is not one this API returned", code="invalid_cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        document = json.loads(base64.urlsafe_b64decode(padded.encode()))
        sort_key = document["sk"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise MalformedRequest(
            "cursor is not one this API returned", code="invalid_cursor"
        ) from exc
    if not isinstance(sort_key, str) or not sort_key.startswith(prefix):
        raise MalformedRequest("cursor is not one this API returned", code="invalid_cursor")
    return sort_key


# Fields of a message that change after it is written (status callbacks, the
# dispatcher) live in their own attributes, so updates can carry conditions; the
# rest of the message is one JSON document.
MUTABLE_MESSAGE_FIELDS = frozenset(
    {"status", "status_history", "channel", "recipient", "sender", "provider_message_id"}
)


def message_item(message: Message, *, raw_inline: str | None = None) -> dict[str, Any]:
    """The table item for ``message`` (before to_item)."""
    return {
        "pk": customer_pk(message.customer_id),
        "sk": message_sk(message.id),
        "type": "message",
        "customer_id": message.customer_id,
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "direction": message.direction.value,
        "provider": message.provider,
        "channel": message.channel.value,
        "recipient": str(message.recipient) if message.recipient else None,
        "sender": str(message.sender) if message.sender else None,
        "provider_message_id": message.provider_message_id,
        "status": message.status.value,
        "status_history": [
            change.model_dump(mode="json", exclude_none=True) for change in message.status_history
        ],
        "message": message.model_dump_json(exclude=set(MUTABLE_MESSAGE_FIELDS)),
        "raw": raw_inline,
    }


def message_from_item(item: dict[str, Any]) -> Message:
    document = json.loads(item["message"])
    document["status"] = item["status"]
    document["status_history"] = item.get("status_history", [])
    document["channel"] = item["channel"]
    document["provider_message_id"] = item.get("provider_message_id")
    # The dispatcher records who actually carried it (WhatsApp: Twilio or Meta).
    document["provider"] = item.get("provider") or document.get("provider")
    for field in ("recipient", "sender"):
        value = item.get(field)
        document[field] = Identity.parse(value).model_dump() if value else None
    return Message.model_validate(document)


def cancellation_reasons(exc: Exception) -> list[dict[str, Any]]:
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons")
    return list(reasons) if reasons else []


def is_conflict(exc: Exception) -> bool:
    """A cancellation caused by a concurrent writer, which a re-read resolves."""
    reasons = cancellation_reasons(exc)
    codes = {reason.get("Code") for reason in reasons}
    return bool(codes & {"ConditionalCheckFailed", "TransactionConflict"})


# ---------------------------------------------------------------- customer profiles

EXTERNAL_ID_SK = "EXTID"


def external_id_pk(system: str, value: str) -> str:
    """The pointer that makes an external CRM id unique and finds its customer."""
    return f"EXTID#{system}#{value}"
