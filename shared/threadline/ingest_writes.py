"""The writes an inbound message comes to, decided from plain inputs (no I/O).

A known customer's message in its open conversation writes the dedup item, the
message and the conversation; the identity's hint and the profile join when
:func:`needs_bookkeeping` says so. A first message writes the identity (and, for a
new customer, the profile and a conversation) under conditions that make concurrent
first messages from one sender one customer. :class:`threadline.ingest.IngestStore`
reads what these need, writes what they return and retries a lost race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from threadline import consent
from threadline.channels.base import InboundMessage
from threadline.conversations import ConversationPlan, KnownConversation, open_writes
from threadline.dal.base import Put, Update, Write, put_once
from threadline.items import (
    IDENT_SK,
    PROFILE_SK,
    blob_ref_item,
    customer_pk,
    dedup_item,
    expires_at,
    identity_item,
    identity_pk,
    message_item,
    profile_item,
)
from threadline.schema import (
    Direction,
    Identity,
    MediaPart,
    Message,
    MessageStatus,
    StatusChange,
    TextPart,
)

if TYPE_CHECKING:
    from threadline.store import KeptRaw

# A known customer's message in its open conversation, on the channel of the one
# before, writes only the dedup item, the message and the conversation (6 WRU). The
# identity's hint and the profile's last inbound time on the channel are refreshed
# together when the conversation or channel changes, or when the hint is older than
# this: so the profile's time is at most this much behind, and the WhatsApp 24-hour
# window computed from it closes at most this much early, never late (docs/cost.md).
BOOKKEEPING_REFRESH = timedelta(minutes=5)


@dataclass(frozen=True)
class IdentityRecord:
    customer_id: str
    conversation: KnownConversation | None
    """The conversation this identity last wrote in, as it was then (a hint)."""
    csat_pending: dict[str, Any] | None = None
    """A satisfaction question sent to this identity, not yet answered (outcomes)."""
    reply_to: dict[str, Any] | None = None
    """Where a reply to this identity goes, as stored."""


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
        reply_to=item.get("reply_to"),
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


def needs_bookkeeping(
    record: IdentityRecord, arrival: Arrival, plan: ConversationPlan, trusted_hint: bool
) -> bool:
    """Whether a known customer's message must also update its identity and profile.

    Not when it continues the conversation its identity's hint names, on the hint's
    channel, with nothing else to record, and the hint is fresh: then the message and
    the conversation say all there is. A concurrent merge or close still cancels the
    transaction, through the conversation's condition (a merge moves the identity's
    conversation with it; a close changes its state).
    """
    inbound = arrival.inbound
    hint = record.conversation
    if not trusted_hint or hint is None or plan.opened or plan.conversation_id != hint.id:
        return True
    if hint.last_channel != inbound.channel.value or record.csat_pending is not None:
        return True
    if inbound.reply_to and inbound.reply_to != record.reply_to:
        return True
    if consent.detect(text_of(inbound), inbound.consent_keyword) is not None:
        return True
    return arrival.now - datetime.fromisoformat(hint.last_message_at) >= BOOKKEEPING_REFRESH


def known_customer_writes(
    arrival: Arrival, customer_id: str, plan: ConversationPlan, *, bookkeeping: bool = True
) -> list[Write]:
    """A known customer's message; with ``bookkeeping`` (needs_bookkeeping) also the
    identity's hint and the profile's last inbound time, channel and pointer."""
    inbound = arrival.inbound
    conversation_id = plan.conversation_id
    if not bookkeeping:
        return [
            dedup_put(arrival, customer_id, conversation_id),
            message_put(arrival, customer_id, conversation_id),
            *plan.writes,
        ]
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
