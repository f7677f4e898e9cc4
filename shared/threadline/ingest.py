"""Filing an inbound message: the decisions, and the writes they come to.

An inbound message costs one consistent ``GetItem`` on the identity and one
transaction (dedupe + message + conversation + identity + profile), plus a
``PutObject`` only when the raw payload is too large to ride inline in the item.
The writes' conditions make every race safe: two first messages from one new sender
make one customer, and a provider retry is stored once.

The functions here build plain writes (``threadline.dal.base``) from plain inputs;
:class:`IngestStore` reads what they need through the data-access interface, asks
them for the writes, and retries a lost race.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from threadline import consent
from threadline.channels.base import InboundMessage
from threadline.conversations import (
    ConversationPlan,
    ConversationStore,
    KnownConversation,
    open_writes,
    plan_inbound,
)
from threadline.dal.base import Put, Update, Write, WriteCancelled, put_once
from threadline.errors import StorageUnavailable
from threadline.items import (
    DEDUP_SK,
    IDENT_SK,
    PROFILE_SK,
    blob_ref_item,
    customer_pk,
    dedup_item,
    dedup_pk,
    expires_at,
    identity_item,
    identity_pk,
    message_item,
    new_id,
    profile_item,
)
from threadline.logs import logger
from threadline.outcomes import rating_answer
from threadline.schema import (
    Direction,
    Identity,
    MediaPart,
    Message,
    MessageStatus,
    StatusChange,
    TextPart,
    utc_now,
)

if TYPE_CHECKING:
    from threadline.settings import StoreSettings
    from threadline.store import IngestResult, KeptRaw, ThreadTarget

# Optimistic retries when a concurrent writer changed the identity or conversation
# between our read and our transaction. Each round lets at least one writer through,
# so N messages racing for one customer need up to N tries; a provider's burst of
# retries (or a group chat) can reach that, and each failure costs the customer a
# provider retry, so allow more than the bursts we see.
MAX_ATTEMPTS = 12


@dataclass(frozen=True)
class IdentityRecord:
    customer_id: str
    conversation: KnownConversation | None
    """The conversation this identity last wrote in, as it was then (a hint)."""
    csat_pending: dict[str, Any] | None = None
    """A satisfaction question sent to this identity, not yet answered (outcomes)."""


def identity_record(item: dict[str, Any] | None) -> IdentityRecord | None:
    """An IDENT item as the ingest path uses it."""
    if item is None:
        return None
    conversation = None
    if item.get("conversation_id") and item.get("last_message_at"):
        conversation = KnownConversation(
            id=str(item["conversation_id"]),
            last_message_at=str(item["last_message_at"]),
            last_channel=item.get("conversation_channel"),
        )
    return IdentityRecord(
        customer_id=str(item["customer_id"]),
        conversation=conversation,
        csat_pending=item.get("csat_pending"),
    )


@dataclass(frozen=True)
class Arrival:
    """One inbound message being filed: what every write of it needs."""

    inbound: InboundMessage
    raw: KeptRaw
    now: datetime
    message_id: str
    retention_days: int
    raw_bucket: str

    @property
    def stamp(self) -> str:
        return self.now.isoformat()


# ---------------------------------------------------------------- writes (no I/O)


def message_put(arrival: Arrival, customer_id: str, conversation_id: str) -> Put:
    inbound, now = arrival.inbound, arrival.now
    message = Message(
        id=arrival.message_id,
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
        raw=arrival.raw.ref,
        channel_data=inbound.channel_data,
    )
    item = message_item(message, raw_inline=arrival.raw.inline)
    item["expires_at"] = expires_at(now, arrival.retention_days)
    return Put(item)


def blob_ref_puts(arrival: Arrival, customer_id: str) -> list[Write]:
    """One reference item per S3 object the message points at, in its transaction.

    Erasure deletes an object shared by content hash (an attachment two customers
    sent) only when no other message's reference is left (threadline.privacy).
    """
    ref = arrival.raw.ref
    refs: dict[tuple[str, str], None] = {}
    if ref.location == "s3" and ref.bucket and ref.key:
        refs[(ref.bucket, ref.key)] = None
    for part in arrival.inbound.parts:
        if isinstance(part, MediaPart) and part.s3_key:
            refs[(arrival.raw_bucket, part.s3_key)] = None
    return [
        Put(
            blob_ref_item(
                bucket, key, customer_id, arrival.message_id, arrival.now, arrival.retention_days
            )
        )
        for bucket, key in refs
    ]


def dedup_put(arrival: Arrival, customer_id: str, conversation_id: str | None) -> Put:
    """First of every inbound transaction: a provider's retry is refused here (index 0)."""
    inbound = arrival.inbound
    item = dedup_item(
        inbound.provider,
        inbound.provider_message_id,
        customer_id,
        arrival.message_id,
        arrival.now,
        conversation_id=conversation_id,
    )
    return put_once(item, replay=True)


