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

from threadline.channels.base import Sender, SendFailed, SendResult, StatusUpdate
from threadline.consent import Purpose
from threadline.email_feedback import email_block
from threadline.errors import NotFound, StorageUnavailable, ThreadlineError
from threadline.items import (
    DEDUP_SK,
    IDEMPOTENCY_SK,
    IDENT_SK,
    PROFILE_SK,
    cancellation_reasons,
    customer_pk,
    dedup_pk,
    expires_at,
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
_QUEUE_ATTEMPTS = 3
_CONFLICTS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
# An Idempotency-Key is remembered for a week (DynamoDB TTL): retries come within
# minutes, and the item must not outlive the customer's data for long.
IDEMPOTENCY_RETENTION_DAYS = 7


class NoIdentityForChannel(ThreadlineError):
    status = 422
    code = "no_identity_for_channel"


class OptedOut(ThreadlineError):
    """The customer withdrew consent (``opted_out``) or never gave the consent this
    purpose needs (``consent_required``, marketing)."""

    status = 409
    code = "opted_out"


class EmailBlocked(ThreadlineError):
    """The address bounced permanently (``email_undeliverable``) or complained
    (``email_complained``): SES feedback stopped e-mail to it."""

    status = 409
    code = "email_undeliverable"


class IdempotencyKeyReused(ThreadlineError):
    status = 422
    code = "idempotency_key_reused"


class MediaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https://", max_length=2048)
    content_type: str | None = None
    caption: str | None = Field(default=None, max_length=1024)


class WhatsAppTemplate(BaseModel):
    """An approved WhatsApp message template, the only thing WhatsApp carries outside the
    24-hour window (Meta's Cloud API; Twilio's WhatsApp uses Content templates)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = Field(
        min_length=2, max_length=16, pattern=r"^[a-z]{2,3}(_[A-Za-z0-9]+)?$", examples=["en_US"]
    )
    components: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=20,
        description="the Cloud API's template components (header/body/button parameters)",
    )


# Messenger message tags that let a page answer outside the 24-hour window; Instagram
# takes only HUMAN_AGENT. HUMAN_AGENT extends the window to 7 days.
MessageTag = Literal[
    "HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"
]


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
    template: WhatsAppTemplate | None = Field(
        default=None,
        description="WhatsApp only: send this approved template (works outside the 24-hour "
        "window); text, if given, is what the timeline shows",
    )
    message_tag: MessageTag | None = Field(
        default=None,
        description="Messenger/Instagram only: answer outside the 24-hour window with this "
        "message tag (Instagram: HUMAN_AGENT only, up to 7 days)",
    )
    purpose: Purpose = Field(
        default=Purpose.TRANSACTIONAL,
        description="transactional (a reply, a service message) or marketing, which needs "
        "the customer's granted consent; the dispatcher checks it again before sending",
    )

    @model_validator(mode="after")
    def _has_content(self) -> SendMessageRequest:
        if not self.text and not self.media and self.template is None:
            raise ValueError("a message needs text, media or a template")
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


# Channels a customer reaches us on but that carry no written reply: a reply to
# the customer's latest call goes out as an SMS to the number that called.
REPLY_CHANNEL: dict[Channel, Channel] = {Channel.VOICE: Channel.SMS}


def latest_inbound_channel(profile: Profile) -> Channel | None:
    if not profile.last_inbound:
        return None
    latest = max(profile.last_inbound.items(), key=lambda item: item[1])[0]
    return REPLY_CHANNEL.get(latest, latest)


def choose_channel(
    profile: Profile, requested: Channel | None, purpose: Purpose = Purpose.TRANSACTIONAL
) -> tuple[Channel, Identity]:
    """The channel and identity to send on, or the API error that explains why not."""
    channel = requested or latest_inbound_channel(profile)
    if channel is None:
        raise NoIdentityForChannel("the customer has never written in: name a channel")
    identity = identity_for(profile, channel)
    if identity is None:
        raise NoIdentityForChannel(f"the customer has no identity that {channel.value} reaches")
    refusal = profile.refusal(identity, purpose)
    if refusal == "consent_required":
        raise OptedOut(
            f"the customer has not granted {purpose.value} messages to {identity.kind.value}",
            code=refusal,
        )
    if refusal is not None:
        raise OptedOut(f"the customer opted out of messages to {identity.kind.value}")
    return channel, identity


def within_whatsapp_window(profile: Profile, now: datetime) -> bool:
    last = profile.last_inbound.get(Channel.WHATSAPP)
    return last is not None and now - last < WHATSAPP_WINDOW


# ---------------------------------------------------------------- Meta send rules
# Messenger and Instagram take free-form replies for 24 hours after the customer's
# last message; the HUMAN_AGENT tag stretches that to 7 days; Messenger's other tags
# are not time-bound (Meta polices what they are used for).
MESSAGING_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
WINDOWED_CHANNELS = frozenset({Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM})


class SendOptionNotSupported(ThreadlineError):
    status = 422
    code = "send_option_not_supported"


def meta_send_options(request: SendMessageRequest, channel: Channel) -> dict[str, Any]:
    """The template / message tag a reply carries in channel_data, checked against its channel."""
    options: dict[str, Any] = {}
    if request.template is not None:
        if channel is not Channel.WHATSAPP:
            raise SendOptionNotSupported(f"a template is sent on whatsapp, not {channel.value}")
        options["template"] = request.template.model_dump(exclude_defaults=True)
    if request.message_tag is not None:
        if channel not in (Channel.MESSENGER, Channel.INSTAGRAM):
            raise SendOptionNotSupported(
                f"message tags are for messenger and instagram, not {channel.value}"
            )
        if channel is Channel.INSTAGRAM and request.message_tag != "HUMAN_AGENT":
            raise SendOptionNotSupported("instagram takes only the HUMAN_AGENT message tag")
        options["message_tag"] = request.message_tag
    return options


def provider_for(channel: Channel, channel_data: Mapping[str, Any]) -> str:
    """Who is expected to carry a reply: for WhatsApp, the provider the customer last
    wrote through (Twilio or Meta's Cloud API); the dispatcher has the last word."""
    if channel is Channel.WHATSAPP:
        reply_to = channel_data.get("reply_to") or {}
        if reply_to.get("whatsapp_provider"):
            return str(reply_to["whatsapp_provider"])
    return CHANNEL_PROVIDER[channel]


def window_closed(profile: Profile, message: Message, now: datetime) -> tuple[str, str] | None:
    """(error code, reason) when the channel's messaging window bars this message, else None."""
    channel = message.channel
    if channel not in WINDOWED_CHANNELS:
        return None
    last = profile.last_inbound.get(channel)
    if channel is Channel.WHATSAPP:
        if message.channel_data.get("template") or within_whatsapp_window(profile, now):
            return None
        return (
            "whatsapp_window_closed",
            "more than 24 hours since the customer's last WhatsApp message: "
            "only a template can be sent",
        )
    tag = message.channel_data.get("message_tag")
    if tag and tag != "HUMAN_AGENT":
        return None
    window = HUMAN_AGENT_WINDOW if tag == "HUMAN_AGENT" else MESSAGING_WINDOW
    if last is not None and now - last < window:
        return None
    hours = int(window.total_seconds() // 3600)
    return (
        f"{channel.value}_window_closed",
        f"more than {hours} hours since the customer's last {channel.value} message: "
        + ("too late even for HUMAN_AGENT" if tag else "send with a message_tag"),
    )


class ProviderChoice:
    """Several providers carry one channel (WhatsApp: Twilio and Meta's Cloud API).

    A reply goes through the provider the customer last wrote through on the channel
    (``reply_to["whatsapp_provider"]``, recorded on their identity by every
    inbound WhatsApp message); a template needs Meta; else the default provider.
    """

    def __init__(self, senders: Mapping[str, Sender], default: str) -> None:
        if default not in senders:
            raise ValueError(f"default provider {default} has no sender")
        self.senders = dict(senders)
        self.default = default
        self.provider = default

    def pick(self, message: Message) -> Sender:
        reply_to = message.channel_data.get("reply_to") or {}
        wanted = reply_to.get("whatsapp_provider")
        if message.channel_data.get("template") and "meta" in self.senders:
            wanted = "meta"
        return self.senders.get(str(wanted), self.senders[self.default])

    def send(self, message: Message) -> SendResult:
        return self.pick(message).send(message)


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
        now = now or utc_now()
        for _ in range(_QUEUE_ATTEMPTS):
            queued = self._queue_once(customer_id, request, idempotency_key, now)
            if queued is not None:
                return queued
        raise StorageUnavailable("the conversation kept changing under us; retry")

    def _queue_once(
        self,
        customer_id: str,
        request: SendMessageRequest,
        idempotency_key: str | None,
        now: datetime,
    ) -> tuple[Message, bool] | None:
        """One try of queue_message; None when the open conversation closed meanwhile."""
        from botocore.exceptions import BotoCoreError, ClientError

        profile = self.get_profile(customer_id, consistent=True)
        if profile is None:
            raise NotFound("no such customer")
        if profile.merged_into is not None:
            # The id of a customer a merge absorbed: the reply goes to the survivor.
            return self.queue_message(
                profile.merged_into, request, idempotency_key=idempotency_key, now=now
            )
        channel, recipient = choose_channel(profile, request.channel, request.purpose)
        identity_item = self.get_item(identity_pk(recipient), IDENT_SK) or {}
        if channel is Channel.EMAIL:
            blocked = email_block(identity_item)
            if blocked is not None:
                raise EmailBlocked(blocked[1], code=blocked[0])
        # A reply joins the customer's open conversation. With none open it opens
        # none (conversations open with a customer's message) and carries the id of
        # the last conversation it answers.
        open_conversation = profile.open_conversation_id
        conversation_id = (
            open_conversation or str(identity_item.get("conversation_id") or "") or new_id(now)
        )
        # Dispatch instructions ride in channel_data (as fallback and reply_to do).
        channel_data: dict[str, Any] = {"purpose": request.purpose.value}
        if request.fallback:
            channel_data["fallback"] = [c.value for c in request.fallback]
        if identity_item.get("reply_to"):
            # Where the customer last wrote from on this channel (Slack: conversation
            # and thread), so the reply lands beside their message.
            channel_data["reply_to"] = dict(identity_item["reply_to"])
        channel_data.update(meta_send_options(request, channel))
        message = Message(
            id=new_id(now),
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            direction=Direction.OUTBOUND,
            provider=provider_for(channel, channel_data),
            author_role=AuthorRole(request.author_role),
            author_id=request.author_id,
            recipient=recipient,
            received_at=now,
            parts=request.parts(),
            status=MessageStatus.QUEUED,
            status_history=[StatusChange(status=MessageStatus.QUEUED, at=now)],
            channel_data=channel_data,
        )
        item = message_item(message)
        item["expires_at"] = expires_at(now, self.settings.message_retention_days)
        # Erasure finds the customer's IDEMPOTENCY item through its message.
        item["idempotency_key"] = idempotency_key
        operations: list[Any] = [{"Put": {"TableName": self.table, "Item": to_item(item)}}]
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
                                "customer_id": customer_id,
                                "expires_at": expires_at(now, IDEMPOTENCY_RETENTION_DAYS),
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        # A merge that began after our read would leave the reply behind on the
        # absorbed customer: the profile must still be its own.
        profile_check = len(operations)
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
        if open_conversation:
            # Last, so the other items keep their places in the cancellation reasons.
            operations.append(
                self.outbound_operation(customer_id, open_conversation, message.author_role, now)
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
            if (
                len(reasons) > profile_check
                and reasons[profile_check].get("Code") == "ConditionalCheckFailed"
            ):
                survivor = self.surviving_customer_id(customer_id)
                if survivor and survivor != customer_id:
                    return self.queue_message(
                        survivor, request, idempotency_key=idempotency_key, now=now
                    )
            if open_conversation and reasons and reasons[-1].get("Code") in _CONFLICTS:
                return None  # closed (or busy) meanwhile: read the profile again
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

    def email_block(self, recipient: Identity) -> tuple[str, str] | None:
        """Why SES feedback stopped e-mail to ``recipient`` (code, reason), or None."""
        return email_block(self.get_item(identity_pk(recipient), IDENT_SK, consistent=True))

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

    def record_sent(
        self,
        message: Message,
        provider_message_id: str,
        now: datetime,
        aliases: tuple[str, ...] = (),
    ) -> None:
        """Mark a message sent and map the provider's id back to it for callbacks.

        ``aliases`` (the Message-ID of an e-mail reply) map to it the same way, so an
        inbound reply naming one is threaded onto this message's conversation.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        change = StatusChange(status=MessageStatus.SENT, at=now)
        key = to_item({"pk": customer_pk(message.customer_id), "sk": message_sk(message.id)})
        dedups = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": dedup_pk(message.provider, provider_id),
                            "sk": DEDUP_SK,
                            "type": "dedup",
                            "customer_id": message.customer_id,
                            "message_id": message.id,
                            "conversation_id": message.conversation_id,
                            "created_at": now.isoformat(),
                        }
                    ),
                }
            }
            for provider_id in dict.fromkeys((provider_message_id, *aliases))
        ]
        sent = {
            "Update": {
                "TableName": self.table,
                "Key": key,
                "UpdateExpression": (
                    "SET #status = :sent, status_history = list_append(status_history, :change), "
                    "provider_message_id = :pmid, dispatch_state = :done, provider = :provider"
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
                        ":provider": message.provider,
                    }
                ),
            }
        }
        try:
            self.dynamodb.transact_write_items(TransactItems=[sent, *dedups])  # type: ignore[list-item]
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
            UpdateExpression=(
                "SET provider_message_id = :pmid, dispatch_state = :done, provider = :provider"
            ),
            ExpressionAttributeValues=to_item(
                {
                    ":pmid": provider_message_id,
                    ":done": DispatchState.DONE.value,
                    ":provider": message.provider,
                }
            ),
        )
        for dedup in dedups:
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
        purpose = message_purpose(message)
        refusal = profile.refusal(message.recipient, purpose)
        if refusal is not None:
            # Consent is read again here: it may have been withdrawn since queueing.
            return self._fail(
                message, refusal, f"no {purpose.value} consent for this recipient", now
            )
        closed = window_closed(profile, message, now)
        if closed is not None:
            rerouted = self._fallback(message, profile, now)
            if rerouted is None:
                return self._fail(message, *closed, now)
            message = rerouted
        if message.channel is Channel.EMAIL and message.recipient is not None:
            # A bounce or complaint may have arrived after the reply was queued.
            blocked = self.store.email_block(message.recipient)
            if blocked is not None:
                return self._fail(message, blocked[0], blocked[1], now)
        sender = self.senders.get(message.channel)
        if isinstance(sender, ProviderChoice):
            sender = sender.pick(message)
        if sender is None:
            return self._fail(
                message, "channel_unavailable", f"no sender for {message.channel}", now
            )
        if sender.provider != message.provider:
            # Recorded with the sent status, so the provider's status callbacks find it.
            message = message.model_copy(update={"provider": sender.provider})
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
        self.store.record_sent(message, result.provider_message_id, now, result.aliases)
        if result.delivered:  # registry(webchat): a push to an open socket is delivered
            self.store.apply_status(
                StatusUpdate(
                    provider=message.provider,
                    provider_message_id=result.provider_message_id,
                    status=MessageStatus.DELIVERED,
                    customer_id=message.customer_id,
                    message_id=message.id,
                )
            )
        logger.info(
            "message sent",
            extra={"message_id": message_id, "provider_message_id": result.provider_message_id},
        )
        return DispatchOutcome.SENT

    def _fallback(self, message: Message, profile: Profile, now: datetime) -> Message | None:
        for name in message.channel_data.get("fallback", []):
            channel = Channel(name)
            identity = identity_for(profile, channel)
            if (
                channel is message.channel
                or identity is None
                or not profile.allows(identity, message_purpose(message))
            ):
                continue
            if window_closed(profile, message.model_copy(update={"channel": channel}), now):
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


def message_purpose(message: Message) -> Purpose:
    """The consent purpose a queued message was sent for (transactional before purposes)."""
    try:
        return Purpose(message.channel_data.get("purpose", Purpose.TRANSACTIONAL))
    except ValueError:
        return Purpose.MARKETING  # unknown: the stricter purpose


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
