"""Outbound replies: queue them from the API, dispatch them through the right channel.

A reply is written to the timeline as ``queued`` (the API answers 202); the outbox
publisher turns that write into a ``message.queued`` event, which EventBridge routes
to the dispatch queue; the dispatcher sends it and records ``sent`` or ``failed``.
Status callbacks then move it on (``TimelineStore.apply_status``).

A message is never sent twice: the dispatcher claims it with a conditional write
before calling the provider, and a redelivered job whose message is claimed or
done sends nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from threadline.channels.base import Sender, SendFailed
from threadline.errors import NotFound, StorageUnavailable, ThreadlineError
from threadline.items import (
    DEDUP_SK,
    IDEMPOTENCY_SK,
    IDENT_SK,
    PROFILE_SK,
    cancellation_reasons,
    customer_pk,
    dedup_pk,
    from_item,
    idempotency_pk,
    identity_pk,
    message_from_item,
    message_item,
    message_sk,
    new_id,
    to_item,
)
from threadline.logs import logger
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    IdentityKind,
    MediaPart,
    Message,
    MessageStatus,
    Part,
    StatusChange,
    TextPart,
    utc_now,
)
from threadline.store import Profile, TimelineStore

# Which identity kind reaches a customer on each channel.
CHANNEL_IDENTITY_KIND: dict[Channel, IdentityKind] = {
    Channel.SMS: IdentityKind.PHONE,
    Channel.WHATSAPP: IdentityKind.PHONE,
    Channel.VOICE: IdentityKind.PHONE,
    Channel.EMAIL: IdentityKind.EMAIL,
    Channel.SLACK: IdentityKind.SLACK,
    Channel.MESSENGER: IdentityKind.MESSENGER,
    Channel.INSTAGRAM: IdentityKind.INSTAGRAM,
    Channel.TELEGRAM: IdentityKind.TELEGRAM,
    Channel.WEBCHAT: IdentityKind.WEBCHAT,
}
CHANNEL_PROVIDER: dict[Channel, str] = {
    Channel.SMS: "twilio",
    Channel.WHATSAPP: "twilio",
    Channel.VOICE: "twilio",
    Channel.EMAIL: "ses",
    Channel.SLACK: "slack",
    Channel.MESSENGER: "meta",
    Channel.INSTAGRAM: "meta",
    Channel.TELEGRAM: "telegram",
    Channel.WEBCHAT: "webchat",
}
# WhatsApp accepts free-form business messages only within 24 hours of the
# customer's last message to us; outside it only approved templates.
WHATSAPP_WINDOW = timedelta(hours=24)
MAX_DISPATCH_ATTEMPTS = 5


class NoIdentityForChannel(ThreadlineError):
    status = 422
    code = "no_identity_for_channel"


class OptedOut(ThreadlineError):
    status = 409
    code = "opted_out"


class IdempotencyKeyReused(ThreadlineError):
    status = 422
    code = "idempotency_key_reused"


class MediaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https://", max_length=2048)
    content_type: str | None = None
    caption: str | None = Field(default=None, max_length=1024)


class SendMessageRequest(BaseModel):
    """``POST /v1/customers/{id}/messages``: an agent's (or bot's) reply."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=4096)
    media: list[MediaIn] = Field(default_factory=list, max_length=10)
    channel: Channel | None = Field(
        default=None, description="omit to use the channel the customer last wrote on"
    )
    fallback: list[Channel] = Field(
        default_factory=list,
        description="channels to try, in order, when the chosen one cannot carry the message "
        "(e.g. WhatsApp outside its 24-hour window)",
    )
    author_role: Literal["agent", "bot", "system"] = "agent"
    author_id: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _has_content(self) -> SendMessageRequest:
        if not self.text and not self.media:
            raise ValueError("a message needs text or media")
        return self

    def parts(self) -> list[Part]:
        parts: list[Part] = [TextPart(text=self.text)] if self.text else []
        parts += [
            MediaPart(url=m.url, content_type=m.content_type, caption=m.caption) for m in self.media
        ]
        return parts

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def identity_for(profile: Profile, channel: Channel) -> Identity | None:
    kind = CHANNEL_IDENTITY_KIND[channel]
    return next((i for i in profile.customer.identities if i.kind is kind), None)


def latest_inbound_channel(profile: Profile) -> Channel | None:
    if not profile.last_inbound:
        return None
    return max(profile.last_inbound.items(), key=lambda item: item[1])[0]


