"""The customer timeline in one DynamoDB table (docs/storage.md has the item map).

An inbound message costs one consistent ``GetItem`` on the identity and one
``TransactWriteItems`` (dedupe + message + conversation + identity + profile), plus a
``PutObject`` only when the raw payload is too large to ride inline in the item.
The transaction's conditions make every race safe: two first messages from one new
sender make one customer, and a provider retry is stored once.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from threadline import aws, consent
from threadline.channels.base import InboundMessage, MessageEdit, StatusUpdate
from threadline.consent import Purpose as ConsentPurpose
from threadline.conversations import (
    CONVERSATION_QUIET_PERIOD,
    ConversationPlan,
    ConversationStore,
    KnownConversation,
    quiet_period_from_env,
)
from threadline.errors import StorageUnavailable
from threadline.items import (
    DEDUP_SK,
    IDENT_SK,
    MUTABLE_MESSAGE_FIELDS,
    PROFILE_SK,
    blob_pk,
    blob_ref_sk,
    cancellation_reasons,
    customer_pk,
    decode_cursor,
    dedup_pk,
    encode_cursor,
    expires_at,
    from_item,
    identity_pk,
    is_conflict,
    message_from_item,
    message_item,
    message_sk,
    new_id,
    to_item,
)
from threadline.logs import logger
from threadline.schema import (
    Channel,
    Customer,
    Direction,
    Identity,
    MediaPart,
    Message,
    MessageRevision,
    MessageStatus,
    RawPayloadRef,
    StatusChange,
    TextPart,
    TimelinePage,
    utc_now,
)
from threadline.settings import StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client

__all__ = [
    "CONVERSATION_QUIET_PERIOD",
    "MAX_PAGE_SIZE",
    "IngestResult",
    "KeptRaw",
    "Profile",
    "RawPayload",
    "ThreadTarget",
    "TimelineStore",
    "decode_cursor",
    "encode_cursor",
    "identity_pk",
]

# The statuses a message may be in for a status update to move it on: statuses
# only go forward, and failure ends a message that was not yet delivered.
STATUS_PREDECESSORS: dict[MessageStatus, tuple[MessageStatus, ...]] = {
    MessageStatus.SENT: (MessageStatus.QUEUED,),
    MessageStatus.DELIVERED: (MessageStatus.QUEUED, MessageStatus.SENT),
    MessageStatus.READ: (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED),
    MessageStatus.FAILED: (MessageStatus.QUEUED, MessageStatus.SENT),
}
MAX_PAGE_SIZE = 100
# A merged customer's id resolves to the survivor; merges of merges make a chain.
MAX_ALIAS_HOPS = 8
# Optimistic retries when a concurrent writer changed the identity or conversation
# between our read and our transaction. Each round lets at least one writer through,
# so N messages racing for one customer need up to N tries; a provider's burst of
# retries (or a group chat) can reach that, and each failure costs the customer a
# provider retry, so allow more than the bursts we see.
_MAX_ATTEMPTS = 12


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
    identity_linked: bool = False
    """The sender's identity was new and joined the customer owning a verified one."""


@dataclass(frozen=True)
class ThreadTarget:
    """A stored message an inbound one answers: where the reply belongs."""

    customer_id: str
    conversation_id: str
    message_id: str


@dataclass(frozen=True)
class Profile:
    """The customer plus what sending to them needs: recent channels and consent."""

    customer: Customer
    last_inbound: dict[Channel, datetime] = field(default_factory=dict)
    consent: dict[str, dict[str, Any]] = field(default_factory=dict)
    """identity (kind:value) -> the latest consent record for it."""
    open_conversation_id: str | None = None
    merge_state: str | None = None
    """``merging`` or ``merged`` when this customer is being / was absorbed by another."""
    merged_into: str | None = None

    def opted_out(self, identity: Identity) -> bool:
        """Replies (transactional messages) to ``identity`` are withdrawn."""
        return not self.allows(identity, ConsentPurpose.TRANSACTIONAL)

    def allows(self, identity: Identity, purpose: ConsentPurpose) -> bool:
        return consent.allows(self.consent.get(str(identity)), purpose)

    def refusal(self, identity: Identity, purpose: ConsentPurpose) -> str | None:
        """The error code that refuses a ``purpose`` send to ``identity``, if any."""
        return consent.refusal_code(self.consent.get(str(identity)), purpose)


