"""Agent notes: threadline.notes' decisions against the in-memory fake of the
data-access interface (DynamoDB itself: tests/integration/test_notes.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from tests.unit.test_outbound_logic import AT, customer_id, store, table
from threadline.dal.base import ConditionCheck, Put
from threadline.errors import NotFound
from threadline.events import MessageNoteAdded, events_from_stream_record
from threadline.items import message_item, to_item
from threadline.notes import NoteRequest, add_note
from threadline.outbound import IdempotencyKeyReused
from threadline.schema import AuthorRole, Channel, Direction, MessageStatus

__all__ = ["customer_id", "store", "table"]  # fixtures used below


def note(text: str = "Called back, refund approved") -> NoteRequest:
    return NoteRequest.model_validate({"text": text, "agent_id": "agent-7"})


def test_a_note_is_an_internal_agent_message_on_the_open_conversation(store, table, customer_id):
    profile = store.get_profile(customer_id)
    assert profile is not None and profile.open_conversation_id

    message, created = add_note(store, customer_id, note(), now=AT + timedelta(minutes=1))

    assert created
    assert message.direction is Direction.INTERNAL
    assert message.author_role is AuthorRole.AGENT and message.author_id == "agent-7"
    assert message.status is MessageStatus.RECEIVED and message.recipient is None
    assert message.conversation_id == profile.open_conversation_id
    assert message.channel is Channel.SMS and message.text == "Called back, refund approved"
    writes = table.written[-1]
    # The note and the profile check; the conversation (its metrics) is not touched.
    assert isinstance(writes[0], Put) and writes[0].item["direction"] == "internal"
    assert isinstance(writes[-1], ConditionCheck)
    assert len(writes) == 2


def test_the_same_idempotency_key_gives_the_first_note_back(store, table, customer_id):
    first, created = add_note(store, customer_id, note(), idempotency_key="n-1", now=AT)
    again, created_again = add_note(store, customer_id, note(), idempotency_key="n-1", now=AT)

    assert created and not created_again
    assert again.id == first.id
    assert len(table.of_type("message")) == 2  # the customer's SMS and one note


def test_an_idempotency_key_reused_for_another_note_is_refused(store, customer_id):
    add_note(store, customer_id, note(), idempotency_key="n-2", now=AT)

    with pytest.raises(IdempotencyKeyReused):
        add_note(store, customer_id, note("something else"), idempotency_key="n-2", now=AT)


def test_a_note_is_on_the_timeline_marked_internal(store, customer_id):
    added, _ = add_note(store, customer_id, note(), now=AT + timedelta(minutes=1))

    page = store.timeline(customer_id)

    assert [m.direction for m in page.items] == [Direction.INTERNAL, Direction.INBOUND]
    assert page.items[0].id == added.id


def test_a_note_is_published_as_message_note_added_and_never_queued(store, customer_id):
    added, _ = add_note(store, customer_id, note(), now=AT)
    record = {
        "eventID": "e-1",
        "dynamodb": {"NewImage": to_item(message_item(added))},
    }

    events = events_from_stream_record(record)

    assert [type(e) for e in events] == [MessageNoteAdded]
    assert events[0].type == "message.note_added" and events[0].message.id == added.id


@pytest.mark.parametrize("body", [{"text": ""}, {"agent_id": "a"}, {"text": "x", "channel": "sms"}])
def test_a_note_needs_text_and_nothing_else(body):
    with pytest.raises(ValidationError):
        NoteRequest.model_validate(body)


def test_a_note_for_an_unknown_customer_is_not_found(store):
    with pytest.raises(NotFound):
        add_note(store, "01NOSUCHCUSTOMER", note(), now=AT)
