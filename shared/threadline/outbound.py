"""Outbound replies: queue them from the API, dispatch them through the right channel.

A reply is written to the timeline as ``queued`` (the API answers 202); the outbox
publisher turns that write into a ``message.queued`` event, which EventBridge routes
to the dispatch queue; the dispatcher sends it and records ``sent`` or ``failed``.
Status callbacks then move it on (``TimelineStore.apply_status``).

A message is never sent twice: the dispatcher claims it with a conditional write,
marks the claim ``calling`` right before the provider call, and a redelivered job
whose message is claimed or done sends nothing. A claim whose worker died is
resolved once it is older than the claim timeout (:func:`stale_claim_verdict`):
never ``calling`` means provably unsent, so it is claimed again and sent; a stale
``calling`` claim has an unknown outcome and fails with ``send_outcome_unknown``
(docs/outbound.md, "Sending exactly once").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from threadline.channels.base import Sender, SendFailed, StatusUpdate
from threadline.channels.registry import (
    channel_spec,
    sender_factory,
    tagged_channels,
    template_channels,
)
from threadline.channels.twilio.whatsapp import ProviderChoice
from threadline.consent import Purpose
from threadline.errors import ThreadlineError
from threadline.logs import logger
from threadline.model import Model
from threadline.schema import (
    Channel,
    Direction,
    Identity,
    MediaPart,
    Message,
    MessageStatus,
    Part,
    TextPart,
    utc_now,
)
from threadline.store import Profile
from threadline.telemetry import MESSAGES_FAILED, MESSAGES_SENT, count_message

if TYPE_CHECKING:
    # The store imports this module; the Dispatcher only needs its type here.
    from threadline.outbound_store import OutboundStore

MAX_DISPATCH_ATTEMPTS = 5
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


class MediaIn(Model):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https://", max_length=2048)
    content_type: str | None = None
    caption: str | None = Field(default=None, max_length=1024)


class WhatsAppTemplate(Model):
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


class SendMessageRequest(Model):
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
    kind = channel_spec(channel).identity_kind
    return next((i for i in profile.customer.identities if i.kind is kind), None)


def latest_inbound_channel(profile: Profile) -> Channel | None:
    """The channel the customer last wrote on, or where a reply to it goes when that
    channel carries no written reply (a call: an SMS to the number that called)."""
    if not profile.last_inbound:
        return None
    latest = max(profile.last_inbound.items(), key=lambda item: item[1])[0]
    return channel_spec(latest).reply_channel or latest


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


def within_window(profile: Profile, channel: Channel, now: datetime) -> bool:
    """Whether ``channel`` takes a free-form reply now (its send window, if it has one)."""
    window = channel_spec(channel).window
    if window is None:
        return True
    last = profile.last_inbound.get(channel)
    return last is not None and now - last < window.free_for


class SendOptionNotSupported(ThreadlineError):
    status = 422
    code = "send_option_not_supported"


def meta_send_options(request: SendMessageRequest, channel: Channel) -> dict[str, Any]:
    """The template / message tag a reply carries in channel_data, checked against the
    channel's send window in the registry (which channels take templates, which tags)."""
    options: dict[str, Any] = {}
    window = channel_spec(channel).window
    if request.template is not None:
        if window is None or not window.templates:
            names = " and ".join(c.value for c in template_channels())
            raise SendOptionNotSupported(f"a template is sent on {names}, not {channel.value}")
        options["template"] = request.template.model_dump(exclude_defaults=True)
    if request.message_tag is not None:
        if window is None or not window.tags:
            names = " and ".join(c.value for c in tagged_channels())
            raise SendOptionNotSupported(f"message tags are for {names}, not {channel.value}")
        if request.message_tag not in window.tags:
            allowed = ", ".join(window.tags)
            raise SendOptionNotSupported(f"{channel.value} takes only the {allowed} message tag")
        options["message_tag"] = request.message_tag
    return options


def provider_for(channel: Channel, channel_data: Mapping[str, Any]) -> str:
    """Who is expected to carry a reply: on a channel several providers carry
    (WhatsApp: Twilio or Meta's Cloud API), the one the customer last wrote through;
    the dispatcher has the last word."""
    reply_to = channel_data.get("reply_to") or {}
    chosen = reply_to.get(f"{channel.value}_provider")
    return str(chosen) if chosen else channel_spec(channel).provider


def window_closed(profile: Profile, message: Message, now: datetime) -> tuple[str, str] | None:
    """(error code, reason) when the channel's messaging window bars this message, else None."""
    window = channel_spec(message.channel).window
    if window is None:
        return None
    return window.refusal(
        message.channel, profile.last_inbound.get(message.channel), message.channel_data, now
    )


