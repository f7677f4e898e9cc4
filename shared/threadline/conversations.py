"""Conversations across channels: open, touched by every message, closed.

A conversation opens with a customer's first message after a quiet period (no
message on either side for ``CONVERSATION_QUIET_MINUTES``, default 24 hours), takes
every later message whatever the channel or identity it comes from, and closes when
the quiet period passes (the sweeper, or the next message if it comes first) or
through ``POST /v1/conversations/{id}/close``. A customer has at most one open
conversation: the profile's ``open_conversation_id`` names it, and every write that
opens or closes one changes that pointer in the same transaction, under a condition.

The writers here are transaction items the inbound path puts into its one
``TransactWriteItems``. docs/storage.md has the item layout and the sweeper's index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from threadline.dal.base import TableAccess, Update, Write, WriteCancelled, put_once
from threadline.errors import StorageUnavailable
from threadline.items import (
    CONVERSATION_POINTER_SK,
    PROFILE_SK,
    close_bucket,
    conversation_item,
    conversation_pointer_item,
    conversation_pointer_pk,
    conversation_sk,
    customer_pk,
    due_key,
    role_counter,
)
from threadline.logs import logger
from threadline.outcomes import (
    api_close_outcome,
    is_repeat_contact,
    outcome_of,
    repeat_window_from_env,
)
from threadline.schema import (
    AuthorRole,
    ClosedBy,
    Conversation,
    ConversationMessageCounts,
    ConversationMetrics,
    ConversationPage,
    Rating,
    Resolution,
    utc_now,
)

__all__ = ["close_bucket", "due_key", "role_counter"]

CONVERSATION_QUIET_PERIOD = timedelta(hours=24)
# The sweeper looks this far back for conversations whose quiet period ended: one
# Query per hour bucket. One left behind longer (the sweeper was off for days) is
# still closed by the customer's next message or the API.
SWEEP_LOOKBACK = timedelta(hours=72)
DUE_INDEX = "ConversationsDueToClose"
OPEN = "open"
CLOSED = "closed"
QUIET_PERIOD_REASON = "quiet_period"
API_REASON = "api"
MAX_PAGE_SIZE = 100
_CLOSE_ATTEMPTS = 5


def quiet_period_from_env() -> timedelta:
    """``CONVERSATION_QUIET_MINUTES`` (template parameter ConversationQuietMinutes)."""
    minutes = os.environ.get("CONVERSATION_QUIET_MINUTES")
    return timedelta(minutes=int(minutes)) if minutes else CONVERSATION_QUIET_PERIOD


@dataclass(frozen=True)
class KnownConversation:
    """What a writer believes about a customer's latest conversation.

    From the sender's identity item (a hint, possibly stale: another identity of the
    customer may have written since) or, after a conflict, from the profile and the
    conversation item themselves. Every write built on it carries a condition that
    fails when the belief was wrong, and the writer re-reads.
    """

    id: str
    last_message_at: str
    """Exactly as stored: conditions compare it."""
    last_channel: str | None
    closed: bool = False

    def expired(self, now: datetime, quiet_period: timedelta) -> bool:
        return self.closed or now - datetime.fromisoformat(self.last_message_at) >= quiet_period


@dataclass
class ConversationPlan:
    """The conversation part of an inbound message's transaction."""

    conversation_id: str
    writes: list[Write]
    profile_condition: str | None = None
    profile_values: dict[str, Any] = field(default_factory=dict)
    opened: bool = False


