"""Filing an inbound message: read the sender's identity, write once, retry a lost race.

An inbound message costs one consistent ``GetItem`` on the identity and one
transaction (dedupe + message + conversation; the identity's hint and the profile
only when they change: threadline.ingest_writes), plus a ``PutObject`` only when the
raw payload is too large to ride inline in the item. The writes' conditions make
every race safe: two first messages from one new sender make one customer, and a
provider retry is stored once.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from threadline.channels.base import InboundMessage
from threadline.conversations import ConversationPlan, ConversationStore, plan_inbound
from threadline.dal.base import WriteCancelled
from threadline.errors import StorageUnavailable
from threadline.ingest_writes import (
    Arrival,
    IdentityRecord,
    blob_ref_puts,
    identity_record,
    known_customer_writes,
    linked_identity_writes,
    needs_bookkeeping,
    new_customer_writes,
    other_verified,
    text_of,
)
from threadline.items import DEDUP_SK, IDENT_SK, dedup_pk, identity_pk, new_id
from threadline.logs import logger
from threadline.outcomes import rating_answer
from threadline.schema import Identity, utc_now

if TYPE_CHECKING:
    from threadline.settings import StoreSettings
    from threadline.store import IngestResult, KeptRaw, ThreadTarget

# Optimistic retries when a concurrent writer changed the identity or conversation
# between our read and our transaction. Each round lets at least one writer through,
# so N messages racing for one customer need up to N tries; a provider's burst of
# retries (or a group chat) can reach that, and each failure costs the customer a
# provider retry, so allow more than the bursts we see.
MAX_ATTEMPTS = 12


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
                        # Imported here: satisfaction needs the outbound path, which needs this.
                        from threadline.satisfaction import rating_writes

                        writes = rating_writes(arrival, customer_id, *answer)
                    else:
                        plan = self._plan(record, arrival.inbound, arrival, trust_hint)
                        writes = known_customer_writes(
                            arrival,
                            customer_id,
                            plan,
                            bookkeeping=needs_bookkeeping(record, arrival, plan, trust_hint),
                        )
                        opened = plan.conversation_id if plan.opened else None
                self.data.write([*writes, *blob_ref_puts(arrival, customer_id)])
            except WriteCancelled as cancelled:
                duplicate = self._duplicate(cancelled, inbound)
                if duplicate is not None:
                    return duplicate
                if cancelled.conflict and attempt + 1 < MAX_ATTEMPTS:
                    if record is None and owner is None:
                        # Lost the race to create the customer: the winner's identity
                        # item is there now, with a hint as fresh as it gets. Read it
                        # and file as a known customer's message, at once.
                        continue
                    # Lost a race (another identity's message in the conversation, a
                    # close, a merge): re-read, the profile and conversation too.
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