class DispatchState(StrEnum):
    SENDING = "sending"
    """Claimed; the provider has not been called (a dead worker here sent nothing)."""
    CALLING = "calling"
    """The provider call began at ``provider_call_at``: its outcome is the provider's."""
    RETRY = "retry"
    DONE = "done"


SEND_OUTCOME_UNKNOWN = "send_outcome_unknown"
"""The code of a reply whose worker died while calling a provider that cannot tell
whether it took the message (no idempotency key, no lookup we could trust)."""

# Twice the dispatcher function's Timeout (template.yaml, Globals): after that the
# worker that holds a claim has certainly been stopped by Lambda.
DEFAULT_CLAIM_TIMEOUT = timedelta(seconds=20)


def claim_timeout_from_env() -> timedelta:
    """``DISPATCH_CLAIM_TIMEOUT_SECONDS`` (template.yaml), else the default."""
    raw = os.environ.get("DISPATCH_CLAIM_TIMEOUT_SECONDS")
    return timedelta(seconds=float(raw)) if raw else DEFAULT_CLAIM_TIMEOUT


@dataclass(frozen=True)
class Claim:
    """A message this worker holds; ``token`` (its ``dispatch_attempts``, which every
    claim raises) fences its later writes against a worker that reclaimed it."""

    message: Message
    token: int


class ClaimVerdict(StrEnum):
    DONE = "done"
    """Sent, failed or otherwise finished: nothing to do."""
    IN_FLIGHT = "in_flight"
    """Another worker may be sending it right now: look again when the claim is stale."""
    RESEND = "resend"
    """Provably unsent (or harmless to repeat): claim it again and send."""
    UNKNOWN = "unknown"
    """The provider may have taken it and cannot say: fail it, send nothing."""


