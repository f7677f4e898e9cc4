"""The writes outbound messages go through: queue (with Idempotency-Key), claim,
retry, reroute, failed, sent.

Decisions (which channel, which conversation) come from ``threadline.outbound``'s
rule functions; the writes are plain plans for the data-access layer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from threadline.channels.base import SendFailed
from threadline.channels.registry import channel_spec
from threadline.conversations import reply_write
from threadline.dal.base import ConditionCheck, Put, Update, Write, WriteCancelled, put_once
from threadline.email_feedback import email_block
from threadline.errors import NotFound, StorageUnavailable
from threadline.items import (
    IDEMPOTENCY_SK,
    IDENT_SK,
    PROFILE_SK,
    customer_pk,
    dedup_item,
    expires_at,
    idempotency_item,
    idempotency_pk,
    identity_pk,
    message_from_item,
    message_item,
    message_sk,
    new_id,
)
from threadline.logs import logger
from threadline.outbound import (
    IDEMPOTENCY_RETENTION_DAYS,
    SEND_OUTCOME_UNKNOWN,
    Claim,
    DispatchState,
    EmailBlocked,
    IdempotencyKeyReused,
    SendMessageRequest,
    choose_channel,
    meta_send_options,
    provider_for,
)
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    Message,
    MessageStatus,
    StatusChange,
    utc_now,
)
from threadline.store import Profile, TimelineStore

_QUEUE_ATTEMPTS = 3
_IDEMPOTENCY_INDEX = 1
"""Where the Idempotency-Key put sits in the queueing transaction."""


def queued_message(
    profile: Profile,
    request: SendMessageRequest,
    route: tuple[Channel, Identity],
    identity_item: dict[str, Any],
    now: datetime,
) -> Message:
    """The reply as it is queued: conversation and send options for the chosen route
    (channel, recipient) whose IDENT item is ``identity_item``."""
    channel, recipient = route
    if channel_spec(channel).feedback_blocks:
        blocked = email_block(identity_item)
        if blocked is not None:
            raise EmailBlocked(blocked[1], code=blocked[0])
    # A reply joins the customer's open conversation. With none open it opens none
    # (conversations open with a customer's message) and carries the id of the last
    # conversation it answers.
    conversation_id = (
        profile.open_conversation_id
        or str(identity_item.get("conversation_id") or "")
        or new_id(now)
    )
    # Dispatch instructions ride in channel_data (as fallback and reply_to do).
    channel_data: dict[str, Any] = {"purpose": request.purpose.value}
    if request.fallback:
        channel_data["fallback"] = [c.value for c in request.fallback]
    if identity_item.get("reply_to"):
        # Where the customer last wrote from on this channel (Slack: conversation and
        # thread), so the reply lands beside their message.
        channel_data["reply_to"] = dict(identity_item["reply_to"])
    channel_data.update(meta_send_options(request, channel))
    return Message(
        id=new_id(now),
        customer_id=profile.customer.id,
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


def keyed_message_writes(
    message: Message,
    idempotency_key: str | None,
    fingerprint: str,
    now: datetime,
    retention_days: int,
) -> list[Write]:
    """The writes that file an API-made message (a reply, a note) once: the message,
    its Idempotency-Key record (replayed to a retry) and, last, a check that the
    customer is not being merged, since a merge that began after our read would leave
    the message behind on the absorbed customer."""
    item = message_item(message)
    item["expires_at"] = expires_at(now, retention_days)
    # Erasure finds the customer's IDEMPOTENCY item through its message.
    item["idempotency_key"] = idempotency_key
    writes: list[Write] = [Put(item)]
    if idempotency_key:
        record = idempotency_item(
            message.customer_id,
            idempotency_key,
            message.id,
            fingerprint,
            now,
            IDEMPOTENCY_RETENTION_DAYS,
        )
        writes.append(put_once(record, replay=True))
    writes.append(
        ConditionCheck(
            key=(customer_pk(message.customer_id), PROFILE_SK),
            condition="attribute_exists(pk) AND attribute_not_exists(merge_state)",
        )
    )
    return writes


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
        # An id a merge absorbed stands for the survivor: the reply goes there.
        profile = self.get_profile(customer_id, consistent=True, follow_merges=True)
        if profile is None:
            raise NotFound("no such customer")
        customer_id = profile.customer.id
        route = choose_channel(profile, request.channel, request.purpose)
        identity_item = self.get_item(identity_pk(route[1]), IDENT_SK) or {}
        message = queued_message(profile, request, route, identity_item, now)
        writes = keyed_message_writes(
            message,
            idempotency_key,
            request.fingerprint(),
            now,
            self.settings.message_retention_days,
        )
        profile_check = len(writes) - 1
        open_conversation = profile.open_conversation_id
        if open_conversation:
            # Last, so the other items keep their places in the cancellation reasons.
            writes.append(
                reply_write(
                    customer_id, open_conversation, message.author_role, now, self.quiet_period
                )
            )
        try:
            self.data.write(writes)
        except WriteCancelled as cancelled:
            if idempotency_key and cancelled.failed(_IDEMPOTENCY_INDEX):
                key = (idempotency_pk(customer_id, idempotency_key), IDEMPOTENCY_SK)
                first = self.data.first_writer(cancelled, _IDEMPOTENCY_INDEX, key) or {}
                return self._replay(customer_id, request, first), False
            if cancelled.failed(profile_check):
                survivor = self.surviving_customer_id(customer_id)
                if survivor and survivor != customer_id:
                    return self.queue_message(
                        survivor, request, idempotency_key=idempotency_key, now=now
                    )
            if open_conversation and cancelled.conflicted(len(writes) - 1):
                return None  # closed (or busy) meanwhile: read the profile again
            raise StorageUnavailable("the message could not be queued") from cancelled
        except StorageUnavailable as exc:
            raise StorageUnavailable("the message could not be queued") from exc
        logger.info(
            "outbound message queued",
            extra={
                "customer_id": customer_id,
                "message_id": message.id,
                "channel": message.channel.value,
            },
        )
        return message, True

    # ----------------------------------------------------------------- satisfaction

    def conversation_closed(self, customer_id: str, conversation_id: str) -> None:
        """After a close: the satisfaction question, when it is on (threadline.satisfaction)."""
        from threadline.satisfaction import ask_for_rating

        ask_for_rating(self, customer_id, conversation_id)

    def _replay(
        self, customer_id: str, request: SendMessageRequest, record: dict[str, Any]
    ) -> Message:
        if record.get("fingerprint") != request.fingerprint():
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different message")
        message = self.get_message(customer_id, str(record["message_id"]))
        if message is None:
            raise StorageUnavailable("the original message could not be read")
        return message

    # ----------------------------------------------------------------- dispatch

    def _update_message(
        self,
        customer_id: str,
        message_id: str,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None = None,
        names: dict[str, str] | None = None,
    ) -> bool:
        """One conditional update of a message item; False when the condition failed."""
        update = Update(
            key=(customer_pk(customer_id), message_sk(message_id)),
            expression=expression,
            condition=condition,
            names=names or {},
            values=values,
        )
        try:
            self.data.write([update])
        except WriteCancelled:
            return False
        except StorageUnavailable as exc:
            raise StorageUnavailable("the message could not be updated") from exc
        return True

    def claim(self, customer_id: str, message_id: str, now: datetime) -> Claim | None:
        """Take a queued message for sending; None when it is in flight or done."""
        return self._claim(
            customer_id,
            message_id,
            "#status = :queued AND "
            "(attribute_not_exists(dispatch_state) OR dispatch_state = :retry)",
            {":retry": DispatchState.RETRY.value},
            now,
        )

    def dispatch_item(self, customer_id: str, message_id: str) -> dict[str, Any] | None:
        """The message item as it is now (its claim included), or None."""
        return self.get_item(customer_pk(customer_id), message_sk(message_id), consistent=True)

    def reclaim(self, item: dict[str, Any], now: datetime) -> Claim | None:
        """Take over the claim ``item`` holds (stale, or released meanwhile); None when
        it changed since it was read (another attempt took it)."""
        state = item.get("dispatch_state")
        values: dict[str, Any] = {":seen_attempts": int(item.get("dispatch_attempts") or 0)}
        if state is None:
            condition = "attribute_not_exists(dispatch_state)"
        else:
            condition = "dispatch_state = :seen_state"
            values[":seen_state"] = state
        # The attempt count fences it: every claim raises it, so a claim taken since
        # the read makes this one fail.
        condition += (
            " AND (attribute_not_exists(dispatch_attempts) OR dispatch_attempts = :seen_attempts)"
        )
        return self._claim(
            str(item["customer_id"]),
            str(item["message_id"]),
            f"#status = :queued AND {condition}",
            values,
            now,
        )

    def _claim(
        self,
        customer_id: str,
        message_id: str,
        condition: str,
        values: dict[str, Any],
        now: datetime,
    ) -> Claim | None:
        update = Update(
            key=(customer_pk(customer_id), message_sk(message_id)),
            # A new claim starts before any provider call: the previous call's time goes.
            expression=(
                "SET dispatch_state = :sending, dispatch_started_at = :now, "
                "dispatch_attempts = if_not_exists(dispatch_attempts, :zero) + :one "
                "REMOVE provider_call_at"
            ),
            condition=condition,
            names={"#status": "status"},
            values={
                **values,
                ":sending": DispatchState.SENDING.value,
                ":queued": MessageStatus.QUEUED.value,
                ":now": now.isoformat(),
                ":zero": 0,
                ":one": 1,
            },
        )
        try:
            item = self.data.update_returning(update)
        except WriteCancelled:
            return None
        except StorageUnavailable as exc:
            raise StorageUnavailable("the message could not be updated") from exc
        return Claim(message_from_item(item), int(item.get("dispatch_attempts") or 0))

    def mark_calling(self, message: Message, token: int, now: datetime) -> bool:
        """Record that the provider call begins (and who is called), while the claim
        ``token`` is still ours; False when another attempt took the message over."""
        return self._update_message(
            message.customer_id,
            message.id,
            "SET dispatch_state = :calling, provider_call_at = :now, provider = :provider",
            {
                ":calling": DispatchState.CALLING.value,
                ":sending": DispatchState.SENDING.value,
                ":now": now.isoformat(),
                ":provider": message.provider,
                ":token": token,
            },
            condition="dispatch_state = :sending AND dispatch_attempts = :token",
        )

    def release_for_retry(self, customer_id: str, message_id: str, error: SendFailed) -> None:
        self._update_message(
            customer_id,
            message_id,
            "SET dispatch_state = :retry, last_error = :error",
            {
                ":retry": DispatchState.RETRY.value,
                ":calling": DispatchState.CALLING.value,
                ":error": {"code": error.code, "message": error.message},
            },
            condition="dispatch_state = :calling",
        )

    def record_outcome_unknown(
        self, customer_id: str, message_id: str, token: int, now: datetime
    ) -> bool:
        """Fail a message whose provider call (claim ``token``) never reported back;
        False when the message moved on since it was read."""
        return self._record_failed(
            customer_id,
            message_id,
            StatusChange(
                status=MessageStatus.FAILED,
                at=now,
                error_code=SEND_OUTCOME_UNKNOWN,
                error_message="the dispatcher stopped during the provider call; "
                "the provider may or may not have taken the message",
            ),
            "dispatch_state = :calling AND dispatch_attempts = :token",
            {":calling": DispatchState.CALLING.value, ":token": token},
        )

    def reroute(
        self, customer_id: str, message_id: str, channel: Channel, recipient: Identity
    ) -> None:
        self._update_message(
            customer_id,
            message_id,
            "SET channel = :channel, recipient = :recipient, provider = :provider",
            {
                ":channel": channel.value,
                ":recipient": str(recipient),
                ":provider": provider_for(channel, {}),
                ":sending": DispatchState.SENDING.value,
            },
            condition="dispatch_state = :sending",
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
        self._record_failed(customer_id, message_id, change)

    def _record_failed(
        self,
        customer_id: str,
        message_id: str,
        change: StatusChange,
        claim_condition: str | None = None,
        claim_values: dict[str, Any] | None = None,
    ) -> bool:
        condition = "#status = :queued"
        if claim_condition:
            condition += f" AND {claim_condition}"
        return self._update_message(
            customer_id,
            message_id,
            "SET #status = :failed, status_history = list_append(status_history, :change), "
            "dispatch_state = :done",
            {
                ":failed": MessageStatus.FAILED.value,
                ":queued": MessageStatus.QUEUED.value,
                ":done": DispatchState.DONE.value,
                ":change": [change.model_dump(mode="json", exclude_none=True)],
                **(claim_values or {}),
            },
            condition=condition,
            names={"#status": "status"},
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
        change = StatusChange(status=MessageStatus.SENT, at=now)
        dedups: list[Write] = [
            Put(
                dedup_item(
                    message.provider,
                    provider_id,
                    message.customer_id,
                    message.id,
                    now,
                    conversation_id=message.conversation_id,
                )
            )
            for provider_id in dict.fromkeys((provider_message_id, *aliases))
        ]
        sent = Update(
            key=(customer_pk(message.customer_id), message_sk(message.id)),
            expression=(
                "SET #status = :sent, status_history = list_append(status_history, :change), "
                "provider_message_id = :pmid, dispatch_state = :done, provider = :provider"
            ),
            # A fast delivery callback may have moved it on already: then only the
            # provider id and the dispatch state are recorded (below).
            condition="#status = :queued",
            names={"#status": "status"},
            values={
                ":sent": MessageStatus.SENT.value,
                ":queued": MessageStatus.QUEUED.value,
                ":pmid": provider_message_id,
                ":done": DispatchState.DONE.value,
                ":change": [change.model_dump(mode="json", exclude_none=True)],
                ":provider": message.provider,
            },
        )
        try:
            self.data.write([sent, *dedups])
            return
        except WriteCancelled as cancelled:
            if not cancelled.failed(0):
                raise StorageUnavailable("the sent status could not be written") from cancelled
        except StorageUnavailable as exc:
            raise StorageUnavailable("the sent status could not be written") from exc
        self._update_message(
            message.customer_id,
            message.id,
            "SET provider_message_id = :pmid, dispatch_state = :done, provider = :provider",
            {
                ":pmid": provider_message_id,
                ":done": DispatchState.DONE.value,
                ":provider": message.provider,
            },
        )
        for dedup in dedups:
            self.data.write([dedup])