def choose_channel(profile: Profile, requested: Channel | None) -> tuple[Channel, Identity]:
    """The channel and identity to send on, or the API error that explains why not."""
    channel = requested or latest_inbound_channel(profile)
    if channel is None:
        raise NoIdentityForChannel("the customer has never written in: name a channel")
    identity = identity_for(profile, channel)
    if identity is None:
        raise NoIdentityForChannel(f"the customer has no identity that {channel.value} reaches")
    if profile.opted_out(identity):
        raise OptedOut(f"the customer opted out of messages to {identity.kind.value}")
    return channel, identity


def within_whatsapp_window(profile: Profile, now: datetime) -> bool:
    last = profile.last_inbound.get(Channel.WHATSAPP)
    return last is not None and now - last < WHATSAPP_WINDOW


class DispatchState(StrEnum):
    SENDING = "sending"
    RETRY = "retry"
    DONE = "done"


class OutboundStore(TimelineStore):
    """The timeline store plus the writes outbound messages go through."""

    def queue_message(
        self,
        customer_id: str,
        request: SendMessageRequest,
        *,
        idempotency_key: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Message, bool]:
        """Write a reply as ``queued``; (message, created). Same key twice: the first."""
        from botocore.exceptions import BotoCoreError, ClientError

        now = now or utc_now()
        profile = self.get_profile(customer_id, consistent=True)
        if profile is None:
            raise NotFound("no such customer")
        if profile.merged_into is not None:
            # The id of a customer a merge absorbed: the reply goes to the survivor.
            return self.queue_message(
                profile.merged_into, request, idempotency_key=idempotency_key, now=now
            )
        channel, recipient = choose_channel(profile, request.channel)
        identity_item = self.get_item(identity_pk(recipient), IDENT_SK) or {}
        conversation_id = str(identity_item.get("conversation_id") or "") or new_id(now)
        channel_data: dict[str, Any] = {}
        if request.fallback:
            channel_data["fallback"] = [c.value for c in request.fallback]
        if identity_item.get("reply_to"):
            # Where the customer last wrote from on this channel (Slack: conversation
            # and thread), so the reply lands beside their message.
            channel_data["reply_to"] = dict(identity_item["reply_to"])
        message = Message(
            id=new_id(now),
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            direction=Direction.OUTBOUND,
            provider=CHANNEL_PROVIDER[channel],
            author_role=AuthorRole(request.author_role),
            author_id=request.author_id,
            recipient=recipient,
            received_at=now,
            parts=request.parts(),
            status=MessageStatus.QUEUED,
            status_history=[StatusChange(status=MessageStatus.QUEUED, at=now)],
            channel_data=channel_data,
        )
        operations: list[Any] = [
            {"Put": {"TableName": self.table, "Item": to_item(message_item(message))}}
        ]
        if idempotency_key:
            operations.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": to_item(
                            {
                                "pk": idempotency_pk(customer_id, idempotency_key),
                                "sk": IDEMPOTENCY_SK,
                                "type": "idempotency",
                                "message_id": message.id,
                                "fingerprint": request.fingerprint(),
                                "created_at": now.isoformat(),
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        # A merge that began after our read would leave the reply behind on the
        # absorbed customer: the profile must still be its own.
        operations.append(
            {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK}),
                    "ConditionExpression": (
                        "attribute_exists(pk) AND attribute_not_exists(merge_state)"
                    ),
                }
            }
        )
        try:
            self.dynamodb.transact_write_items(TransactItems=operations)
        except ClientError as exc:
            reasons = cancellation_reasons(exc)
            if (
                idempotency_key
                and len(reasons) > 1
                and reasons[1].get("Code") == "ConditionalCheckFailed"
            ):
                return self._replay(
                    customer_id, idempotency_key, request, reasons[1].get("Item")
                ), False
            if reasons and reasons[-1].get("Code") == "ConditionalCheckFailed":
                survivor = self.surviving_customer_id(customer_id)
                if survivor and survivor != customer_id:
                    return self.queue_message(
                        survivor, request, idempotency_key=idempotency_key, now=now
                    )
            raise StorageUnavailable("the message could not be queued") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("the message could not be queued") from exc
        logger.info(
            "outbound message queued",
            extra={"customer_id": customer_id, "message_id": message.id, "channel": channel.value},
        )
        return message, True

    def _replay(self, customer_id: str, key: str, request: SendMessageRequest, old: Any) -> Message:
        record = (
            from_item(old)
            if old
            else self.get_item(idempotency_pk(customer_id, key), IDEMPOTENCY_SK, consistent=True)
        ) or {}
        if record.get("fingerprint") != request.fingerprint():
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different message")
        message = self.get_message(customer_id, str(record["message_id"]))
        if message is None:
            raise StorageUnavailable("the original message could not be read")
        return message

    # ----------------------------------------------------------------- dispatch

    def _update_message(
        self, customer_id: str, message_id: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        """One conditional update of a message item; None when the condition failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.dynamodb.update_item(
                TableName=self.table,
                Key=to_item({"pk": customer_pk(customer_id), "sk": message_sk(message_id)}),
                **kwargs,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise StorageUnavailable("the message could not be updated") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("the message could not be updated") from exc
        return dict(response)

    def claim(self, customer_id: str, message_id: str, now: datetime) -> Message | None:
        """Take a queued message for sending; None when it is in flight or done."""
        response = self._update_message(
            customer_id,
            message_id,
            UpdateExpression=(
                "SET dispatch_state = :sending, dispatch_started_at = :now, "
                "dispatch_attempts = if_not_exists(dispatch_attempts, :zero) + :one"
            ),
            ConditionExpression=(
                "#status = :queued AND "
                "(attribute_not_exists(dispatch_state) OR dispatch_state = :retry)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":sending": DispatchState.SENDING.value,
                    ":retry": DispatchState.RETRY.value,
                    ":queued": MessageStatus.QUEUED.value,
                    ":now": now.isoformat(),
                    ":zero": 0,
                    ":one": 1,
                }
            ),
            ReturnValues="ALL_NEW",
        )
        if response is None:
            return None
        return message_from_item(from_item(response["Attributes"]))

    def release_for_retry(self, customer_id: str, message_id: str, error: SendFailed) -> None:
        self._update_message(
            customer_id,
            message_id,
            UpdateExpression="SET dispatch_state = :retry, last_error = :error",
            ConditionExpression="dispatch_state = :sending",
            ExpressionAttributeValues=to_item(
                {
                    ":retry": DispatchState.RETRY.value,
                    ":sending": DispatchState.SENDING.value,
                    ":error": {"code": error.code, "message": error.message},
                }
            ),
        )

    def reroute(
        self, customer_id: str, message_id: str, channel: Channel, recipient: Identity
    ) -> None:
        self._update_message(
            customer_id,
            message_id,
            UpdateExpression="SET channel = :channel, recipient = :recipient, provider = :provider",
            ConditionExpression="dispatch_state = :sending",
            ExpressionAttributeValues=to_item(
                {
                    ":channel": channel.value,
                    ":recipient": str(recipient),
                    ":provider": CHANNEL_PROVIDER[channel],
                    ":sending": DispatchState.SENDING.value,
                }
            ),
        )

    def record_failed(
        self, customer_id: str, message_id: str, code: str, reason: str, now: datetime
    ) -> None:
        change = StatusChange(
            status=MessageStatus.FAILED, at=now, error_code=code, error_message=reason
        )
        self._update_message(
            customer_id,
            message_id,
            UpdateExpression=(
                "SET #status = :failed, status_history = list_append(status_history, :change), "
                "dispatch_state = :done"
            ),
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":failed": MessageStatus.FAILED.value,
                    ":queued": MessageStatus.QUEUED.value,
                    ":done": DispatchState.DONE.value,
                    ":change": [change.model_dump(mode="json", exclude_none=True)],
                }
            ),
        )

    def record_sent(self, message: Message, provider_message_id: str, now: datetime) -> None:
        """Mark a message sent and map the provider's id back to it for callbacks."""
        from botocore.exceptions import BotoCoreError, ClientError

        change = StatusChange(status=MessageStatus.SENT, at=now)
        key = to_item({"pk": customer_pk(message.customer_id), "sk": message_sk(message.id)})
        dedup = {
            "Put": {
                "TableName": self.table,
                "Item": to_item(
                    {
                        "pk": dedup_pk(message.provider, provider_message_id),
                        "sk": DEDUP_SK,
                        "type": "dedup",
                        "customer_id": message.customer_id,
                        "message_id": message.id,
                        "created_at": now.isoformat(),
                    }
                ),
            }
        }
        sent = {
            "Update": {
                "TableName": self.table,
                "Key": key,
                "UpdateExpression": (
                    "SET #status = :sent, status_history = list_append(status_history, :change), "
                    "provider_message_id = :pmid, dispatch_state = :done"
                ),
                # A fast delivery callback may have moved it on already: then only
                # the provider id and the dispatch state are recorded (below).
                "ConditionExpression": "#status = :queued",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": to_item(
                    {
                        ":sent": MessageStatus.SENT.value,
                        ":queued": MessageStatus.QUEUED.value,
                        ":pmid": provider_message_id,
                        ":done": DispatchState.DONE.value,
                        ":change": [change.model_dump(mode="json", exclude_none=True)],
                    }
                ),
            }
        }
        try:
            self.dynamodb.transact_write_items(TransactItems=[sent, dedup])  # type: ignore[list-item]
            return
        except ClientError as exc:
            reasons = cancellation_reasons(exc)
            if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
                raise StorageUnavailable("the sent status could not be written") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("the sent status could not be written") from exc
        self._update_message(
            message.customer_id,
            message.id,
            UpdateExpression="SET provider_message_id = :pmid, dispatch_state = :done",
            ExpressionAttributeValues=to_item(
                {":pmid": provider_message_id, ":done": DispatchState.DONE.value}
            ),
        )
        self.dynamodb.put_item(**dedup["Put"])  # type: ignore[arg-type]


class DispatchOutcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class RetryLater(Exception):
    """The provider could not take the message now; try again after ``delay`` seconds."""

    delay: float
    reason: str


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff (1, 2, 4, ... s, capped at 15 minutes), or the provider's ask."""
    if retry_after is not None:
        return min(max(retry_after, 1.0), 900.0)
    return float(min(2 ** max(attempt - 1, 0), 900))


class Dispatcher:
    """Sends one queued message through its channel's sender."""

    def __init__(
        self,
        store: OutboundStore,
        senders: Mapping[Channel, Sender],
        *,
        max_attempts: int = MAX_DISPATCH_ATTEMPTS,
    ) -> None:
        self.store = store
        self.senders = senders
        self.max_attempts = max_attempts

    def dispatch(
        self, customer_id: str, message_id: str, *, attempt: int = 1, now: datetime | None = None
    ) -> DispatchOutcome:
        now = now or utc_now()
        message = self.store.claim(customer_id, message_id, now)
        if message is None:
            # A merge may have moved the queued reply (same id) to the surviving customer.
            survivor = self.store.merged_into(customer_id)
            if survivor is not None:
                return self.dispatch(survivor, message_id, attempt=attempt, now=now)
        if message is None:
            # Sent, failed, or another attempt is in flight (or died after calling the
            # provider): sending again could reach the customer twice.
            logger.info("message not claimable; nothing sent", extra={"message_id": message_id})
            return DispatchOutcome.SKIPPED
        profile = self.store.get_profile(customer_id, consistent=True)
        if profile is None or message.recipient is None:
            return self._fail(message, "no_recipient", "the customer or recipient is gone", now)
        if profile.opted_out(message.recipient):
            return self._fail(message, "opted_out", "the customer opted out", now)
        if message.channel is Channel.WHATSAPP and not within_whatsapp_window(profile, now):
            rerouted = self._fallback(message, profile)
            if rerouted is None:
                return self._fail(
                    message,
                    "whatsapp_window_closed",
                    "more than 24 hours since the customer's last WhatsApp message: "
                    "only a template can be sent",
                    now,
                )
            message = rerouted
        sender = self.senders.get(message.channel)
        if sender is None:
            return self._fail(
                message, "channel_unavailable", f"no sender for {message.channel}", now
            )
        try:
            result = sender.send(message)
        except SendFailed as error:
            if error.retryable and attempt < self.max_attempts:
                self.store.release_for_retry(customer_id, message_id, error)
                logger.warning(
                    "provider asked us to retry", extra={"code": error.code, "attempt": attempt}
                )
                raise RetryLater(backoff_seconds(attempt, error.retry_after), error.code) from error
            return self._fail(message, error.code, error.message, now)
        self.store.record_sent(message, result.provider_message_id, now)
        logger.info(
            "message sent",
            extra={"message_id": message_id, "provider_message_id": result.provider_message_id},
        )
        return DispatchOutcome.SENT

    def _fallback(self, message: Message, profile: Profile) -> Message | None:
        for name in message.channel_data.get("fallback", []):
            channel = Channel(name)
            identity = identity_for(profile, channel)
            if channel is Channel.WHATSAPP or identity is None or profile.opted_out(identity):
                continue
            self.store.reroute(message.customer_id, message.id, channel, identity)
            return message.model_copy(
                update={
                    "channel": channel,
                    "recipient": identity,
                    "provider": CHANNEL_PROVIDER[channel],
                }
            )
        return None

    def _fail(self, message: Message, code: str, reason: str, now: datetime) -> DispatchOutcome:
        self.store.record_failed(message.customer_id, message.id, code, reason, now)
        logger.warning("message failed", extra={"message_id": message.id, "code": code})
        return DispatchOutcome.FAILED


def job_from_queue_body(body: str) -> tuple[str, str]:
    """(customer id, message id) from a dispatch-queue message: a message.queued event
    as EventBridge delivers it to SQS."""
    try:
        envelope = json.loads(body)
        message = envelope["detail"]["message"]
        customer_id, message_id = message["customer_id"], message["id"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError("not a message.queued event") from exc
    if not (
        isinstance(customer_id, str) and customer_id and isinstance(message_id, str) and message_id
    ):
        raise ValueError("a message.queued event names its customer and message")
    return customer_id, message_id
