"""The table's items: keys, (de)serialization and the message item, in one place.

Every module that reads or writes the threadline table goes through these, so an
item has one shape whoever writes it. docs/storage.md describes the layout.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from ulid import ULID

from threadline import item_codec
from threadline.errors import MalformedRequest
from threadline.schema import AuthorRole, Identity, Message, MessageStatus, StatusChange

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


def from_stream_image(image: dict[str, Any]) -> dict[str, Any]:
    """An item of a DynamoDB stream record as Lambda delivers it (JSON: a binary
    attribute's value is base64 text) as plain values, like :func:`from_item`."""
    decoded = {
        name: {"B": base64.b64decode(value["B"])} if isinstance(value.get("B"), str) else value
        for name, value in image.items()
    }
    return from_item(decoded)


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
# Fields the item holds as attributes anyway (keys, filters, the stream's readers):
# left out of the JSON document, which message_from_item completes from them.
# (Items written before this carry them in both; either reads the same.)
_ATTRIBUTE_MESSAGE_FIELDS = {
    "id": "message_id",
    "customer_id": "customer_id",
    "conversation_id": "conversation_id",
    "direction": "direction",
    "provider": "provider",
}


def _received_history(message: Message) -> list[StatusChange]:
    """The history of a message received and never changed since: the item leaves it
    out (message_from_item gives it back from ``received_at``)."""
    return [StatusChange(status=MessageStatus.RECEIVED, at=message.received_at)]


def message_document(message: Message) -> bytes:
    """The item's ``message`` attribute: the fields no attribute holds, as JSON,
    compressed (threadline.item_codec; :func:`message_json` reads it back).

    Empty fields are left out (they read back as their defaults): a message item is
    written in a transaction at 2 WRU per started KB, and an inbound SMS fits in one KB
    only this way (docs/cost.md).
    """
    document = message.model_dump(
        mode="json",
        # schema_version reads back as the Message's own (its only value so far).
        exclude={
            *MUTABLE_MESSAGE_FIELDS,
            *_ATTRIBUTE_MESSAGE_FIELDS,
            "channel_data",
            "schema_version",
        },
        exclude_none=True,
    )
    # channel_data is the provider's own structure: kept as it is, nulls included.
    document["channel_data"] = message.model_dump(mode="json", include={"channel_data"})[
        "channel_data"
    ]
    compact = {name: value for name, value in document.items() if value not in ([], {})}
    return item_codec.compress(json.dumps(compact, separators=(",", ":"), ensure_ascii=False))


def message_json(item: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of a message item (compressed, or text in older items)."""
    return dict(json.loads(item_codec.stored_bytes(item["message"]) or b"{}"))


def message_item(message: Message, *, raw_inline: str | None = None) -> dict[str, Any]:
    """The table item for ``message`` (before to_item); ``raw_inline`` is the provider's
    envelope when it rides in the item (stored compressed: threadline.item_codec)."""
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
        "status_history": None
        if message.status_history == _received_history(message)
        else [
            change.model_dump(mode="json", exclude_none=True) for change in message.status_history
        ],
        "message": message_document(message),
        "raw": item_codec.compress(raw_inline) if raw_inline is not None else None,
    }


def message_from_item(item: dict[str, Any]) -> Message:
    document = message_json(item)
    for field, attribute in _ATTRIBUTE_MESSAGE_FIELDS.items():
        if field not in document and item.get(attribute) is not None:
            document[field] = item[attribute]
    document["status"] = item["status"]
    history = item.get("status_history")
    if history is None and item["status"] == MessageStatus.RECEIVED.value:
        history = [{"status": item["status"], "at": document["received_at"]}]
    document["status_history"] = history or []
    document["channel"] = item["channel"]
    document["provider_message_id"] = item.get("provider_message_id")
    # The dispatcher records who actually carried it (WhatsApp: Twilio or Meta).
    document["provider"] = item.get("provider") or document.get("provider")
    for field in ("recipient", "sender"):
        value = item.get(field)
        document[field] = Identity.parse(value).model_dump() if value else None
    return Message.model_validate(document)


# ---------------------------------------------------------------- customer profiles

EXTERNAL_ID_SK = "EXTID"


def external_id_pk(system: str, value: str) -> str:
    """The pointer that makes an external CRM id unique and finds its customer."""
    return f"EXTID#{system}#{value}"


def external_id_item(system: str, value: str, customer_id: str) -> dict[str, Any]:
    """``EXTID#<system>#<id>``: which customer holds an external CRM id."""
    return {
        "pk": external_id_pk(system, value),
        "sk": EXTERNAL_ID_SK,
        "type": "external_id",
        "system": system,
        "external_id": value,
        "customer_id": customer_id,
    }


# ---------------------------------------------------------------- builders
# One builder per item type: whoever writes an item of that type writes this shape.


def identity_item(
    identity: Identity,
    customer_id: str,
    at: datetime,
    *,
    conversation_id: str | None = None,
    channel: str | None = None,
    reply_to: dict[str, Any] | None = None,
    link_source: str | None = None,
    linked_via: str | None = None,
    verified_by: str | None = None,
    linked_from: str | None = None,
) -> dict[str, Any]:
    """``IDENT#<kind>#<value>``: who an identity belongs to, and its last conversation.

    ``link_source`` (``automatic`` / ``api``) marks an identity that joined an existing
    customer (customer.identity_linked is published for items that carry it);
    ``verified_by`` / ``linked_from`` a verified identity a first message brought along.
    """
    stamp = at.isoformat()
    return {
        "pk": identity_pk(identity),
        "sk": IDENT_SK,
        "type": "identity",
        "identity": str(identity),
        "customer_id": customer_id,
        "created_at": stamp,
        "conversation_id": conversation_id,
        "last_message_at": stamp if conversation_id else None,
        "conversation_channel": channel if conversation_id else None,
        "reply_to": reply_to,
        "linked_via": linked_via,
        "linked_at": stamp if link_source else None,
        "link_source": link_source,
        "verified_by": verified_by,
        "linked_from": linked_from,
    }


def dedup_item(
    provider: str,
    provider_message_id: str,
    customer_id: str,
    message_id: str,
    at: datetime,
    *,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """``DEDUP#<provider>#<id>``: a provider's message id, stored once."""
    return {
        "pk": dedup_pk(provider, provider_message_id),
        "sk": DEDUP_SK,
        "type": "dedup",
        "customer_id": customer_id,
        "message_id": message_id,
        # A reply naming this message finds its conversation here.
        "conversation_id": conversation_id,
        "created_at": at.isoformat(),
    }


def idempotency_item(
    customer_id: str,
    key: str,
    message_id: str,
    fingerprint: str,
    at: datetime,
    retention_days: int,
) -> dict[str, Any]:
    """``IDEMPOTENCY#<cid>#<key>``: the message an Idempotency-Key made, and its request."""
    return {
        "pk": idempotency_pk(customer_id, key),
        "sk": IDEMPOTENCY_SK,
        "type": "idempotency",
        "message_id": message_id,
        "fingerprint": fingerprint,
        "created_at": at.isoformat(),
        "customer_id": customer_id,
        "expires_at": expires_at(at, retention_days),
    }


def blob_ref_item(
    bucket: str, key: str, customer_id: str, message_id: str, at: datetime, retention_days: int
) -> dict[str, Any]:
    """``BLOB#<bucket>/<key>`` / ``REF#<mid>``: one message's reference to an S3 object."""
    return {
        "pk": blob_pk(bucket, key),
        "sk": blob_ref_sk(message_id),
        "type": "blob_ref",
        "customer_id": customer_id,
        "message_id": message_id,
        "expires_at": expires_at(at, retention_days),
    }


def profile_item(
    customer_id: str,
    at: datetime,
    *,
    display_name: str | None,
    identities: list[str],
    channel: str,
    open_conversation_id: str,
    consent: dict[str, Any],
    help_requested: dict[str, Any],
) -> dict[str, Any]:
    """``CUST#<cid>`` / ``PROFILE`` of a customer a first message makes."""
    stamp = at.isoformat()
    return {
        "pk": customer_pk(customer_id),
        "sk": PROFILE_SK,
        "type": "customer",
        "customer_id": customer_id,
        "display_name": display_name,
        "identities": identities,
        "created_at": stamp,
        "last_channel": channel,
        "last_message_at": stamp,
        "last_inbound": {channel: stamp},
        "consent": consent,
        "help_requested": help_requested,
        "open_conversation_id": open_conversation_id,
    }


def conversation_pointer_item(conversation_id: str, customer_id: str) -> dict[str, Any]:
    """``CONV#<id>`` / ``CONV``: which customer a conversation id belongs to."""
    return {
        "pk": conversation_pointer_pk(conversation_id),
        "sk": CONVERSATION_POINTER_SK,
        "type": "conversation_pointer",
        "conversation_id": conversation_id,
        "customer_id": customer_id,
    }


def role_counter(role: AuthorRole | str) -> str:
    """The conversation attribute counting messages by one author role."""
    return f"messages_{AuthorRole(role).value}"


def due_key(due: datetime) -> str:
    """Fixed-width UTC text, so the index's sort key orders as time does."""
    return due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def close_bucket(due: datetime) -> str:
    """The index partition of conversations whose quiet period ends in that UTC hour."""
    return "CLOSEDUE#" + due.astimezone(UTC).strftime("%Y-%m-%dT%H")


def conversation_item(
    customer_id: str,
    conversation_id: str,
    channel: str,
    role: AuthorRole,
    at: datetime,
    due: datetime,
) -> dict[str, Any]:
    """``CUST#<cid>`` / ``CONV#<id>`` of a conversation a message opens."""
    stamp = at.isoformat()
    return {
        "pk": customer_pk(customer_id),
        "sk": conversation_sk(conversation_id),
        "type": "conversation",
        "conversation_id": conversation_id,
        "customer_id": customer_id,
        "state": "open",
        "opened_at": stamp,
        "last_message_at": stamp,
        "channels": {channel},
        "last_inbound_channel": channel,
        "channel_switches": 0,
        "message_count": 1,
        role_counter(role): 1,
        # Who wrote last decides a quiet-period close's outcome (threadline.outcomes).
        "last_author_role": AuthorRole(role).value,
        "close_due_at": due_key(due),
        "close_bucket": close_bucket(due),
    }


# ---------------------------------------------------------------- web chat
# ``WEBCHAT#<visitor_id>`` holds a visitor's session, its open connections and its
# rate-limit windows; ``WSCONN#<connection_id>`` maps a connection to its visitor.
# Every one carries ``expires_at`` (TTL): nothing outlives the session.

WEBCHAT_SESSION_SK = "SESSION"
WEBCHAT_CONNECTION_SK = "WSCONN"
WEBCHAT_CONNECTION_PREFIX = "CONN#"


def webchat_pk(visitor_id: str) -> str:
    return f"WEBCHAT#{visitor_id}"


def webchat_connection_pk(connection_id: str) -> str:
    return f"WSCONN#{connection_id}"


def webchat_visitor_connection_sk(connection_id: str) -> str:
    return f"{WEBCHAT_CONNECTION_PREFIX}{connection_id}"


def webchat_rate_sk(window: int) -> str:
    return f"RATE#{window}"


def webchat_session_item(
    visitor_id: str,
    *,
    name: str | None,
    verified_identity: str | None,
    claimed_email: str | None,
    claimed_external_id: str | None,
    verified: bool,
    expires: int,
) -> dict[str, Any]:
    """``WEBCHAT#<vid>`` / ``SESSION``: a visitor's session and its unverified claims."""
    return {
        "pk": webchat_pk(visitor_id),
        "sk": WEBCHAT_SESSION_SK,
        "type": "webchat_session",
        "visitor_id": visitor_id,
        "name": name,
        "verified": verified,
        "verified_identity": verified_identity,
        "claimed_email": claimed_email,
        "claimed_external_id": claimed_external_id,
        "expires_at": expires,
    }


def webchat_connection_items(
    connection_id: str,
    visitor_id: str,
    *,
    verified_identity: str | None,
    name: str | None,
    connected_at: datetime,
    expires: int,
) -> list[dict[str, Any]]:
    """An open connection, written twice: ``WSCONN#<id>`` (connection -> visitor, read
    by every frame) and ``WEBCHAT#<vid>`` / ``CONN#<id>`` (the visitor's connections,
    queried by the sender)."""
    common = {
        "type": "webchat_connection",
        "connection_id": connection_id,
        "visitor_id": visitor_id,
        "verified_identity": verified_identity,
        "name": name,
        "connected_at": connected_at.isoformat(),
        "expires_at": expires,
    }
    return [
        {"pk": webchat_connection_pk(connection_id), "sk": WEBCHAT_CONNECTION_SK, **common},
        {
            "pk": webchat_pk(visitor_id),
            "sk": webchat_visitor_connection_sk(connection_id),
            **common,
        },
    ]
