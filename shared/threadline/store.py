"""The customer timeline in one DynamoDB table (see docs/storage.md for the item map).

Keys::

    CUST#<cid>   PROFILE     the customer
    IDENT#<kind>#<value>  IDENT   identity -> customer (+ the open conversation)
    CUST#<cid>   MSG#<ulid>  one message on the timeline, newest-first by ULID
    CUST#<cid>   CONV#<ulid> a conversation
    DEDUP#<provider>#<provider_message_id>  DEDUP   provider retry guard

An inbound message costs one consistent ``GetItem`` on the identity and one
``TransactWriteItems`` (dedupe + message + conversation + identity + profile), plus a
``PutObject`` only when the raw payload is too large to ride inline in the item.
The transaction's conditions make every race safe: two first messages from one new
sender make one customer, and a provider retry is stored once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from ulid import ULID

from threadline import aws
from threadline.channels.base import InboundMessage
from threadline.errors import MalformedRequest, StorageUnavailable
from threadline.logs import logger
from threadline.schema import (
    Customer,
    Direction,
    Identity,
    Message,
    MessageStatus,
    RawPayloadRef,
    StatusChange,
    TimelinePage,
    utc_now,
)
from threadline.settings import StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client

PROFILE_SK = "PROFILE"
IDENT_SK = "IDENT"
DEDUP_SK = "DEDUP"
CONVERSATION_QUIET_PERIOD = timedelta(hours=24)
MAX_PAGE_SIZE = 100
# Optimistic retries when a concurrent writer changed the identity or conversation
# between our read and our transaction. Each retry re-reads, so it converges fast.
_MAX_ATTEMPTS = 5


def customer_pk(customer_id: str) -> str:
    return f"CUST#{customer_id}"


def identity_pk(identity: Identity) -> str:
    return f"IDENT#{identity.kind.value}#{identity.value}"


def message_sk(message_id: str) -> str:
    return f"MSG#{message_id}"


def conversation_sk(conversation_id: str) -> str:
    return f"CONV#{conversation_id}"


def dedup_pk(provider: str, provider_message_id: str) -> str:
    return f"DEDUP#{provider}#{provider_message_id}"


def new_id(at: datetime) -> str:
    return str(ULID.from_datetime(at))


@dataclass(frozen=True)
class RawPayload:
    """The provider's request as kept for audit and replay."""

    envelope: bytes
    provider: str
    body_sha256: str
    content_type: str = "application/json"


@dataclass(frozen=True)
class KeptRaw:
    ref: RawPayloadRef
    inline: str | None
    """The envelope itself when it rides in the message item."""


@dataclass(frozen=True)
class IngestResult:
    message_id: str
    customer_id: str
    duplicate: bool = False
    customer_created: bool = False


@dataclass(frozen=True)
class _IdentityRecord:
    customer_id: str
    conversation_id: str | None
    last_message_at: datetime | None


@cache
def _serializer() -> Any:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