def first_message_writes(
    arrival: Arrival, customer_id: str, conversation_id: str, *, linked_via: str | None = None
) -> list[Write]:
    """Dedupe, message and identity for the first message from an identity.

    The identity put is conditional: that is what makes concurrent first messages
    from one sender one customer (or attach a linked identity once).
    """
    inbound = arrival.inbound
    identity = identity_item(
        inbound.sender,
        customer_id,
        arrival.now,
        conversation_id=conversation_id,
        channel=inbound.channel.value,
        reply_to=inbound.reply_to,
        linked_via=linked_via,
        link_source="automatic" if linked_via else None,
    )
    return [
        dedup_put(arrival, customer_id, conversation_id),
        message_put(arrival, customer_id, conversation_id),
        put_once(identity),
    ]


def new_customer_writes(
    arrival: Arrival, customer_id: str, conversation_id: str, quiet_period: timedelta
) -> list[Write]:
    inbound = arrival.inbound
    channel = inbound.channel.value
    action = consent.detect(text_of(inbound), inbound.consent_keyword)
    consent_map: dict[str, Any] = {}
    help_map: dict[str, Any] = {}
    if action is consent.ConsentAction.HELP:
        help_map[str(inbound.sender)] = arrival.stamp
    elif action is not None:
        consent_map[str(inbound.sender)] = consent_record(action, arrival)
    verified = other_verified(inbound)
    profile = profile_item(
        customer_id,
        arrival.now,
        display_name=inbound.sender_display_name,
        identities=[str(inbound.sender), *(str(i) for i in verified)],
        channel=channel,
        open_conversation_id=conversation_id,
        consent=consent_map,
        help_requested=help_map,
    )
    return [
        *first_message_writes(arrival, customer_id, conversation_id),
        # The verified identities come along, so the next message from them (an
        # e-mail from the same address) lands on this customer too. Someone else may
        # have claimed one meanwhile: then the transaction is cancelled and the retry
        # files the message on that customer.
        *(
            put_once(
                identity_item(
                    identity,
                    customer_id,
                    arrival.now,
                    verified_by=inbound.provider,
                    linked_from=str(inbound.sender),
                )
            )
            for identity in verified
        ),
        put_once(profile),
        *open_writes(
            customer_id, conversation_id, channel, inbound.author_role, arrival.now, quiet_period
        ),
    ]


def known_customer_writes(
    arrival: Arrival, customer_id: str, plan: ConversationPlan
) -> list[Write]:
    inbound = arrival.inbound
    conversation_id = plan.conversation_id
    # Guard the identity against a merge that moved it to another customer since
    # we read it; the conversation's own conditions guard the conversation.
    identity_values: dict[str, Any] = {
        ":cid": customer_id,
        ":conv": conversation_id,
        ":now": arrival.stamp,
        ":channel": inbound.channel.value,
    }
    if inbound.reply_to:
        identity_values[":reply"] = inbound.reply_to
    update, names, values = profile_update(arrival)
    update, condition = with_conversation(update, "attribute_exists(pk)", plan, values)
    return [
        dedup_put(arrival, customer_id, conversation_id),
        message_put(arrival, customer_id, conversation_id),
        *plan.writes,
        Update(
            key=(identity_pk(inbound.sender), IDENT_SK),
            expression=(
                "SET conversation_id = :conv, last_message_at = :now, "
                "conversation_channel = :channel"
            )
            + (", reply_to = :reply" if inbound.reply_to else "")
            # Only the message right after the satisfaction question can answer it.
            + " REMOVE csat_pending",
            condition="customer_id = :cid",
            values=identity_values,
        ),
        Update(
            key=(customer_pk(customer_id), PROFILE_SK),
            expression=update,
            condition=condition,
            names=names,
            values=values,
        ),
    ]


