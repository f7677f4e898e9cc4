"""Customer satisfaction (CSAT): the question after a resolved close, and the
answer that rates it (docs/analytics.md). The decisions are in threadline.outcomes;
this module turns them into writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.consent import Purpose
from threadline.dal.base import Update, Write, WriteCancelled
from threadline.ingest_writes import Arrival, dedup_put, message_put, profile_update
from threadline.items import (
    IDENT_SK,
    PROFILE_SK,
    conversation_sk,
    customer_pk,
    identity_pk,
)
from threadline.logs import logger
from threadline.outbound import (
    EmailBlocked,
    NoIdentityForChannel,
    OptedOut,
    SendMessageRequest,
)
from threadline.outcomes import (
    asks_for_rating,
    csat_pending,
    csat_question,
    csat_survey_on,
    outcome_of,
)
from threadline.schema import Rating, utc_now

if TYPE_CHECKING:
    from threadline.outbound_store import OutboundStore


def ask_for_rating(store: OutboundStore, customer_id: str, conversation_id: str) -> None:
    """After a ``resolved`` close, with ``CSAT_SURVEY=on``: queue the satisfaction
    question once, through the normal outbound path (purpose ``survey``, the
    customer's latest channel: the dispatcher applies consent and windows), and
    mark the identity it goes to with ``csat_pending`` so its answer is a rating."""
    if not csat_survey_on():
        return
    key = (customer_pk(customer_id), conversation_sk(conversation_id))
    item = store.data.get(key, consistent=True) or {}
    resolution, _ = outcome_of(item)
    if not asks_for_rating(resolution, "csat_requested_at" in item, survey_on=True):
        return
    now = utc_now()
    try:  # claimed first, so a retried close never asks twice
        store.data.write(
            [
                Update(
                    key=key,
                    expression="SET csat_requested_at = :now",
                    condition="attribute_exists(pk) AND attribute_not_exists(csat_requested_at)",
                    values={":now": now.isoformat()},
                )
            ]
        )
    except WriteCancelled:
        return
    request = SendMessageRequest(text=csat_question(), author_role="system", purpose=Purpose.SURVEY)
    try:
        message, _ = store.queue_message(customer_id, request, now=now)
    except (OptedOut, NoIdentityForChannel, EmailBlocked) as refused:
        # The customer refused surveys, or cannot be reached: not an error.
        logger.info(
            "satisfaction question not sent",
            extra={"conversation_id": conversation_id, "reason": type(refused).__name__},
        )
        return
    assert message.recipient is not None  # an outbound message always has one
    store.data.write(
        [
            Update(
                key=key,
                expression="SET csat_question_message_id = :message",
                condition="attribute_exists(pk)",
                values={":message": message.id},
            ),
            Update(
                key=(identity_pk(message.recipient), IDENT_SK),
                expression="SET csat_pending = :pending",
                condition="customer_id = :cid",
                values={
                    ":pending": csat_pending(conversation_id, now),
                    ":cid": message.customer_id,
                },
            ),
        ]
    )
    logger.info(
        "satisfaction question queued",
        extra={"conversation_id": conversation_id, "message_id": message.id},
    )


def rating_writes(
    arrival: Arrival, customer_id: str, conversation_id: str, score: int
) -> list[Write]:
    """An answer to the satisfaction question: filed on the closed conversation it
    rates, which takes the rating (published as ``conversation.rated``), and on the
    profile as ``last_csat``. No conversation opens and none is continued."""
    inbound = arrival.inbound
    rating = Rating(
        conversation_id=conversation_id,
        score=score,
        channel=inbound.channel,
        rated_at=arrival.now,
    ).model_dump(mode="json")
    update, names, values = profile_update(arrival)
    values[":rating"] = rating
    return [
        dedup_put(arrival, customer_id, conversation_id),
        message_put(arrival, customer_id, conversation_id),
        Update(
            key=(customer_pk(customer_id), conversation_sk(conversation_id)),
            expression="SET rating = :rating",
            condition="attribute_exists(pk)",
            values={":rating": rating},
        ),
        Update(
            key=(identity_pk(inbound.sender), IDENT_SK),
            expression="REMOVE csat_pending",
            condition="customer_id = :cid",
            values={":cid": customer_id},
        ),
        Update(
            key=(customer_pk(customer_id), PROFILE_SK),
            expression=update + ", last_csat = :rating",
            condition="attribute_exists(pk)",
            names=names,
            values=values,
        ),
    ]
