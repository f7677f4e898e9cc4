"""The outbox: committed table changes become the events CRMs subscribe to.

Stream records follow Lambda's DynamoDB Streams event format ("Using AWS Lambda
with Amazon DynamoDB", the example event in the Lambda developer guide): one record
per item change with ``eventID``, ``eventName`` (INSERT | MODIFY | REMOVE) and a
``dynamodb`` object carrying ``ApproximateCreationDateTime`` (epoch seconds),
``Keys``, ``NewImage``/``OldImage`` in DynamoDB's low-level AttributeValue JSON,
``SequenceNumber``, ``SizeBytes`` and ``StreamViewType``. The images are made from
real items: ``to_item(message_item(...))`` and PROFILE/CONV items shaped as
store.py writes them, passed through JSON as Lambda delivers them.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from threadline.events import (
    ConversationChannelSwitched,
    ConversationClosed,
    ConversationOpened,
    ConversationRated,
    ConversationReopened,
    CustomerCreated,
    MessageNoteAdded,
    MessageQueued,
    MessageReceived,
    MessageSent,
    MessageStatusChanged,
    events_from_stream_record,
    put_events_entry,
)
from threadline.items import (
    PROFILE_SK,
    conversation_sk,
    customer_pk,
    message_item,
    to_item,
)
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    IdentityKind,
    Message,
    MessageStatus,
    StatusChange,
    TextPart,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "infra" / "schemas"
AT = datetime(2026, 11, 23, 7, 16, 49, tzinfo=UTC)
EPOCH = int(AT.timestamp())
CUSTOMER_ID = "01J9Z8X7W6V5T4S3R2Q1P0N9MC"
CONVERSATION_ID = "01J9Z8X7W6V5T4S3R2Q1P0N9CV"
PHONE = Identity(kind=IdentityKind.PHONE, value="+15555550123")
BUSINESS = Identity(kind=IdentityKind.PHONE, value="+15555550100")
STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/threadline/stream/2026-11-01T00:00:00.000"
)

INBOUND = Message(
    id="01J9Z8X7W6V5T4S3R2Q1P0N9M1",
    customer_id=CUSTOMER_ID,
    conversation_id=CONVERSATION_ID,
    channel=Channel.SMS,
    direction=Direction.INBOUND,
    provider="twilio",
    provider_message_id="SM" + "1" * 32,
    author_role=AuthorRole.CUSTOMER,
    sender=PHONE,
    recipient=BUSINESS,
    received_at=AT,
    parts=[TextPart(text="Hi, my order hasn't arrived")],
    status=MessageStatus.RECEIVED,
    status_history=[StatusChange(status=MessageStatus.RECEIVED, at=AT)],
)
NOTE = Message(
    id="01J9Z8X7W6V5T4S3R2Q1P0N9M3",
    customer_id=CUSTOMER_ID,
    conversation_id=CONVERSATION_ID,
    channel=Channel.SMS,
    direction=Direction.INTERNAL,
    provider="threadline",
    author_role=AuthorRole.AGENT,
    author_id="agent-42",
    received_at=AT,
    parts=[TextPart(text="Refund approved by billing")],
    status=MessageStatus.RECEIVED,
)
QUEUED = Message(
    id="01J9Z8X7W6V5T4S3R2Q1P0N9M2",
    customer_id=CUSTOMER_ID,
    conversation_id=CONVERSATION_ID,
    channel=Channel.SMS,
    direction=Direction.OUTBOUND,
    provider="twilio",
    author_role=AuthorRole.AGENT,
    author_id="agent-42",
    recipient=PHONE,
    received_at=AT,
    parts=[TextPart(text="It ships today")],
    status=MessageStatus.QUEUED,
    status_history=[StatusChange(status=MessageStatus.QUEUED, at=AT)],
)
SENT = QUEUED.model_copy(
    update={
        "status": MessageStatus.SENT,
        "provider_message_id": "SM" + "2" * 32,
        "status_history": [*QUEUED.status_history, StatusChange(status=MessageStatus.SENT, at=AT)],
    }
)
PROFILE_ITEM = {
    "pk": customer_pk(CUSTOMER_ID),
    "sk": PROFILE_SK,
    "type": "customer",
    "customer_id": CUSTOMER_ID,
    "display_name": "Jane Doe",
    "identities": [str(PHONE)],
    "created_at": AT.isoformat(),
    "last_channel": "sms",
    "last_message_at": AT.isoformat(),
    "last_inbound": {"sms": AT.isoformat()},
    "consent": {},
    "help_requested": {},
}
CONVERSATION_ITEM = {
    "pk": customer_pk(CUSTOMER_ID),
    "sk": conversation_sk(CONVERSATION_ID),
    "type": "conversation",
    "conversation_id": CONVERSATION_ID,
    "customer_id": CUSTOMER_ID,
    "state": "open",
    "opened_at": AT.isoformat(),
    "last_message_at": AT.isoformat(),
    "channels": {"sms"},
    "last_inbound_channel": "sms",
    "channel_switches": 0,
    "message_count": 1,
    "messages_customer": 1,
    "close_due_at": "2026-11-24T07:16:49.000000Z",
    "close_bucket": "CLOSEDUE#2026-11-24T07",
}
# The same conversation after the customer wrote again on WhatsApp and an agent replied.
SWITCHED_ITEM = {
    **CONVERSATION_ITEM,
    "last_message_at": "2026-11-23T07:20:00+00:00",
    "channels": {"sms", "whatsapp"},
    "last_inbound_channel": "whatsapp",
    "channel_switches": 1,
    "message_count": 3,
    "messages_customer": 2,
    "messages_agent": 1,
    "first_response_at": "2026-11-23T07:18:49+00:00",
    "last_switch": {
        "from": "sms",
        "to": "whatsapp",
        "message_id": "01J9Z8X7W6V5T4S3R2Q1P0N9M3",
        "at": "2026-11-23T07:20:00+00:00",
    },
}
CLOSED_ITEM = {
    **{k: v for k, v in SWITCHED_ITEM.items() if k not in {"close_due_at", "close_bucket"}},
    "state": "closed",
    "closed_at": "2026-11-23T08:16:49+00:00",
    "close_reason": "api",
}
RESOLVED_ITEM = {
    **CLOSED_ITEM,
    "resolution": "resolved",
    "closed_by": {"role": "agent", "id": "agent-42"},
}
# A repeat contact within the window reopened it (threadline.outcomes).
REOPENED_ITEM = {**RESOLVED_ITEM, "repeat_conversation_id": "01J9Z8X7W6V5T4S3R2Q1P0N9D2"}
RATING = {
    "conversation_id": CLOSED_ITEM["conversation_id"],
    "score": 4,
    "channel": "whatsapp",
    "rated_at": "2026-11-23T08:30:00+00:00",
}
RATED_ITEM = {**RESOLVED_ITEM, "rating": RATING}

LINKED_IDENTITY_ITEM = {
    "pk": "IDENT#email#jane@example.com",
    "sk": "IDENT",
    "type": "identity",
    "identity": "email:jane@example.com",
    "customer_id": CUSTOMER_ID,
    "created_at": AT.isoformat(),
    "linked_at": AT.isoformat(),
    "link_source": "api",
}
MERGED_PROFILE_ITEM = {
    **PROFILE_ITEM,
    "customer_id": "01J9Z8X7W6V5T4S3R2Q1P0N9AB",
    "pk": customer_pk("01J9Z8X7W6V5T4S3R2Q1P0N9AB"),
    "merge_state": "merged",
    "merged_into": CUSTOMER_ID,
}


def record(
    event_name: str,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    *,
    event_id: str = "c4ca4238a0b923820dcc509a6f75849b",
    sequence: str = "111100000000000000001",
) -> dict[str, Any]:
    """One record of a Lambda DynamoDB Streams event (NEW_AND_OLD_IMAGES)."""
    some_image = new or old or {}
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": EPOCH,
        "Keys": to_item({"pk": some_image.get("pk"), "sk": some_image.get("sk")}),
        "SequenceNumber": sequence,
        "SizeBytes": 512,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        change["NewImage"] = to_item(new)
    if old is not None:
        change["OldImage"] = to_item(old)
    raw = {
        "eventID": event_id,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": STREAM_ARN,
    }
    # As Lambda delivers it: plain JSON, binary values (a message's compressed
    # document and envelope) as base64 text.
    return json.loads(json.dumps(raw, default=lambda b: base64.b64encode(b).decode()))


def msg(message: Message, **extra: Any) -> dict[str, Any]:
    return {**message_item(message), **extra}


# ------------------------------------------------------------------ what each change means


def test_a_note_insert_is_message_note_added_and_nothing_else():
    [event] = events_from_stream_record(record("INSERT", msg(NOTE)))
    assert isinstance(event, MessageNoteAdded)
    assert event.message == NOTE
    assert events_from_stream_record(record("MODIFY", msg(NOTE), msg(NOTE))) == []


def test_inbound_message_insert_is_message_received():
    [event] = events_from_stream_record(record("INSERT", msg(INBOUND)))
    assert isinstance(event, MessageReceived)
    assert event.message == INBOUND
    assert event.customer_id == CUSTOMER_ID


def test_outbound_message_insert_is_message_queued():
    [event] = events_from_stream_record(record("INSERT", msg(QUEUED)))
    assert isinstance(event, MessageQueued)
    assert event.message == QUEUED


def test_queued_to_sent_is_message_sent_then_status_changed():
    old = msg(QUEUED, dispatch_state="sending", dispatch_attempts=1)
    new = msg(SENT, dispatch_state="done", dispatch_attempts=1)
    sent, changed = events_from_stream_record(record("MODIFY", new, old))
    assert isinstance(sent, MessageSent) and sent.message == SENT
    assert isinstance(changed, MessageStatusChanged)
    assert changed.previous_status is MessageStatus.QUEUED
    assert changed.message.status is MessageStatus.SENT


def test_sent_to_delivered_is_only_status_changed():
    delivered = SENT.model_copy(update={"status": MessageStatus.DELIVERED})
    [event] = events_from_stream_record(record("MODIFY", msg(delivered), msg(SENT)))
    assert isinstance(event, MessageStatusChanged)
    assert event.previous_status is MessageStatus.SENT


def test_modify_that_leaves_the_status_alone_is_no_event():
    old = msg(QUEUED)
    new = msg(QUEUED, dispatch_state="sending", dispatch_attempts=1)
    assert events_from_stream_record(record("MODIFY", new, old)) == []


def test_profile_insert_is_customer_created():
    [event] = events_from_stream_record(record("INSERT", PROFILE_ITEM))
    assert isinstance(event, CustomerCreated)
    assert event.customer.id == CUSTOMER_ID
    assert event.customer.identities == [PHONE]
    assert event.customer.display_name == "Jane Doe"


def test_profile_modify_is_no_event():
    later = {**PROFILE_ITEM, "last_message_at": "2026-11-24T00:00:00+00:00"}
    assert events_from_stream_record(record("MODIFY", later, PROFILE_ITEM)) == []


def test_conversation_insert_is_conversation_opened():
    [event] = events_from_stream_record(record("INSERT", CONVERSATION_ITEM))
    assert isinstance(event, ConversationOpened)
    assert event.conversation.id == CONVERSATION_ID
    assert event.conversation.channels == [Channel.SMS]
    assert event.conversation.state == "open"


def test_a_message_on_another_channel_is_conversation_channel_switched():
    [event] = events_from_stream_record(record("MODIFY", SWITCHED_ITEM, CONVERSATION_ITEM))
    assert isinstance(event, ConversationChannelSwitched)
    assert (event.from_channel, event.to_channel) == (Channel.SMS, Channel.WHATSAPP)
    assert event.message_id == "01J9Z8X7W6V5T4S3R2Q1P0N9M3"
    assert event.conversation.metrics.channel_switches == 1
    assert event.conversation.last_channel is Channel.WHATSAPP


def test_a_message_on_the_same_channel_is_no_event():
    same = {**CONVERSATION_ITEM, "message_count": 2, "messages_customer": 2}
    assert events_from_stream_record(record("MODIFY", same, CONVERSATION_ITEM)) == []


def test_closing_is_conversation_closed_with_its_metrics():
    [event] = events_from_stream_record(record("MODIFY", CLOSED_ITEM, SWITCHED_ITEM))
    assert isinstance(event, ConversationClosed)
    conversation = event.conversation
    assert conversation.state == "closed"
    assert conversation.close_reason == "api"
    metrics = conversation.metrics
    assert metrics.channels_used == [Channel.SMS, Channel.WHATSAPP]
    assert metrics.channel_switches == 1
    assert metrics.first_response_seconds == 120.0
    assert metrics.time_to_close_seconds == 3600.0
    assert metrics.messages.model_dump() == {"customer": 2, "agent": 1, "bot": 0, "system": 0}


def test_rewriting_a_closed_conversation_is_no_second_close():
    assert events_from_stream_record(record("MODIFY", CLOSED_ITEM, CLOSED_ITEM)) == []


def test_the_conversation_pointer_is_no_event():
    pointer = {
        "pk": f"CONV#{CONVERSATION_ID}",
        "sk": "CONV",
        "type": "conversation_pointer",
        "conversation_id": CONVERSATION_ID,
        "customer_id": CUSTOMER_ID,
    }
    assert events_from_stream_record(record("INSERT", pointer)) == []


@pytest.mark.parametrize("item", [msg(INBOUND), PROFILE_ITEM, CONVERSATION_ITEM])
def test_remove_is_no_event(item):
    assert events_from_stream_record(record("REMOVE", old=item)) == []


def test_identity_and_dedup_items_are_no_event():
    identity = {"pk": f"IDENT#phone#{PHONE.value}", "sk": "IDENT", "type": "identity"}
    dedup = {"pk": "DEDUP#twilio#SM1", "sk": "DEDUP", "type": "dedup"}
    assert events_from_stream_record(record("INSERT", identity)) == []
    assert events_from_stream_record(record("INSERT", dedup)) == []


def test_event_time_is_the_stream_records_creation_time():
    [event] = events_from_stream_record(record("INSERT", msg(INBOUND)))
    assert event.occurred_at == AT


# ------------------------------------------------------------------ ids


def test_event_ids_are_stable_for_the_same_record():
    one = record("MODIFY", msg(SENT), msg(QUEUED))
    first = [e.id for e in events_from_stream_record(one)]
    again = [e.id for e in events_from_stream_record(json.loads(json.dumps(one)))]
    assert first == again


def test_event_ids_differ_between_event_types_of_one_record():
    events = events_from_stream_record(record("MODIFY", msg(SENT), msg(QUEUED)))
    assert len({e.id for e in events}) == len(events) == 2


def test_event_ids_differ_between_records():
    [one] = events_from_stream_record(record("INSERT", msg(INBOUND), event_id="a" * 32))
    [two] = events_from_stream_record(record("INSERT", msg(INBOUND), event_id="b" * 32))
    assert one.id != two.id


# ------------------------------------------------------------------ customer.erased

ERASURE_RUNNING = {
    "pk": "ERASURE#01J9Z8X7W6V5T4S3R2Q1P0N9MC",
    "sk": "ERASURE",
    "type": "erasure",
    "job_id": "01JA0000000000000000000000",
    "kind": "erasure",
    "customer_id": "01J9Z8X7W6V5T4S3R2Q1P0N9MC",
    "state": "running",
    "mode": "delete",
    "requested_at": "2026-11-23T12:00:00+00:00",
    "started_at": "2026-11-23T12:00:01+00:00",
    "items_done": 0,
}
ERASURE_DONE = {
    **ERASURE_RUNNING,
    "state": "done",
    "completed_at": "2026-11-23T12:00:09+00:00",
    "counts": {"messages": 12, "identities": 2, "objects": 3},
}


def test_an_erasure_is_announced_once_when_its_audit_record_turns_done():
    [event] = events_from_stream_record(record("MODIFY", ERASURE_DONE, ERASURE_RUNNING))
    assert event.type == "customer.erased"
    assert event.customer_id == ERASURE_DONE["customer_id"]
    assert event.erasure.counts == {"messages": 12, "identities": 2, "objects": 3}
    assert event.erasure.job_id == ERASURE_DONE["job_id"]
    assert events_from_stream_record(record("INSERT", {**ERASURE_RUNNING, "state": "queued"})) == []
    assert events_from_stream_record(record("MODIFY", ERASURE_RUNNING, ERASURE_RUNNING)) == []
    assert events_from_stream_record(record("MODIFY", ERASURE_DONE, ERASURE_DONE)) == []


def test_a_close_carries_its_outcome():
    resolved_closing = {**RESOLVED_ITEM}
    [event] = events_from_stream_record(record("MODIFY", resolved_closing, SWITCHED_ITEM))
    assert isinstance(event, ConversationClosed)
    assert event.conversation.resolution == "resolved"
    assert event.conversation.closed_by is not None
    assert (event.conversation.closed_by.role, event.conversation.closed_by.id) == (
        "agent",
        "agent-42",
    )


def test_a_repeat_contact_reopens_the_resolved_conversation_once():
    [event] = events_from_stream_record(record("MODIFY", REOPENED_ITEM, RESOLVED_ITEM))
    assert isinstance(event, ConversationReopened)
    assert event.repeat_conversation_id == "01J9Z8X7W6V5T4S3R2Q1P0N9D2"
    assert event.conversation.repeat_conversation_id == event.repeat_conversation_id
    # Later changes of the same item (a rating, say) do not announce it again.
    later = {**REOPENED_ITEM, "rating": RATING}
    assert [e.type for e in events_from_stream_record(record("MODIFY", later, REOPENED_ITEM))] == [
        "conversation.rated"
    ]


def test_a_rating_is_conversation_rated_once():
    [event] = events_from_stream_record(record("MODIFY", RATED_ITEM, RESOLVED_ITEM))
    assert isinstance(event, ConversationRated)
    assert (event.rating.score, event.rating.channel) == (4, Channel.WHATSAPP)
    assert event.conversation.rating == event.rating
    assert events_from_stream_record(record("MODIFY", RATED_ITEM, RATED_ITEM)) == []


def test_deleted_items_announce_nothing():
    for item in (msg(INBOUND), PROFILE_ITEM, CONVERSATION_ITEM, ERASURE_DONE):
        assert events_from_stream_record(record("REMOVE", None, item)) == []


# ------------------------------------------------------------------ the published shape


def all_events() -> list[Any]:
    records = [
        record("INSERT", msg(INBOUND)),
        record("INSERT", msg(QUEUED)),
        record("INSERT", msg(NOTE)),
        record("MODIFY", msg(SENT), msg(QUEUED)),
        record("INSERT", PROFILE_ITEM),
        record("INSERT", CONVERSATION_ITEM),
        record("MODIFY", SWITCHED_ITEM, CONVERSATION_ITEM),
        record("MODIFY", CLOSED_ITEM, SWITCHED_ITEM),
        record("MODIFY", REOPENED_ITEM, RESOLVED_ITEM),
        record("MODIFY", RATED_ITEM, RESOLVED_ITEM),
        record("MODIFY", ERASURE_DONE, ERASURE_RUNNING),
        # identity linking and merges (tests/unit/test_identity_events.py)
        record("INSERT", LINKED_IDENTITY_ITEM),
        record("MODIFY", MERGED_PROFILE_ITEM, {**MERGED_PROFILE_ITEM, "merge_state": "merging"}),
    ]
    return [e for r in records for e in events_from_stream_record(r)]


EVENTS = all_events()


def test_every_event_type_is_covered():
    assert sorted({e.type for e in EVENTS}) == sorted(
        p.name.removeprefix("event.").removesuffix(".v1.json")
        for p in SCHEMA_DIR.glob("event.*.v1.json")
    )


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_event_validates_against_its_committed_json_schema(event):
    schema = json.loads((SCHEMA_DIR / f"event.{event.type}.v1.json").read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    document = json.loads(event.model_dump_json())
    validator_class(schema, format_checker=validator_class.FORMAT_CHECKER).validate(document)
    assert document["type"] == event.type
    assert {"id", "schema_version", "occurred_at", "customer_id"} <= document.keys()


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_put_events_entry_carries_the_event(event):
    entry = put_events_entry(event, "threadline-dev")
    assert entry["Source"] == "threadline"
    assert entry["DetailType"] == event.type
    assert entry["EventBusName"] == "threadline-dev"
    assert type(event).model_validate_json(entry["Detail"]) == event
    assert json.loads(entry["Detail"])["id"] == event.id


def test_committed_schema_refuses_an_event_that_lost_its_customer():
    [event] = events_from_stream_record(record("INSERT", msg(INBOUND)))
    schema = json.loads((SCHEMA_DIR / "event.message.received.v1.json").read_text(encoding="utf-8"))
    document = json.loads(event.model_dump_json())
    del document["customer_id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