def stale_claim_verdict(
    item: Mapping[str, Any], now: datetime, timeout: timedelta
) -> tuple[ClaimVerdict, float]:
    """What a dispatch attempt that could not claim a message does with it, and for
    IN_FLIGHT the seconds until the claim goes stale.

    A claim is stale ``timeout`` after it was taken (``dispatch_started_at``) or after
    its provider call began (``provider_call_at``). The timeout exceeds the
    dispatcher's own, so the worker holding a stale claim is dead.
    """
    state = item.get("dispatch_state")
    if item.get("status") != MessageStatus.QUEUED.value or state == DispatchState.DONE.value:
        return ClaimVerdict.DONE, 0.0
    if state in (None, DispatchState.RETRY.value):
        return ClaimVerdict.RESEND, 0.0  # released (or never claimed) meanwhile
    calling = state == DispatchState.CALLING.value
    since = item.get("provider_call_at" if calling else "dispatch_started_at")
    left = timeout.total_seconds()
    if since:
        left -= (now - datetime.fromisoformat(str(since))).total_seconds()
    if left > 0:
        return ClaimVerdict.IN_FLIGHT, left
    channel = item.get("channel")
    if calling and not (channel and channel_spec(Channel(channel)).repeat_is_harmless):
        return ClaimVerdict.UNKNOWN, 0.0
    return ClaimVerdict.RESEND, 0.0


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
    """Sends one queued message through its channel's sender.

    Senders come from the channel registry and are built on a channel's first
    reply (so a cold start imports no provider SDK); ``senders`` replaces them
    (tests, or a deployment that wires its own).
    """

    def __init__(
        self,
        store: OutboundStore,
        senders: Mapping[Channel, Sender] | None = None,
        *,
        max_attempts: int = MAX_DISPATCH_ATTEMPTS,
        claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.senders: dict[Channel, Sender | None] = dict(senders or {})
        self._given = senders is not None
        self.max_attempts = max_attempts
        self.claim_timeout = claim_timeout
        self.clock = clock

    def sender_for(self, channel: Channel) -> Sender | None:
        """The channel's sender, built from its registry entry the first time."""
        if channel not in self.senders and not self._given:
            factory = sender_factory(channel)
            self.senders[channel] = factory() if factory is not None else None
        return self.senders.get(channel)

    def dispatch(
        self, customer_id: str, message_id: str, *, attempt: int = 1, now: datetime | None = None
    ) -> DispatchOutcome:
        now = now or self.clock()
        claim = self.store.claim(customer_id, message_id, now)
        if claim is None:
            item = self.store.dispatch_item(customer_id, message_id)
            if item is None:
                # A merge may have moved the queued reply (same id) to the surviving customer.
                survivor = self.store.merged_into(customer_id)
                if survivor is not None:
                    return self.dispatch(survivor, message_id, attempt=attempt, now=now)
                logger.info("no such message; nothing sent", extra={"message_id": message_id})
                return DispatchOutcome.SKIPPED
            resolved = self._resolve_claimed(customer_id, message_id, item, now)
            if isinstance(resolved, DispatchOutcome):
                return resolved
            claim = resolved
        message = claim.message
        if message.direction is Direction.INTERNAL:
            # An agent note is never queued, so never claimed; refuse one all the same.
            logger.info("an internal note is never sent", extra={"message_id": message_id})
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
        if channel_spec(message.channel).feedback_blocks and message.recipient is not None:
            # A bounce or complaint may have arrived after the reply was queued.
            blocked = self.store.email_block(message.recipient)
            if blocked is not None:
                return self._fail(message, blocked[0], blocked[1], now)
        sender = self.sender_for(message.channel)
        if isinstance(sender, ProviderChoice):
            sender = sender.pick(message)
        if sender is None:
            return self._fail(
                message, "channel_unavailable", f"no sender for {message.channel}", now
            )
        if sender.provider != message.provider:
            # Recorded with the sent status, so the provider's status callbacks find it.
            message = message.model_copy(update={"provider": sender.provider})
        if not self.store.mark_calling(message, claim.token, now):
            # Reclaimed by another attempt after ours went stale: it sends, not us.
            logger.info("claim lost; nothing sent", extra={"message_id": message_id})
            return DispatchOutcome.SKIPPED
        try:
            result = sender.send(message)
        except SendFailed as error:
            if error.retryable and attempt < self.max_attempts:
                self.store.release_for_retry(message.customer_id, message_id, error)
                logger.warning(
                    "provider asked us to retry", extra={"code": error.code, "attempt": attempt}
                )
                raise RetryLater(backoff_seconds(attempt, error.retry_after), error.code) from error
            return self._fail(message, error.code, error.message, now)
        self.store.record_sent(message, result.provider_message_id, now, result.aliases)
        # A sender that hands the message to the customer itself (a web chat push to an
        # open socket) knows it was delivered; no status callback will say so.
        if result.delivered:
            self.store.apply_status(
                StatusUpdate(
                    provider=message.provider,
                    provider_message_id=result.provider_message_id,
                    status=MessageStatus.DELIVERED,
                    customer_id=message.customer_id,
                    message_id=message.id,
                )
            )
        count_message(MESSAGES_SENT, message.channel.value)
        logger.info(
            "message sent",
            extra={"message_id": message_id, "provider_message_id": result.provider_message_id},
        )
        return DispatchOutcome.SENT

    def _resolve_claimed(
        self, customer_id: str, message_id: str, item: dict[str, Any], now: datetime
    ) -> Claim | DispatchOutcome:
        """A message another attempt claimed (or finished): wait, take it over, or fail
        it, by :func:`stale_claim_verdict`."""
        verdict, wait = stale_claim_verdict(item, now, self.claim_timeout)
        if verdict is ClaimVerdict.DONE:
            logger.info("message already dispatched", extra={"message_id": message_id})
            return DispatchOutcome.SKIPPED
        if verdict is ClaimVerdict.IN_FLIGHT:
            # Skipping would drop the job: if that worker died, nothing would come back
            # for the message. Return when its claim is stale.
            raise RetryLater(max(wait, 1.0), "claim_in_flight")
        if verdict is ClaimVerdict.UNKNOWN:
            token = int(item.get("dispatch_attempts") or 0)
            if not self.store.record_outcome_unknown(customer_id, message_id, token, now):
                return DispatchOutcome.SKIPPED  # resolved by another attempt meanwhile
            channel = str(item.get("channel"))
            # A metric filter counts this line (template.yaml, SendOutcomeUnknownAlarm).
            logger.error(
                "send outcome unknown",
                extra={
                    "message_id": message_id,
                    "code": SEND_OUTCOME_UNKNOWN,
                    "channel": channel,
                    "provider": item.get("provider"),
                },
            )
            count_message(MESSAGES_FAILED, channel)
            return DispatchOutcome.FAILED
        claim = self.store.reclaim(item, now)
        if claim is None:
            logger.info("stale claim taken by another attempt", extra={"message_id": message_id})
            return DispatchOutcome.SKIPPED
        logger.warning(
            "stale claim taken over",
            extra={"message_id": message_id, "dispatch_state": item.get("dispatch_state")},
        )
        return claim

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
                    "provider": channel_spec(channel).provider,
                }
            )
        return None

    def _fail(self, message: Message, code: str, reason: str, now: datetime) -> DispatchOutcome:
        self.store.record_failed(message.customer_id, message.id, code, reason, now)
        logger.warning("message failed", extra={"message_id": message.id, "code": code})
        count_message(MESSAGES_FAILED, message.channel.value)
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