def linked_identity_writes(
    arrival: Arrival, customer_id: str, plan: ConversationPlan
) -> list[Write]:
    """A first message from a new identity of a known customer: attach and file it.

    It joins the customer's open conversation (the channel switch from e-mail to
    Slack, say) or opens one, as any message of a known customer does.
    """
    inbound = arrival.inbound
    update, names, values = profile_update(arrival)
    update += ", identities = list_append(identities, :new_identity)"
    values[":new_identity"] = [str(inbound.sender)]
    values[":sender"] = str(inbound.sender)
    # A merge may have absorbed the customer since we read the identity: an
    # identity joining it now would be left behind by the merge.
    update, condition = with_conversation(
        update,
        "attribute_exists(pk) AND NOT contains(identities, :sender) "
        "AND attribute_not_exists(merge_state)",
        plan,
        values,
    )
    linked_via = next((str(i) for i in other_verified(inbound)), None)
    return [
        *first_message_writes(arrival, customer_id, plan.conversation_id, linked_via=linked_via),
        Update(
            key=(customer_pk(customer_id), PROFILE_SK),
            expression=update,
            condition=condition,
            names=names,
            values=values,
        ),
        *plan.writes,
    ]


def consent_record(action: consent.ConsentAction, arrival: Arrival) -> dict[str, Any]:
    """The identity's consent entry after a keyword: when, how, and which message."""
    inbound = arrival.inbound
    return consent.keyword_records(
        action,
        source=(
            consent.ConsentSource.PROVIDER
            if consent.provider_action(inbound.consent_keyword) is not None
            else consent.ConsentSource.KEYWORD
        ),
        evidence=arrival.message_id,
        channel=inbound.channel.value,
        at=arrival.now,
    )


def text_of(inbound: InboundMessage) -> str:
    return "\n".join(p.text for p in inbound.parts if isinstance(p, TextPart))


def profile_update(arrival: Arrival) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The PROFILE update an inbound message from a known customer makes."""
    inbound = arrival.inbound
    channel = inbound.channel.value
    values: dict[str, Any] = {":channel": channel, ":now": arrival.stamp}
    names = {"#ch": channel}
    update = "SET last_channel = :channel, last_message_at = :now, last_inbound.#ch = :now"
    if inbound.sender_display_name:
        update += ", display_name = if_not_exists(display_name, :name)"
        values[":name"] = inbound.sender_display_name
    action = consent.detect(text_of(inbound), inbound.consent_keyword)
    if action is consent.ConsentAction.HELP:
        update += ", help_requested.#identity = :now"
        names["#identity"] = str(inbound.sender)
    elif action is not None:
        update += ", consent.#identity = :consent"
        names["#identity"] = str(inbound.sender)
        values[":consent"] = consent_record(action, arrival)
    return update, names, values


def with_conversation(
    update: str, condition: str, plan: ConversationPlan, values: dict[str, Any]
) -> tuple[str, str]:
    """A profile update and condition that also keep ``open_conversation_id`` right."""
    values[":open_conversation"] = plan.conversation_id
    values.update(plan.profile_values)
    update += ", open_conversation_id = :open_conversation"
    if plan.profile_condition:
        condition += " AND " + plan.profile_condition
    return update, condition


def other_verified(inbound: InboundMessage) -> list[Identity]:
    """The sender's verified identities other than the one it wrote from, once each."""
    seen = {str(inbound.sender)}
    others = []
    for identity in inbound.verified_identities:
        if str(identity) not in seen:
            seen.add(str(identity))
            others.append(identity)
    return others


# ---------------------------------------------------------------- the ingest path