@dataclass(frozen=True)
class _IdentityRecord:
    customer_id: str
    conversation: KnownConversation | None
    """The conversation this identity last wrote in, as it was then (a hint)."""


def _consent_record(
    action: consent.ConsentAction, inbound: InboundMessage, message_id: str, now: datetime
) -> dict[str, Any]:
    """The identity's consent entry after a keyword: when, how, and which message."""
    return consent.keyword_records(
        action,
        source=(
            consent.ConsentSource.PROVIDER
            if consent.provider_action(inbound.consent_keyword) is not None
            else consent.ConsentSource.KEYWORD
        ),
        evidence=message_id,
        channel=inbound.channel.value,
        at=now,
    )


class TimelineStore(ConversationStore):
    """Reads and writes customers, identities and timelines in the threadline table."""

    def __init__(
        self,
        settings: StoreSettings,
        *,
        dynamodb: DynamoDBClient | None = None,
        s3: S3Client | None = None,
        conversation_quiet_period: timedelta | None = None,
    ) -> None:
        self.settings = settings
        self._dynamodb = dynamodb
        self._s3 = s3
        self.quiet_period = conversation_quiet_period or quiet_period_from_env()

    @property
    def table(self) -> str:
        return self.settings.table_name

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

    def keep_attachment(self, key: str, data: bytes, content_type: str) -> None:
        """Put an e-mail attachment in the raw bucket under its content hash.

        The key is ``attachments/<sha256>``: a redelivered mail, or one file sent
        twice, writes the same object again rather than another copy.
        """
        try:
            self.s3.put_object(
                Bucket=self.settings.raw_bucket, Key=key, Body=data, ContentType=content_type
            )
        except Exception as exc:
            raise StorageUnavailable("could not keep the attachment") from exc

    # ----------------------------------------------------------------- ingest

    def ingest(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        *,
        received_at: datetime | None = None,
        thread: ThreadTarget | None = None,
    ) -> IngestResult:
        """File an inbound message on its sender's timeline, exactly once.

        ``thread`` is the stored message this one answers (e-mail's In-Reply-To or
        References): when it is the sender's customer's, the message joins that
        message's conversation instead of the sender's current one.

        Raises StorageUnavailable when DynamoDB cannot take it, so the webhook
        answers 5xx and the provider retries; nothing is half-written either way.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        now = received_at or utc_now()
        # After a conflict the identity's conversation hint is not trusted: the
        # customer's open conversation is read from the profile instead.
        trust_hint = True
        for attempt in range(_MAX_ATTEMPTS):
            try:
                record = self._read_identity(inbound.sender)
                message_id = new_id(now)
                owner = None if record is not None else self._verified_owner(inbound)
                if owner is not None and attempt:
                    # The owner may be in the middle of being merged: join the survivor.
                    survivor = self.surviving_customer_id(owner.customer_id)
                    if survivor and survivor != owner.customer_id:
                        owner = _IdentityRecord(customer_id=survivor, conversation=None)
                if owner is not None:
                    # A new identity of a customer we know through a verified one
                    # (Slack account with that customer's confirmed e-mail).
                    customer_id = owner.customer_id
                    plan = self._plan(owner, inbound, now, message_id, trust_hint)
                    operations = self._linked_identity_operations(
                        inbound, raw, now, message_id, customer_id, plan
                    )
                elif record is None:
                    customer_id = new_id(now)
                    conversation_id = new_id(now)
                    operations = self._new_customer_operations(
                        inbound, raw, now, message_id, customer_id, conversation_id
                    )
                else:
                    customer_id = record.customer_id
                    filed = inbound
                    if thread is not None and thread.customer_id == customer_id:
                        # The message it answers is named; the conversation is still the
                        # customer's open one (conversations span channels and end after
                        # the quiet period, so an old thread's reply opens a new one).
                        filed = inbound.model_copy(update={"in_reply_to": thread.message_id})
                    plan = self._plan(record, filed, now, message_id, trust_hint)
                    operations = self._known_customer_operations(
                        filed, raw, now, message_id, record, plan
                    )
                operations += self._object_ref_puts(inbound, raw, now, message_id, customer_id)
                self.dynamodb.transact_write_items(TransactItems=operations)
            except ClientError as exc:
                outcome = self._cancellation_outcome(exc, inbound)
                if outcome is not None:
                    return outcome
                if is_conflict(exc) and attempt + 1 < _MAX_ATTEMPTS:
                    # Lost a race (new customer, another identity's message in the
                    # conversation, a close, a merge): re-read.
                    trust_hint = False
                    # Full jitter, growing, so writers that collided spread out.
                    time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))  # noqa: S311
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
                    "customer_created": record is None and owner is None,
                    "identity_linked": owner is not None,
                },
            )
            return IngestResult(
                message_id=message_id,
                customer_id=customer_id,
                customer_created=record is None and owner is None,
                identity_linked=owner is not None,
            )
        raise StorageUnavailable("the timeline kept changing under us; retry")

    def get_item(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        """One item of the table, as plain Python values; None when absent."""
        response = self.dynamodb.get_item(
            TableName=self.table, Key=to_item({"pk": pk, "sk": sk}), ConsistentRead=consistent
        )
        return from_item(response["Item"]) if "Item" in response else None

    def _read_identity(self, identity: Identity) -> _IdentityRecord | None:
        item = self.get_item(identity_pk(identity), IDENT_SK, consistent=True)
        if item is None:
            return None
        conversation = None
        if item.get("conversation_id") and item.get("last_message_at"):
            conversation = KnownConversation(
                id=str(item["conversation_id"]),
                last_message_at=str(item["last_message_at"]),
                last_channel=item.get("conversation_channel"),
            )
        return _IdentityRecord(customer_id=str(item["customer_id"]), conversation=conversation)

    def _plan(
        self,
        record: _IdentityRecord,
        inbound: InboundMessage,
        now: datetime,
        message_id: str,
        trust_hint: bool,
    ) -> ConversationPlan:
        """Which conversation the message joins, from the identity's hint or the profile."""
        known = (
            record.conversation if trust_hint else self.read_latest_conversation(record.customer_id)
        )
        return self.plan_inbound(
            record.customer_id,
            known,
            inbound.channel.value,
            inbound.author_role,
            now,
            message_id,
            new_id(now),
        )

    def _inbound_message(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        customer_id: str,
        conversation_id: str,
    ) -> dict[str, Any]:
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
            status_history=[StatusChange(status=MessageStatus.RECEIVED, at=now)],
            raw=raw.ref,
            channel_data=inbound.channel_data,
        )
        item = message_item(message, raw_inline=raw.inline)
        item["expires_at"] = expires_at(now, self.settings.message_retention_days)
        return to_item(item)

    def _object_ref_puts(
        self, inbound: InboundMessage, raw: KeptRaw, now: datetime, message_id: str, cid: str
    ) -> list[TransactWriteItemTypeDef]:
        """One reference item per S3 object the message points at, in its transaction.

        Erasure deletes an object shared by content hash (an attachment two customers
        sent) only when no other message's reference is left (threadline.privacy).
        """
        refs: dict[tuple[str, str], None] = {}
        if raw.ref.location == "s3" and raw.ref.bucket and raw.ref.key:
            refs[(raw.ref.bucket, raw.ref.key)] = None
        for part in inbound.parts:
            if isinstance(part, MediaPart) and part.s3_key:
                refs[(self.settings.raw_bucket, part.s3_key)] = None
        return [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": blob_pk(bucket, key),
                            "sk": blob_ref_sk(message_id),
                            "type": "blob_ref",
                            "customer_id": cid,
                            "message_id": message_id,
                            "expires_at": expires_at(now, self.settings.message_retention_days),
                        }
                    ),
                }
            }
            for bucket, key in refs
        ]

    def _dedup_put(
        self,
        inbound: InboundMessage,
        now: datetime,
        message_id: str,
        customer_id: str,
        conversation_id: str | None = None,
    ) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.table,
                "Item": to_item(
                    {
                        "pk": dedup_pk(inbound.provider, inbound.provider_message_id),
                        "sk": DEDUP_SK,
                        "type": "dedup",
                        "customer_id": customer_id,
                        "message_id": message_id,
                        # A reply naming this message finds its conversation here.
                        "conversation_id": conversation_id,
                        "created_at": now.isoformat(),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _first_message_operations(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        customer_id: str,
        conversation_id: str,
        *,
        linked_via: str | None = None,
    ) -> list[TransactWriteItemTypeDef]:
        """Dedupe, message and identity for the first message from an identity.

        The identity put is conditional: that is what makes concurrent first messages
        from one sender one customer (or attach a linked identity once).
        """
        stamp = now.isoformat()
        return [
            self._dedup_put(inbound, now, message_id, customer_id, conversation_id),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._inbound_message(
                        inbound, raw, now, message_id, customer_id, conversation_id
                    ),
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": identity_pk(inbound.sender),
                            "sk": IDENT_SK,
                            "type": "identity",
                            "identity": str(inbound.sender),
                            "customer_id": customer_id,
                            "conversation_id": conversation_id,
                            "last_message_at": stamp,
                            "conversation_channel": inbound.channel.value,
                            "created_at": stamp,
                            "reply_to": inbound.reply_to,
                            "linked_via": linked_via,
                            # customer.identity_linked is published for items that carry these
                            "linked_at": stamp if linked_via else None,
                            "link_source": "automatic" if linked_via else None,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]

    def _new_customer_operations(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        customer_id: str,
        conversation_id: str,
    ) -> list[TransactWriteItemTypeDef]:
        stamp = now.isoformat()
        channel = inbound.channel.value
        action = consent.detect(_text_of(inbound), inbound.consent_keyword)
        consent_map: dict[str, Any] = {}
        help_map: dict[str, Any] = {}
        if action is consent.ConsentAction.HELP:
            help_map[str(inbound.sender)] = stamp
        elif action is not None:
            consent_map[str(inbound.sender)] = _consent_record(action, inbound, message_id, now)
        return [
            *self._first_message_operations(
                inbound, raw, now, message_id, customer_id, conversation_id
            ),
            # The verified identities come along, so the next message from them
            # (an e-mail from the same address) lands on this customer too.
            *(
                self._verified_identity_put(identity, customer_id, inbound, stamp)
                for identity in _other_verified(inbound)
            ),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": customer_pk(customer_id),
                            "sk": PROFILE_SK,
                            "type": "customer",
                            "customer_id": customer_id,
                            "display_name": inbound.sender_display_name,
                            "identities": [
                                str(inbound.sender),
                                *(str(i) for i in _other_verified(inbound)),
                            ],
                            "created_at": stamp,
                            "last_channel": channel,
                            "last_message_at": stamp,
                            "last_inbound": {channel: stamp},
                            "consent": consent_map,
                            "help_requested": help_map,
                            "open_conversation_id": conversation_id,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *self._new_conversation_operations(
                customer_id, conversation_id, channel, inbound.author_role, now
            ),
        ]

    def _known_customer_operations(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        record: _IdentityRecord,
        plan: ConversationPlan,
    ) -> list[TransactWriteItemTypeDef]:
        customer_id = record.customer_id
        stamp = now.isoformat()
        conversation_id = plan.conversation_id

        # Guard the identity against a merge that moved it to another customer since
        # we read it; the conversation's own conditions guard the conversation.
        identity_values: dict[str, Any] = {
            ":cid": customer_id,
            ":conv": conversation_id,
            ":now": stamp,
            ":channel": inbound.channel.value,
        }
        if inbound.reply_to:
            identity_values[":reply"] = inbound.reply_to

        profile_update, profile_names, profile_values = _profile_update(inbound, message_id, now)
        profile_update, profile_condition = _with_conversation(
            profile_update, "attribute_exists(pk)", plan, profile_values
        )

        return [
            self._dedup_put(inbound, now, message_id, customer_id, conversation_id),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._inbound_message(
                        inbound, raw, now, message_id, customer_id, conversation_id
                    ),
                }
            },
            *plan.operations,
            {
                "Update": {
                    "TableName": self.table,
                    "Key": to_item({"pk": identity_pk(inbound.sender), "sk": IDENT_SK}),
                    "UpdateExpression": (
                        "SET conversation_id = :conv, last_message_at = :now, "
                        "conversation_channel = :channel"
                    )
                    + (", reply_to = :reply" if inbound.reply_to else ""),
                    "ConditionExpression": "customer_id = :cid",
                    "ExpressionAttributeValues": to_item(identity_values),
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK}),
                    "UpdateExpression": profile_update,
                    "ConditionExpression": profile_condition,
                    "ExpressionAttributeNames": profile_names,
                    "ExpressionAttributeValues": to_item(profile_values),
                }
            },
        ]

    def _cancellation_outcome(self, exc: Exception, inbound: InboundMessage) -> IngestResult | None:
        """An IngestResult when the transaction was cancelled because it is a retry."""
        reasons = cancellation_reasons(exc)
        if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
            return None
        old = reasons[0].get("Item")
        # Not every DynamoDB implementation returns the old item; then read it.
        item = (
            from_item(old)
            if old
            else self.get_item(
                dedup_pk(inbound.provider, inbound.provider_message_id), DEDUP_SK, consistent=True
            )
        )
        if item is None:
            return None
        logger.info(
            "duplicate delivery acknowledged",
            extra={"message_id": item["message_id"], "customer_id": item["customer_id"]},
        )
        return IngestResult(
            message_id=str(item["message_id"]),
            customer_id=str(item["customer_id"]),
            duplicate=True,
        )

    # ----------------------------------------------------------------- linking

    def _verified_owner(self, inbound: InboundMessage) -> _IdentityRecord | None:
        """The identity record of the customer who owns one of the sender's verified
        identities, if any.

        Only exact identities the provider verified are followed (design: automatic
        linking only on exact, verified identities); the first one found wins.
        """
        for identity in _other_verified(inbound):
            record = self._read_identity(identity)
            if record is not None:
                return record
        return None

    def _verified_identity_put(
        self, identity: Identity, customer_id: str, inbound: InboundMessage, stamp: str
    ) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.table,
                "Item": to_item(
                    {
                        "pk": identity_pk(identity),
                        "sk": IDENT_SK,
                        "type": "identity",
                        "identity": str(identity),
                        "customer_id": customer_id,
                        "created_at": stamp,
                        "verified_by": inbound.provider,
                        "linked_from": str(inbound.sender),
                    }
                ),
                # Someone else may have claimed it meanwhile: then the transaction is
                # cancelled and the retry files the message on that customer.
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _linked_identity_operations(
        self,
        inbound: InboundMessage,
        raw: KeptRaw,
        now: datetime,
        message_id: str,
        customer_id: str,
        plan: ConversationPlan,
    ) -> list[TransactWriteItemTypeDef]:
        """A first message from a new identity of a known customer: attach and file it.

        It joins the customer's open conversation (the channel switch from e-mail to
        Slack, say) or opens one, as any message of a known customer does.
        """
        update, names, values = _profile_update(inbound, message_id, now)
        update += ", identities = list_append(identities, :new_identity)"
        values[":new_identity"] = [str(inbound.sender)]
        values[":sender"] = str(inbound.sender)
        # A merge may have absorbed the customer since we read the identity: an
        # identity joining it now would be left behind by the merge.
        update, condition = _with_conversation(
            update,
            "attribute_exists(pk) AND NOT contains(identities, :sender) "
            "AND attribute_not_exists(merge_state)",
            plan,
            values,
        )
        linked_via = next((str(i) for i in _other_verified(inbound)), None)
        return [
            *self._first_message_operations(
                inbound,
                raw,
                now,
                message_id,
                customer_id,
                plan.conversation_id,
                linked_via=linked_via,
            ),
            {
                "Update": {
                    "TableName": self.table,
                    "Key": to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK}),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": to_item(values),
                }
            },
            *plan.operations,
        ]

    # ----------------------------------------------------------------- edits

    def apply_edit(
        self, edit: MessageEdit, raw: KeptRaw | None = None, *, now: datetime | None = None
    ) -> bool:
        """Update a stored message the provider says was edited or deleted.

        The message keeps its place on the timeline; its earlier parts go to
        ``revisions``. Returns False, changing nothing, for a message we never stored,
        a repeated change (same ``edit_id``), an edit after a deletion, an edit older
        than the one stored, or one that leaves the parts as they were (Slack sends
        ``message_changed`` when it adds a link preview).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            located = self.get_item(
                dedup_pk(edit.provider, edit.provider_message_id), DEDUP_SK, consistent=True
            )
            if located is None:
                logger.info("edit of an unknown message ignored", extra={"kind": edit.kind})
                return False
            key = {
                "pk": customer_pk(str(located["customer_id"])),
                "sk": message_sk(str(located["message_id"])),
            }
            for _ in range(_MAX_ATTEMPTS):
                item = self.get_item(key["pk"], key["sk"], consistent=True)
                if item is None:
                    # A merge may have moved the message (same id) to the surviving customer.
                    moved_to = self.merged_into(str(key["pk"]).removeprefix("CUST#"))
                    if moved_to is None:
                        return False
                    key["pk"] = customer_pk(moved_to)
                    continue
                if edit.edit_id in (item.get("edit_ids") or set()):
                    return False
                message = message_from_item(item)
                at = edit.at or now or utc_now()
                if message.deleted_at is not None:
                    return False
                if edit.kind == "edited" and (
                    edit.parts == message.parts
                    or (message.edited_at is not None and at <= message.edited_at)
                ):
                    return False
                revision = MessageRevision(
                    kind=edit.kind, at=at, parts=message.parts, raw=raw.ref if raw else None
                )
                changes: dict[str, Any] = {
                    "parts": edit.parts if edit.kind == "edited" else [],
                    "revisions": [*message.revisions, revision],
                    ("edited_at" if edit.kind == "edited" else "deleted_at"): at,
                }
                updated = message.model_copy(update=changes)
                try:
                    self.dynamodb.update_item(
                        TableName=self.table,
                        Key=to_item(key),
                        UpdateExpression="SET message = :new ADD edit_ids :edit",
                        # Optimistic: a concurrent change makes us re-read and re-apply.
                        ConditionExpression="message = :old",
                        ExpressionAttributeValues=to_item(
                            {
                                ":new": updated.model_dump_json(
                                    exclude=set(MUTABLE_MESSAGE_FIELDS)
                                ),
                                ":old": item["message"],
                                ":edit": {edit.edit_id},
                            }
                        ),
                    )
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code == "ConditionalCheckFailedException":
                        continue
                    raise
                logger.info(
                    "message changed",
                    extra={"kind": edit.kind, "message_id": located["message_id"]},
                )
                return True
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable("the edit could not be written") from exc
        raise StorageUnavailable("the message kept changing under us; retry")

    # ----------------------------------------------------------------- status

    def apply_status(self, update: StatusUpdate, *, now: datetime | None = None) -> bool:
        """Move a message we sent forward to ``update.status``.

        Returns False, changing nothing, when the message is unknown or the update
        is stale: a late or out-of-order callback never moves a status backwards,
        and a repeated one is not recorded twice.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        predecessors = STATUS_PREDECESSORS.get(update.status)
        if not predecessors:
            return False
        try:
            located = self._locate(update)
            if located is None:
                logger.info(
                    "status for an unknown message ignored", extra={"status": update.status}
                )
                return False
            customer_id, message_id = located
            change = StatusChange(
                status=update.status,
                at=update.at or now or utc_now(),
                error_code=update.error_code,
                error_message=update.error_message,
            )
            allowed = {f":from{i}": status.value for i, status in enumerate(predecessors)}
            for _ in range(MAX_ALIAS_HOPS + 1):
                try:
                    self.dynamodb.update_item(
                        TableName=self.table,
                        Key=to_item({"pk": customer_pk(customer_id), "sk": message_sk(message_id)}),
                        UpdateExpression=(
                            "SET #status = :status, "
                            "status_history = list_append(status_history, :change), "
                            "provider_message_id = if_not_exists(provider_message_id, :pmid)"
                        ),
                        ConditionExpression=(
                            f"attribute_exists(pk) AND direction = :outbound "
                            f"AND #status IN ({', '.join(allowed)})"
                        ),
                        ExpressionAttributeNames={"#status": "status"},
                        ExpressionAttributeValues=to_item(
                            {
                                ":status": update.status.value,
                                ":change": [change.model_dump(mode="json", exclude_none=True)],
                                ":pmid": update.provider_message_id,
                                ":outbound": Direction.OUTBOUND.value,
                                **allowed,
                            }
                        ),
                    )
                    break
                except ClientError as exc:
                    if (
                        exc.response.get("Error", {}).get("Code")
                        != "ConditionalCheckFailedException"
                    ):
                        raise
                    # A merge may have moved the message (same id) to the surviving customer.
                    moved_to = self.merged_into(customer_id)
                    if moved_to is None:
                        logger.info("stale status ignored", extra={"status": update.status.value})
                        return False
                    customer_id = moved_to
            else:
                return False
        except ClientError as exc:
            raise StorageUnavailable("the status could not be written") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("the status could not be written") from exc
        return True

    def _locate(self, update: StatusUpdate) -> tuple[str, str] | None:
        """(customer id, message id) of the message a status update is about."""
        if update.customer_id and update.message_id:
            return update.customer_id, update.message_id
        response = self.dynamodb.get_item(
            TableName=self.table,
            Key=to_item(
                {"pk": dedup_pk(update.provider, update.provider_message_id), "sk": DEDUP_SK}
            ),
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        item = from_item(response["Item"])
        return str(item["customer_id"]), str(item["message_id"])

    # ----------------------------------------------------------------- merged customers

    def merged_into(self, customer_id: str) -> str | None:
        """The customer that absorbed ``customer_id`` (merging or merged), else None."""
        item = self.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)
        target = (item or {}).get("merged_into")
        return str(target) if target else None

    def resolve_profile(self, customer_id: str, *, consistent: bool = False) -> Profile | None:
        """The profile ``customer_id`` stands for: its own, or, for an id a merge absorbed
        (an alias), the surviving customer's. One GetItem unless the id is an alias."""
        for _ in range(MAX_ALIAS_HOPS + 1):
            profile = self.get_profile(customer_id, consistent=consistent)
            if profile is None or profile.merged_into is None:
                return profile
            customer_id = profile.merged_into
        raise StorageUnavailable("the customer's merge aliases do not end")

    def surviving_customer_id(self, customer_id: str) -> str | None:
        profile = self.resolve_profile(customer_id, consistent=True)
        return profile.customer.id if profile else None

    # ----------------------------------------------------------------- reads

    def find_customer_id(self, identity: Identity) -> str | None:
        record = self._read_identity(identity)
        return record.customer_id if record else None

    def get_profile(self, customer_id: str, *, consistent: bool = False) -> Profile | None:
        item = self.get_item(customer_pk(customer_id), PROFILE_SK, consistent=consistent)
        return profile_from_item(item) if item else None

    def get_customer(self, customer_id: str) -> Customer | None:
        profile = self.get_profile(customer_id)
        return profile.customer if profile else None

    def get_message(self, customer_id: str, message_id: str) -> Message | None:
        item = self.get_item(customer_pk(customer_id), message_sk(message_id), consistent=True)
        return message_from_item(item) if item else None

    def timeline(
        self, customer_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> TimelinePage:
        """One page of the customer's messages, newest first."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": to_item(
                {":pk": customer_pk(customer_id), ":prefix": "MSG#"}
            ),
            # The raw payload can be large and is not part of the timeline view.
            "ProjectionExpression": (
                "pk, sk, message, #status, status_history, channel, recipient, sender, "
                "provider_message_id"
            ),
            "ExpressionAttributeNames": {"#status": "status"},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = to_item(
                {"pk": customer_pk(customer_id), "sk": decode_cursor(cursor)}
            )
        response = self.dynamodb.query(**query)
        items = [message_from_item(from_item(raw)) for raw in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        next_cursor = encode_cursor(str(from_item(last)["sk"])) if last else None
        return TimelinePage(items=items, next_cursor=next_cursor)


def profile_from_item(item: dict[str, Any]) -> Profile:
    """A PROFILE item (as from_item returns it) as a Profile."""
    customer = Customer(
        id=item["customer_id"],
        display_name=item.get("display_name"),
        identities=[Identity.parse(text) for text in item.get("identities", [])],
        created_at=datetime.fromisoformat(item["created_at"]),
        last_channel=item.get("last_channel"),
        last_message_at=(
            datetime.fromisoformat(item["last_message_at"]) if item.get("last_message_at") else None
        ),
        language=item.get("language"),
        tags=list(item.get("tags") or []),
        external_ids=dict(item.get("external_ids") or {}),
    )
    return Profile(
        customer=customer,
        last_inbound={
            Channel(name): datetime.fromisoformat(at)
            for name, at in (item.get("last_inbound") or {}).items()
        },
        consent=dict(item.get("consent") or {}),
        open_conversation_id=item.get("open_conversation_id"),
        merge_state=item.get("merge_state"),
        merged_into=item.get("merged_into"),
    )


def _text_of(inbound: InboundMessage) -> str:
    return "\n".join(p.text for p in inbound.parts if isinstance(p, TextPart))


def _profile_update(
    inbound: InboundMessage, message_id: str, now: datetime
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The PROFILE update an inbound message from a known customer makes."""
    stamp = now.isoformat()
    channel = inbound.channel.value
    values: dict[str, Any] = {":channel": channel, ":now": stamp}
    names = {"#ch": channel}
    update = "SET last_channel = :channel, last_message_at = :now, last_inbound.#ch = :now"
    if inbound.sender_display_name:
        update += ", display_name = if_not_exists(display_name, :name)"
        values[":name"] = inbound.sender_display_name
    action = consent.detect(_text_of(inbound), inbound.consent_keyword)
    if action is consent.ConsentAction.HELP:
        update += ", help_requested.#identity = :now"
        names["#identity"] = str(inbound.sender)
    elif action is not None:
        update += ", consent.#identity = :consent"
        names["#identity"] = str(inbound.sender)
        values[":consent"] = _consent_record(action, inbound, message_id, now)
    return update, names, values


def _with_conversation(
    update: str, condition: str, plan: ConversationPlan, values: dict[str, Any]
) -> tuple[str, str]:
    """A profile update and condition that also keep ``open_conversation_id`` right."""
    values[":open_conversation"] = plan.conversation_id
    values.update(plan.profile_values)
    update += ", open_conversation_id = :open_conversation"
    if plan.profile_condition:
        condition += " AND " + plan.profile_condition
    return update, condition


def _other_verified(inbound: InboundMessage) -> list[Identity]:
    """The sender's verified identities other than the one it wrote from, once each."""
    seen = {str(inbound.sender)}
    others = []
    for identity in inbound.verified_identities:
        if str(identity) not in seen:
            seen.add(str(identity))
            others.append(identity)
    return others