def conversation_from_item(item: dict[str, Any]) -> Conversation:
    """A CONV item (as from_item returns it) as the API's Conversation, metrics derived."""
    opened_at = datetime.fromisoformat(item["opened_at"])
    closed_at = datetime.fromisoformat(item["closed_at"]) if item.get("closed_at") else None
    first_response_at = (
        datetime.fromisoformat(item["first_response_at"]) if item.get("first_response_at") else None
    )
    channels = sorted(item.get("channels") or [])
    resolution, closed_by = outcome_of(item)
    counts = ConversationMessageCounts(
        **{role.value: int(item.get(role_counter(role), 0)) for role in AuthorRole}
    )
    return Conversation(
        id=item["conversation_id"],
        customer_id=item["customer_id"],
        state=item["state"],
        opened_at=opened_at,
        last_message_at=datetime.fromisoformat(item["last_message_at"]),
        closed_at=closed_at,
        close_reason=item.get("close_reason"),
        channels=channels,
        last_channel=item.get("last_inbound_channel"),
        message_count=int(item.get("message_count", 0)),
        first_response_at=first_response_at,
        metrics=ConversationMetrics(
            channels_used=channels,
            channel_switches=int(item.get("channel_switches", 0)),
            first_response_seconds=(
                (first_response_at - opened_at).total_seconds() if first_response_at else None
            ),
            time_to_close_seconds=(closed_at - opened_at).total_seconds() if closed_at else None,
            messages=counts,
        ),
        # Outcomes and ratings (threadline.outcomes): absent until set.
        resolution=resolution,
        closed_by=closed_by,
        previous_conversation_id=item.get("previous_conversation_id"),
        repeat_conversation_id=item.get("repeat_conversation_id"),
        rating=Rating.model_validate(item["rating"]) if item.get("rating") else None,
    )


# ------------------------------------------------------------- plans (no I/O)


def open_writes(
    customer_id: str,
    conversation_id: str,
    channel: str,
    role: AuthorRole,
    now: datetime,
    quiet_period: timedelta,
) -> list[Write]:
    """A new open conversation and the pointer that finds its customer by id."""
    item = conversation_item(customer_id, conversation_id, channel, role, now, now + quiet_period)
    return [put_once(item), put_once(conversation_pointer_item(conversation_id, customer_id))]


def close_expired_write(
    customer_id: str, known: KnownConversation, quiet_period: timedelta
) -> Update:
    """Close a conversation whose quiet period passed, if nobody has yet: conditioned on
    the last message we know of (a later one makes the writer re-read) unless already
    closed (no ``close_due_at``): then it changes nothing, whatever the hint said."""
    closed_at = datetime.fromisoformat(known.last_message_at) + quiet_period
    return Update(
        key=(customer_pk(customer_id), conversation_sk(known.id)),
        expression=(
            "SET #state = :closed, closed_at = if_not_exists(closed_at, :closed_at), "
            "close_reason = if_not_exists(close_reason, :reason) "
            "REMOVE close_bucket, close_due_at"
        ),
        condition=(
            "attribute_exists(pk) AND (attribute_not_exists(close_due_at) "
            "OR last_message_at = :seen)"
        ),
        names={"#state": "state"},
        values={
            ":closed": CLOSED,
            ":closed_at": closed_at.isoformat(),
            ":reason": QUIET_PERIOD_REASON,
            ":seen": known.last_message_at,
        },
    )


def continue_write(
    customer_id: str,
    known: KnownConversation,
    channel: str,
    role: AuthorRole,
    now: datetime,
    message_id: str,
    quiet_period: timedelta,
) -> Update:
    """An inbound message joins the open conversation (a channel switch is counted)."""
    due = now + quiet_period
    values: dict[str, Any] = {
        ":now": now.isoformat(),
        ":due": due_key(due),
        ":bucket": close_bucket(due),
        ":channel": channel,
        ":channels": {channel},
        ":one": 1,
        ":open": OPEN,
    }
    values[":role"] = AuthorRole(role).value
    update = (
        "SET last_message_at = :now, close_due_at = :due, close_bucket = :bucket, "
        "last_inbound_channel = :channel, last_author_role = :role"
    )
    add = f" ADD message_count :one, channels :channels, {role_counter(role)} :one"
    if known.last_channel is not None and known.last_channel != channel:
        update += ", last_switch = :switch"
        add += ", channel_switches :one"
        values[":switch"] = {
            "from": known.last_channel,
            "to": channel,
            "message_id": message_id,
            "at": now.isoformat(),
        }
    if known.last_channel is None:
        condition = "#state = :open AND attribute_not_exists(last_inbound_channel)"
    else:
        # The channel switch is decided from this belief: it must be true.
        condition = "#state = :open AND last_inbound_channel = :previous"
        values[":previous"] = known.last_channel
    return Update(
        key=(customer_pk(customer_id), conversation_sk(known.id)),
        expression=update + add,
        condition=condition,
        names={"#state": "state"},
        values=values,
    )


