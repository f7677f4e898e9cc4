"""Agent notes: internal remarks on a customer's timeline, never sent to the customer.

A note is a ``Message`` with ``direction: internal``, ``author_role: agent`` and
``status: received`` (threadline took it; there is nothing to send). It is written
like any timeline message, so every CRM reading the timeline sees it, the privacy
export carries it and erasure removes it. The dispatcher only ever claims ``queued``
messages, so a note can never reach a provider. The outbox publisher announces it as
``message.note_added``. It joins a conversation without touching its metrics.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import ConfigDict, Field

from threadline.dal.base import WriteCancelled
from threadline.errors import NotFound, StorageUnavailable, ThreadlineError
from threadline.items import (
    IDEMPOTENCY_SK,
    idempotency_pk,
    new_id,
)
from threadline.logs import logger
from threadline.model import Model
from threadline.outbound import IdempotencyKeyReused
from threadline.outbound_store import keyed_message_writes
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Message,
    MessageStatus,
    StatusChange,
    TextPart,
    utc_now,
)
from threadline.store import Profile, TimelineStore

NOTE_PROVIDER = "threadline"
"""The ``provider`` of a note: no channel carried it."""

_IDEMPOTENCY_INDEX = 1
"""Where the Idempotency-Key put sits in the note's transaction."""


class NoteRequest(Model):
    """``POST /v1/conversations/{id}/notes`` and ``POST /v1/customers/{id}/notes``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)
    agent_id: str | None = Field(default=None, max_length=256, description="the CRM's agent id")

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class NoChannelForNote(ThreadlineError):
    status = 422
    code = "no_channel_for_note"


def note_channel(profile: Profile, conversation_channel: Channel | None) -> Channel:
    """The channel a note is filed under: the conversation's, else the customer's latest.

    It says where the exchange stood when the note was written; nothing is sent on it.
    """
    channel = conversation_channel or profile.customer.last_channel
    if channel is None:
        raise NoChannelForNote("the customer has never written in: there is no timeline")
    return channel


def note_message(
    profile: Profile,
    request: NoteRequest,
    conversation_id: str,
    channel: Channel,
    now: datetime,
) -> Message:
    """The note as it is stored on the timeline."""
    return Message(
        id=new_id(now),
        customer_id=profile.customer.id,
        conversation_id=conversation_id,
        channel=channel,
        direction=Direction.INTERNAL,
        provider=NOTE_PROVIDER,
        author_role=AuthorRole.AGENT,
        author_id=request.agent_id,
        received_at=now,
        parts=[TextPart(text=request.text)],
        status=MessageStatus.RECEIVED,
        status_history=[StatusChange(status=MessageStatus.RECEIVED, at=now)],
    )


def add_note(
    store: TimelineStore,
    customer_id: str,
    request: NoteRequest,
    *,
    conversation_id: str | None = None,
    conversation_channel: Channel | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[Message, bool]:
    """Write a note on the customer's timeline; (note, created). Same key twice: the first.

    Without ``conversation_id`` the note joins the open conversation, else the last one
    the customer had (as a reply does), else a fresh id.
    """
    now = now or utc_now()
    profile = store.get_profile(customer_id, consistent=True, follow_merges=True)
    if profile is None:
        raise NotFound("no such customer")
    customer_id = profile.customer.id
    channel = note_channel(profile, conversation_channel)
    conversation_id = (
        conversation_id
        or profile.open_conversation_id
        or _last_conversation(store, customer_id)
        or new_id(now)
    )
    message = note_message(profile, request, conversation_id, channel, now)
    writes = keyed_message_writes(
        message,
        idempotency_key,
        request.fingerprint(),
        now,
        store.settings.message_retention_days,
    )
    profile_check = len(writes) - 1
    try:
        store.data.write(writes)
    except WriteCancelled as cancelled:
        if idempotency_key and cancelled.failed(_IDEMPOTENCY_INDEX):
            key = (idempotency_pk(customer_id, idempotency_key), IDEMPOTENCY_SK)
            first = store.data.first_writer(cancelled, _IDEMPOTENCY_INDEX, key) or {}
            if first.get("fingerprint") != request.fingerprint():
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used for a different note"
                ) from cancelled
            replayed = store.get_message(customer_id, str(first.get("message_id")))
            if replayed is None:
                raise StorageUnavailable("the original note could not be read") from cancelled
            return replayed, False
        if cancelled.failed(profile_check):
            survivor = store.surviving_customer_id(customer_id)
            if survivor and survivor != customer_id:
                return add_note(
                    store,
                    survivor,
                    request,
                    conversation_id=conversation_id,
                    conversation_channel=conversation_channel,
                    idempotency_key=idempotency_key,
                    now=now,
                )
        raise StorageUnavailable("the note could not be stored") from cancelled
    logger.info(
        "agent note added",
        extra={"customer_id": customer_id, "message_id": message.id},
    )
    return message, True


def _last_conversation(store: TimelineStore, customer_id: str) -> str | None:
    page = store.conversations(customer_id, limit=1)
    return page.items[0].id if page.items else None