@cache
def _deserializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    serializer = _serializer()
    return {k: serializer.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    deserializer = _deserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


def encode_cursor(sort_key: str) -> str:
    document = json.dumps({"v": 1, "sk": sort_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(document).decode().rstrip("=")


MAX_CURSOR_LENGTH = 2048


def decode_cursor(cursor: str) -> str:
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise MalformedRequest("cursor is not one this API returned", code="invalid_cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        document = json.loads(base64.urlsafe_b64decode(padded.encode()))
        sort_key = document["sk"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise MalformedRequest(
            "cursor is not one this API returned", code="invalid_cursor"
        ) from exc
    if not isinstance(sort_key, str) or not sort_key.startswith("MSG#"):
        raise MalformedRequest("cursor is not one this API returned", code="invalid_cursor")
    return sort_key


class TimelineStore:
    """Reads and writes customers, identities and timelines in the threadline table."""

    def __init__(
        self,
        settings: StoreSettings,
        *,
        dynamodb: DynamoDBClient | None = None,
        s3: S3Client | None = None,
        conversation_quiet_period: timedelta = CONVERSATION_QUIET_PERIOD,
    ) -> None:
        self.settings = settings
        self._dynamodb = dynamodb
        self._s3 = s3
        self.quiet_period = conversation_quiet_period

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._dynamodb is None:
            self._dynamodb = aws.dynamodb()
        return self._dynamodb

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            self._s3 = aws.s3()
        return self._s3

    # ----------------------------------------------------------------- raw payloads

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw:
        """Keep the provider's request: inline when small, else in the raw bucket.

        The S3 key is derived from the body's hash, so a provider's retry of the
        same request overwrites (a new version of) the same object, not a new one.
        """
        digest = hashlib.sha256(raw.envelope).hexdigest()
        size = len(raw.envelope)
        if may_inline and size <= self.settings.raw_inline_max_bytes:
            ref = RawPayloadRef(
                location="inline", content_type=raw.content_type, size=size, sha256=digest
            )
            return KeptRaw(ref=ref, inline=raw.envelope.decode("utf-8"))
        key = f"raw/{raw.provider}/{raw.body_sha256}.json"
        try:
            self.s3.put_object(
                Bucket=self.settings.raw_bucket,
                Key=key,
                Body=raw.envelope,
                ContentType=raw.content_type,
            )
        except Exception as exc:
            raise StorageUnavailable("could not keep the raw payload") from exc
        ref = RawPayloadRef(
            location="s3",
            content_type=raw.content_type,
            size=size,
            sha256=digest,
            bucket=self.settings.raw_bucket,
            key=key,
        )
        return KeptRaw(ref=ref, inline=None)

    # ----------------------------------------------------------------- ingest

    def ingest(
        self, inbound: InboundMessage, raw: KeptRaw, *, received_at: datetime | None = None
    ) -> IngestResult:
        """File an inbound message on its sender's timeline, exactly once.

        Raises StorageUnavailable when DynamoDB cannot take it, so the webhook
        answers 5xx and the provider retries; nothing is half-written either way.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        now = received_at or utc_now()
        for attempt in range(_MAX_ATTEMPTS):
            try:
                record = self._read_identity(inbound.sender)
                message_id = new_id(now)
                if record is None:
                    customer_id = new_id(now)
                    conversation_id = new_id(now)
                    operations = self._new_customer_operations(
                        inbound, raw, now, message_id, customer_id, conversation_id
                    )
                else:
                    customer_id = record.customer_id
                    conversation_id, opens = self._conversation_for(record, now)
                    operations = self._known_customer_operations(
                        inbound, raw, now, message_id, record, conversation_id, opens
                    )
                self.dynamodb.transact_write_items(TransactItems=operations)
            except ClientError as exc:
                outcome = self._cancellation_outcome(exc, inbound)
                if outcome is not None:
                    return outcome
                if _is_conflict(exc) and attempt + 1 < _MAX_ATTEMPTS:
                    # Lost a race (new customer, conversation switch, merge): re-read.
                    time.sleep(0.01 * (attempt + 1))
                    continue
                raise StorageUnavailable("the timeline could not be written") from exc
            except BotoCoreError as exc:
                raise StorageUnavailable("the timeline could not be written") from exc
            logger.info(
                "message stored",
                extra={
                    "customer_id": customer_id,
                    "message_id": message_id,
                    "channel": inbound.channel.value,
                    "customer_created": record is None,
                },
            )
            return IngestResult(
                message_id=message_id,
                customer_id=customer_id,
                customer_created=record is None,
            )
        raise StorageUnavailable("the timeline kept changing under us; retry")

    def _read_identity(self, identity: Identity) -> _IdentityRecord | None:
        response = self.dynamodb.get_item(
            TableName=self.settings.table_name,
            Key=_to_item({"pk": identity_pk(identity), "sk": IDENT_SK}),
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        item = _from_item(response["Item"])
        last = item.get("last_message_at")
        return _IdentityRecord(
            customer_id=str(item["customer_id"]),
            conversation_id=item.get("conversation_id"),
            last_message_at=datetime.fromisoformat(last) if last else None,
        )

    def _conversation_for(self, record: _IdentityRecord, now: datetime) -> tuple[str, bool]:
        """The conversation this message belongs to, and whether it opens a new one."""
        if (
            record.conversation_id
            and record.last_message_at
            and now - record.last_message_at < self.quiet_period
        ):
            return record.conversation_id, False
        return new_id(now), True

    def _message_item(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        customer_id: str,
        conversation_id: str,
    ) -> dict[str, Any]:
        history = [StatusChange(status=MessageStatus.RECEIVED, at=now)]
        message = Message(
            id=message_id,
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=inbound.channel,
            direction=Direction.INBOUND,
            provider=inbound.provider,
            provider_message_id=inbound.provider_message_id,
            author_role=inbound.author_role,
            sender=inbound.sender,
            recipient=inbound.recipient,
            sent_at=inbound.sent_at,
            received_at=now,
            parts=inbound.parts,
            in_reply_to=inbound.in_reply_to,
            thread_id=inbound.thread_id,
            status=MessageStatus.RECEIVED,
            status_history=history,
            raw=raw.ref,
            channel_data=inbound.channel_data,
        )
        return {
            "pk": customer_pk(customer_id),
            "sk": message_sk(message_id),
            "type": "message",
            "customer_id": customer_id,
            "message_id": message_id,
            "conversation_id": conversation_id,
            "channel": inbound.channel.value,
            "direction": Direction.INBOUND.value,
            "provider": inbound.provider,
            "provider_message_id": inbound.provider_message_id,
            # status and its history live in their own attributes (not the JSON) so
            # later status callbacks can update them with conditions.
            "status": MessageStatus.RECEIVED.value,
            "status_history": [h.model_dump(mode="json", exclude_none=True) for h in history],
            "message": message.model_dump_json(exclude={"status", "status_history"}),
            "raw": raw.inline,
        }

    def _dedup_put(
        self, inbound: InboundMessage, now: datetime, message_id: str, customer_id: str
    ) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.settings.table_name,
                "Item": _to_item(
                    {
                        "pk": dedup_pk(inbound.provider, inbound.provider_message_id),
                        "sk": DEDUP_SK,
                        "type": "dedup",
                        "customer_id": customer_id,
                        "message_id": message_id,
                        "created_at": now.isoformat(),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _new_customer_operations(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        customer_id: str,
        conversation_id: str,
    ) -> list[TransactWriteItemTypeDef]:
        table = self.settings.table_name
        stamp = now.isoformat()
        channel = inbound.channel.value
        return [
            self._dedup_put(inbound, now, message_id, customer_id),
            {
                "Put": {
                    "TableName": table,
                    "Item": _to_item(
                        self._message_item(
                            inbound, raw, now, message_id, customer_id, conversation_id
                        )
                    ),
                }
            },
            {
                # The condition is what makes concurrent first messages one customer.
                "Put": {
                    "TableName": table,
                    "Item": _to_item(
                        {
                            "pk": identity_pk(inbound.sender),
                            "sk": IDENT_SK,
                            "type": "identity",
                            "identity": str(inbound.sender),
                            "customer_id": customer_id,
                            "conversation_id": conversation_id,
                            "last_message_at": stamp,
                            "created_at": stamp,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": _to_item(
                        {
                            "pk": customer_pk(customer_id),
                            "sk": PROFILE_SK,
                            "type": "customer",
                            "customer_id": customer_id,
                            "display_name": inbound.sender_display_name,
                            "identities": [str(inbound.sender)],
                            "created_at": stamp,
                            "last_channel": channel,
                            "last_message_at": stamp,
                            "last_inbound": {channel: stamp},
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": _to_item(
                        {
                            "pk": customer_pk(customer_id),
                            "sk": conversation_sk(conversation_id),
                            "type": "conversation",
                            "conversation_id": conversation_id,
                            "customer_id": customer_id,
                            "state": "open",
                            "opened_at": stamp,
                            "last_message_at": stamp,
                            "channels": {channel},
                            "message_count": 1,
                        }
                    ),
                }
            },
        ]

    def _known_customer_operations(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        record: _IdentityRecord,
        conversation_id: str,
        opens_conversation: bool,
    ) -> list[TransactWriteItemTypeDef]:
        table = self.settings.table_name
        customer_id = record.customer_id
        stamp = now.isoformat()
        channel = inbound.channel.value
        message = self._message_item(inbound, raw, now, message_id, customer_id, conversation_id)

        # Guard the identity against a concurrent writer that moved it to another
        # customer (a merge) or opened another conversation since we read it.
        identity_condition = "customer_id = :cid AND " + (
            "conversation_id = :prev"
            if record.conversation_id
            else "attribute_not_exists(conversation_id)"
        )
        identity_values: dict[str, Any] = {
            ":cid": customer_id,
            ":conv": conversation_id,
            ":now": stamp,
        }
        if record.conversation_id:
            identity_values[":prev"] = record.conversation_id

        conversation_op: TransactWriteItemTypeDef
        if opens_conversation:
            conversation_op = {
                "Put": {
                    "TableName": table,
                    "Item": _to_item(
                        {
                            "pk": customer_pk(customer_id),
                            "sk": conversation_sk(conversation_id),
                            "type": "conversation",
                            "conversation_id": conversation_id,
                            "customer_id": customer_id,
                            "state": "open",
                            "opened_at": stamp,
                            "last_message_at": stamp,
                            "channels": {channel},
                            "message_count": 1,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        else:
            conversation_op = {
                "Update": {
                    "TableName": table,
                    "Key": _to_item(
                        {"pk": customer_pk(customer_id), "sk": conversation_sk(conversation_id)}
                    ),
                    "UpdateExpression": (
                        "SET last_message_at = :now ADD message_count :one, channels :channel"
                    ),
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": _to_item(
                        {":now": stamp, ":one": 1, ":channel": {channel}}
                    ),
                }
            }

        profile_values: dict[str, Any] = {":channel": channel, ":now": stamp}
        profile_update = (
            "SET last_channel = :channel, last_message_at = :now, last_inbound.#ch = :now"
        )
        if inbound.sender_display_name:
            profile_update += ", display_name = if_not_exists(display_name, :name)"
            profile_values[":name"] = inbound.sender_display_name

        return [
            self._dedup_put(inbound, now, message_id, customer_id),
            {"Put": {"TableName": table, "Item": _to_item(message)}},
            conversation_op,
            {
                "Update": {
                    "TableName": table,
                    "Key": _to_item({"pk": identity_pk(inbound.sender), "sk": IDENT_SK}),
                    "UpdateExpression": "SET conversation_id = :conv, last_message_at = :now",
                    "ConditionExpression": identity_condition,
                    "ExpressionAttributeValues": _to_item(identity_values),
                }
            },
            {
                "Update": {
                    "TableName": table,
                    "Key": _to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK}),
                    "UpdateExpression": profile_update,
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": {"#ch": channel},
                    "ExpressionAttributeValues": _to_item(profile_values),
                }
            },
        ]

    def _cancellation_outcome(self, exc: Exception, inbound: InboundMessage) -> IngestResult | None:
        """An IngestResult when the transaction was cancelled because it is a retry."""
        reasons = _cancellation_reasons(exc)
        if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
            return None
        old = reasons[0].get("Item")
        if old is None:
            # Not every DynamoDB implementation returns the old item; read it.
            response = self.dynamodb.get_item(
                TableName=self.settings.table_name,
                Key=_to_item(
                    {"pk": dedup_pk(inbound.provider, inbound.provider_message_id), "sk": DEDUP_SK}
                ),
                ConsistentRead=True,
            )
            old = response.get("Item")
        if old is None:
            return None
        item = _from_item(old)
        logger.info(
            "duplicate delivery acknowledged",
            extra={"message_id": item["message_id"], "customer_id": item["customer_id"]},
        )
        return IngestResult(
            message_id=str(item["message_id"]),
            customer_id=str(item["customer_id"]),
            duplicate=True,
        )

    # ----------------------------------------------------------------- reads

    def find_customer_id(self, identity: Identity) -> str | None:
        record = self._read_identity(identity)
        return record.customer_id if record else None

    def get_customer(self, customer_id: str) -> Customer | None:
        response = self.dynamodb.get_item(
            TableName=self.settings.table_name,
            Key=_to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK}),
        )
        if "Item" not in response:
            return None
        item = _from_item(response["Item"])
        return Customer(
            id=item["customer_id"],
            display_name=item.get("display_name"),
            identities=[Identity.parse(text) for text in item.get("identities", [])],
            created_at=datetime.fromisoformat(item["created_at"]),
            last_channel=item.get("last_channel"),
            last_message_at=(
                datetime.fromisoformat(item["last_message_at"])
                if item.get("last_message_at")
                else None
            ),
        )

    def timeline(
        self, customer_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> TimelinePage:
        """One page of the customer's messages, newest first."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        query: dict[str, Any] = {
            "TableName": self.settings.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _to_item(
                {":pk": customer_pk(customer_id), ":prefix": "MSG#"}
            ),
            # The raw payload can be large and is not part of the timeline view.
            "ProjectionExpression": "pk, sk, message, #status, status_history",
            "ExpressionAttributeNames": {"#status": "status"},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = _to_item(
                {"pk": customer_pk(customer_id), "sk": decode_cursor(cursor)}
            )
        response = self.dynamodb.query(**query)
        items = [message_from_item(_from_item(raw)) for raw in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        next_cursor = encode_cursor(str(_from_item(last)["sk"])) if last else None
        return TimelinePage(items=items, next_cursor=next_cursor)


def message_from_item(item: dict[str, Any]) -> Message:
    document = json.loads(item["message"])
    document["status"] = item["status"]
    document["status_history"] = item.get("status_history", [])
    return Message.model_validate(document)


def _cancellation_reasons(exc: Exception) -> list[dict[str, Any]]:
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons")
    return list(reasons) if reasons else []


def _is_conflict(exc: Exception) -> bool:
    """A cancellation caused by a concurrent writer, which a re-read resolves."""
    reasons = _cancellation_reasons(exc)
    codes = {reason.get("Code") for reason in reasons}
    return bool(codes & {"ConditionalCheckFailed", "TransactionConflict"})