def plan_inbound(
    customer_id: str,
    known: KnownConversation | None,
    channel: str,
    role: AuthorRole,
    now: datetime,
    message_id: str,
    new_conversation_id: str,
    quiet_period: timedelta,
) -> ConversationPlan:
    """Continue the open conversation, or close the expired one and open another."""
    if known is not None and not known.expired(now, quiet_period):
        write = continue_write(customer_id, known, channel, role, now, message_id, quiet_period)
        return ConversationPlan(conversation_id=known.id, writes=[write])
    writes = open_writes(customer_id, new_conversation_id, channel, role, now, quiet_period)
    if known is None:
        return ConversationPlan(
            conversation_id=new_conversation_id,
            writes=writes,
            profile_condition="attribute_not_exists(open_conversation_id)",
            opened=True,
        )
    return ConversationPlan(
        conversation_id=new_conversation_id,
        writes=[close_expired_write(customer_id, known, quiet_period), *writes],
        profile_condition=(
            "(attribute_not_exists(open_conversation_id) "
            "OR open_conversation_id = :previous_conversation)"
        ),
        profile_values={":previous_conversation": known.id},
        opened=True,
    )


def reply_write(
    customer_id: str, conversation_id: str, role: AuthorRole, now: datetime, quiet_period: timedelta
) -> Update:
    """A reply written into the open conversation: first response, counts, quiet period."""
    due = now + quiet_period
    return Update(
        key=(customer_pk(customer_id), conversation_sk(conversation_id)),
        expression=(
            "SET last_message_at = :now, close_due_at = :due, close_bucket = :bucket, "
            "first_response_at = if_not_exists(first_response_at, :now), "
            "last_author_role = :role "
            f"ADD message_count :one, {role_counter(role)} :one"
        ),
        condition="#state = :open",
        names={"#state": "state"},
        values={
            ":role": AuthorRole(role).value,
            ":now": now.isoformat(),
            ":due": due_key(due),
            ":bucket": close_bucket(due),
            ":one": 1,
            ":open": OPEN,
        },
    )


def close_writes(
    customer_id: str,
    conversation_id: str,
    *,
    closed_at: datetime,
    reason: str,
    condition: str,
    values: dict[str, Any],
    outcome: tuple[Resolution, ClosedBy] | None = None,
) -> tuple[Update, Update]:
    """Close one conversation, and clear the profile's pointer to it.

    ``outcome`` is recorded as given (an API close); without one, a quiet-period
    close's outcome is derived from who wrote last (threadline.outcomes.outcome_of).
    """
    recorded = ""
    if outcome is not None:
        recorded = ", resolution = :resolution, closed_by = :closed_by"
        values = {
            **values,
            ":resolution": outcome[0],
            ":closed_by": outcome[1].model_dump(),
        }
    close = Update(
        key=(customer_pk(customer_id), conversation_sk(conversation_id)),
        expression=(
            "SET #state = :closed, closed_at = :closed_at, close_reason = :reason"
            f"{recorded} REMOVE close_bucket, close_due_at"
        ),
        condition=condition,
        names={"#state": "state"},
        values={
            ":closed": CLOSED,
            ":closed_at": closed_at.isoformat(),
            ":reason": reason,
            ":open": OPEN,
            **values,
        },
    )
    pointer = Update(
        key=(customer_pk(customer_id), PROFILE_SK),
        expression="REMOVE open_conversation_id",
        condition="open_conversation_id = :id",
        values={":id": conversation_id},
    )
    return close, pointer


# ------------------------------------------------------------- store