class IngestStore(ConversationStore):
    """``ingest``: read the sender's identity, decide, write once; TimelineStore mixes it in."""

    settings: StoreSettings

    def surviving_customer_id(self, customer_id: str) -> str | None:
        raise NotImplementedError

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
        from threadline.store import IngestResult

        now = received_at or utc_now()
        # After a conflict the identity's conversation hint is not trusted: the
        # customer's open conversation is read from the profile instead.
        trust_hint = True
        for attempt in range(MAX_ATTEMPTS):
            try:
                record = self._read_identity(inbound.sender)
                arrival = Arrival(
                    inbound,
                    raw,
                    now,
                    new_id(now),
                    self.settings.message_retention_days,
                    self.settings.raw_bucket,
                )
                owner = None if record is not None else self._verified_owner(inbound)
                if owner is not None and attempt:
                    # The owner may be in the middle of being merged: join the survivor.
                    survivor = self.surviving_customer_id(owner.customer_id)
                    if survivor and survivor != owner.customer_id:
                        owner = IdentityRecord(customer_id=survivor, conversation=None)
                if owner is not None:
                    # A new identity of a customer we know through a verified one
                    # (Slack account with that customer's confirmed e-mail).
                    customer_id = owner.customer_id
                    plan = self._plan(owner, inbound, arrival, trust_hint)
                    writes = linked_identity_writes(arrival, customer_id, plan)
                    opened = plan.conversation_id if plan.opened else None
                elif record is None:
                    opened = None  # a new customer has no earlier conversation
                    customer_id = new_id(now)
                    writes = new_customer_writes(
                        arrival, customer_id, new_id(now), self.quiet_period
                    )
                else:
                    customer_id = record.customer_id
                    if thread is not None and thread.customer_id == customer_id:
                        # The message it answers is named; the conversation is still the
                        # customer's open one (conversations span channels and end after
                        # the quiet period, so an old thread's reply opens a new one).
                        filed = inbound.model_copy(update={"in_reply_to": thread.message_id})
                        arrival = replace(arrival, inbound=filed)
                    answer = rating_answer(record.csat_pending, text_of(inbound), now)
                    if answer is not None:
                        # An answer to the satisfaction question: not a new contact.
                        opened = None
                        # Imported here: satisfaction builds on this module's writers.
                        from threadline.satisfaction import rating_writes

                        writes = rating_writes(arrival, customer_id, *answer)
                    else:
                        plan = self._plan(record, arrival.inbound, arrival, trust_hint)
                        writes = known_customer_writes(arrival, customer_id, plan)
                        opened = plan.conversation_id if plan.opened else None
                self.data.write([*writes, *blob_ref_puts(arrival, customer_id)])
            except WriteCancelled as cancelled:
                duplicate = self._duplicate(cancelled, inbound)
                if duplicate is not None:
                    return duplicate
                if cancelled.conflict and attempt + 1 < MAX_ATTEMPTS:
                    # Lost a race (new customer, another identity's message in the
                    # conversation, a close, a merge): re-read.
                    trust_hint = False
                    # Full jitter, growing, so writers that collided spread out.
                    time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))  # noqa: S311
                    continue
                raise StorageUnavailable("the timeline could not be written") from cancelled
            except StorageUnavailable as exc:
                raise StorageUnavailable("the timeline could not be written") from exc
            if opened is not None:
                self.note_repeat_contact(customer_id, opened, now)
            created = record is None and owner is None
            logger.info(
                "message stored",
                extra={
                    "customer_id": customer_id,
                    "message_id": arrival.message_id,
                    "channel": inbound.channel.value,
                    "customer_created": created,
                    "identity_linked": owner is not None,
                },
            )
            return IngestResult(
                message_id=arrival.message_id,
                customer_id=customer_id,
                customer_created=created,
                identity_linked=owner is not None,
            )
        raise StorageUnavailable("the timeline kept changing under us; retry")

    def _read_identity(self, identity: Identity) -> IdentityRecord | None:
        return identity_record(self.data.get((identity_pk(identity), IDENT_SK), consistent=True))

    def _plan(
        self,
        record: IdentityRecord,
        inbound: InboundMessage,
        arrival: Arrival,
        trust_hint: bool,
    ) -> ConversationPlan:
        """Which conversation the message joins, from the identity's hint or the profile."""
        known = (
            record.conversation if trust_hint else self.read_latest_conversation(record.customer_id)
        )
        return plan_inbound(
            record.customer_id,
            known,
            inbound.channel.value,
            inbound.author_role,
            arrival.now,
            arrival.message_id,
            new_id(arrival.now),
            self.quiet_period,
        )

    def _verified_owner(self, inbound: InboundMessage) -> IdentityRecord | None:
        """The identity record of the customer who owns one of the sender's verified
        identities, if any.

        Only exact identities the provider verified are followed (design: automatic
        linking only on exact, verified identities); the first one found wins.
        """
        for identity in other_verified(inbound):
            record = self._read_identity(identity)
            if record is not None:
                return record
        return None

    def _duplicate(self, cancelled: WriteCancelled, inbound: InboundMessage) -> IngestResult | None:
        """An IngestResult when the transaction was cancelled because it is a retry."""
        from threadline.store import IngestResult

        if not cancelled.failed(0):
            return None
        key = (dedup_pk(inbound.provider, inbound.provider_message_id), DEDUP_SK)
        item = self.data.first_writer(cancelled, 0, key)
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