class ConversationStore:
    """Conversation reads and closes over the data-access interface."""

    quiet_period: timedelta
    data: TableAccess

    # ------------------------------------------------------------- reads

    def read_latest_conversation(self, customer_id: str) -> KnownConversation | None:
        """The customer's open conversation as stored (two consistent reads)."""
        profile = self.data.get(
            (customer_pk(customer_id), PROFILE_SK),
            consistent=True,
            attributes=["open_conversation_id"],
        )
        conversation_id = (profile or {}).get("open_conversation_id")
        if not conversation_id:
            return None
        item = self._conversation_item(customer_id, str(conversation_id), consistent=True)
        if item is None:
            return None
        return KnownConversation(
            id=str(conversation_id),
            last_message_at=str(item["last_message_at"]),
            last_channel=item.get("last_inbound_channel"),
            closed=item.get("state") != OPEN,
        )

    def _conversation_item(
        self, customer_id: str, conversation_id: str, *, consistent: bool = False
    ) -> dict[str, Any] | None:
        key = (customer_pk(customer_id), conversation_sk(conversation_id))
        return self.data.get(key, consistent=consistent)

    def conversation_customer(self, conversation_id: str) -> str | None:
        """The customer a conversation id belongs to, through its pointer item."""
        item = (
            self.data.get((conversation_pointer_pk(conversation_id), CONVERSATION_POINTER_SK)) or {}
        )
        return str(item["customer_id"]) if item.get("customer_id") else None

    def get_conversation(
        self, conversation_id: str, *, consistent: bool = False
    ) -> Conversation | None:
        customer_id = self.conversation_customer(conversation_id)
        if customer_id is None:
            return None
        item = self._conversation_item(customer_id, conversation_id, consistent=consistent)
        return conversation_from_item(item) if item else None

    def conversations(
        self, customer_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> ConversationPage:
        """One page of the customer's conversations, newest first (ULIDs sort by time)."""
        page = self.data.newest_first(
            customer_pk(customer_id),
            "CONV#",
            limit=max(1, min(limit, MAX_PAGE_SIZE)),
            cursor=cursor,
        )
        return ConversationPage(
            items=[conversation_from_item(item) for item in page.items],
            next_cursor=page.next_cursor,
        )

    # ------------------------------------------------------------- repeat contacts

    def note_repeat_contact(self, customer_id: str, conversation_id: str, now: datetime) -> bool:
        """Mark a just-opened conversation as a repeat contact of the customer's
        previous one, if that was closed resolved within the repeat window.

        Runs after the message's transaction: both marks are idempotent (a retried
        message finds them set), and the earlier conversation's change is what the
        publisher announces as ``conversation.reopened``.
        """
        page = self.data.newest_first(customer_pk(customer_id), "CONV#", limit=2, consistent=True)
        previous = next(
            (i for i in page.items if i.get("conversation_id") != conversation_id), None
        )
        if previous is None:
            return False
        resolution, _ = outcome_of(previous)
        closed_at = previous.get("closed_at")
        closed = datetime.fromisoformat(str(closed_at)) if closed_at else None
        if not is_repeat_contact(resolution, closed, now, repeat_window_from_env()):
            return False
        previous_id = str(previous["conversation_id"])
        try:
            self.data.write(
                [
                    Update(
                        key=(customer_pk(customer_id), conversation_sk(conversation_id)),
                        expression="SET previous_conversation_id = :previous",
                        condition="attribute_exists(pk)",
                        values={":previous": previous_id},
                    ),
                    Update(
                        key=(customer_pk(customer_id), conversation_sk(previous_id)),
                        expression="SET repeat_conversation_id = :repeat",
                        condition="attribute_not_exists(repeat_conversation_id)",
                        values={":repeat": conversation_id},
                    ),
                ]
            )
        except WriteCancelled:
            return False  # marked already (a retried message), or reopened by another
        logger.info(
            "repeat contact",
            extra={"conversation_id": conversation_id, "previous_conversation_id": previous_id},
        )
        return True

    # ------------------------------------------------------------- closing

    def conversation_closed(self, customer_id: str, conversation_id: str) -> None:
        """After a close (API or sweeper): OutboundStore asks for a rating here."""

    def _close(
        self,
        customer_id: str,
        conversation_id: str,
        *,
        closed_at: datetime,
        reason: str,
        condition: str,
        values: dict[str, Any],
        outcome: tuple[Resolution, ClosedBy] | None = None,
    ) -> bool:
        """Close one conversation and clear the profile's pointer; False if the
        conversation's condition failed (someone else changed or closed it)."""
        close, pointer = close_writes(
            customer_id,
            conversation_id,
            closed_at=closed_at,
            reason=reason,
            condition=condition,
            values=values,
            outcome=outcome,
        )
        try:
            self.data.write([close, pointer])
        except WriteCancelled as cancelled:
            if cancelled.failed(0):
                return False
            if not cancelled.failed(1):
                raise StorageUnavailable("the conversation could not be closed") from cancelled
            # The profile no longer names it (a merge moved the pointer, say): the
            # conversation still closes.
            try:
                self.data.write([close])
            except WriteCancelled:
                return False
        self.conversation_closed(customer_id, conversation_id)
        return True

    def close_conversation(
        self,
        conversation_id: str,
        *,
        now: datetime | None = None,
        outcome: tuple[Resolution, ClosedBy] | None = None,
    ) -> Conversation | None:
        """Close an open conversation (idempotent); None when there is no such one.

        One whose quiet period already ended (the sweeper has not come by yet) closes
        as the quiet period closed it: at its end, reason ``quiet_period``, its
        outcome derived. Otherwise ``outcome`` (default: resolved, by an unnamed
        agent) is recorded.
        """
        customer_id = self.conversation_customer(conversation_id)
        if customer_id is None:
            return None
        for _ in range(_CLOSE_ATTEMPTS):
            item = self._conversation_item(customer_id, conversation_id, consistent=True)
            if item is None:
                return None
            if item.get("state") != OPEN:
                return conversation_from_item(item)
            at = now or utc_now()
            due = datetime.fromisoformat(item["last_message_at"]) + self.quiet_period
            closed_at, reason = (due, QUIET_PERIOD_REASON) if due <= at else (at, API_REASON)
            if self._close(
                customer_id,
                conversation_id,
                closed_at=closed_at,
                reason=reason,
                condition="#state = :open AND last_message_at = :seen",
                values={":seen": item["last_message_at"]},
                outcome=(outcome or api_close_outcome(None, None))
                if reason == API_REASON
                else None,
            ):
                logger.info(
                    "conversation closed",
                    extra={"conversation_id": conversation_id, "reason": reason},
                )
                closed = self._conversation_item(customer_id, conversation_id, consistent=True)
                return conversation_from_item(closed) if closed else None
        raise StorageUnavailable("the conversation kept changing under us; retry")

    def close_due_conversations(
        self, now: datetime | None = None, *, lookback: timedelta = SWEEP_LOOKBACK
    ) -> int:
        """Close every conversation whose quiet period has ended; how many were closed.

        Reads only the sparse ``ConversationsDueToClose`` index (open conversations
        carry its keys; closing removes them), one Query per hour bucket from
        ``lookback`` ago to now. Each close is conditional on the due time read, so a
        conversation that got a message after the index was read stays open.
        """
        now = now or utc_now()
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        buckets = []
        at = hour - lookback
        while at <= hour:
            buckets.append(close_bucket(at))
            at += timedelta(hours=1)
        closed = 0
        for bucket in buckets:
            for item in self._due_in(bucket, due_key(now)):
                customer_id = str(item["pk"]).removeprefix("CUST#")
                conversation_id = str(item["sk"]).removeprefix("CONV#")
                due = datetime.strptime(str(item["close_due_at"]), "%Y-%m-%dT%H:%M:%S.%fZ")
                if self._close(
                    customer_id,
                    conversation_id,
                    closed_at=due.replace(tzinfo=UTC),
                    reason=QUIET_PERIOD_REASON,
                    condition="#state = :open AND close_due_at = :due",
                    values={":due": item["close_due_at"]},
                ):
                    closed += 1
        logger.info("conversations swept", extra={"closed": closed, "buckets": len(buckets)})
        return closed

    def _due_in(self, bucket: str, until: str) -> list[dict[str, Any]]:
        """The open conversations of one hour bucket whose quiet period ended by ``until``."""
        try:
            return self.data.query_index(
                DUE_INDEX,
                "close_bucket = :bucket AND close_due_at <= :until",
                {":bucket": bucket, ":until": until},
            )
        except StorageUnavailable as exc:
            raise StorageUnavailable("the conversation index could not be read") from exc
