"""Queueing replies: threadline.outbound_store's decisions against the in-memory fake
of the data-access interface (DynamoDB itself: tests/integration/test_outbound.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit import twilio_payloads as tw
from tests.unit.fake_table import FakeTable
from tests.unit.test_ingest_logic import RAW
from threadline.channels.twilio.messaging import normalize_form
from threadline.dal.base import ConditionCheck, Put, Update
from threadline.outbound import IdempotencyKeyReused, SendMessageRequest
from threadline.outbound_store import OutboundStore
from threadline.schema import Channel, MessageStatus
from threadline.settings import StoreSettings

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def table() -> FakeTable:
    return FakeTable()


@pytest.fixture
def store(table: FakeTable) -> OutboundStore:
    settings = StoreSettings(table_name="threadline", raw_bucket="raw")
    return OutboundStore(settings, data=table, conversation_quiet_period=timedelta(hours=24))


@pytest.fixture
def customer_id(store: OutboundStore) -> str:
    return store.ingest(normalize_form(tw.SMS), RAW, received_at=AT).customer_id


def reply(text: str = "Your order ships today") -> SendMessageRequest:
    return SendMessageRequest.model_validate({"text": text})


def test_a_reply_is_queued_on_the_channel_the_customer_wrote_from(store, table, customer_id):
    message, created = store.queue_message(customer_id, reply(), now=AT + timedelta(minutes=1))

    assert created and message.status is MessageStatus.QUEUED
    assert message.channel is Channel.SMS and str(message.recipient) == f"phone:{tw.CUSTOMER}"
    writes = table.written[-1]
    assert isinstance(writes[0], Put) and writes[0].item["type"] == "message"
    # The profile must still be the customer's own (no merge began), and the open
    # conversation takes the reply, last.
    assert isinstance(writes[1], ConditionCheck)
    assert isinstance(writes[-1], Update) and writes[-1].key[1] == f"CONV#{message.conversation_id}"


def test_the_same_idempotency_key_gives_the_first_message_back(store, table, customer_id):
    first, created = store.queue_message(customer_id, reply(), idempotency_key="k-1", now=AT)
    again, created_again = store.queue_message(customer_id, reply(), idempotency_key="k-1", now=AT)

    assert created and not created_again
    assert again.id == first.id
    assert len(table.of_type("message")) == 2  # the customer's SMS and one reply


def test_an_idempotency_key_reused_for_another_message_is_refused(store, customer_id):
    store.queue_message(customer_id, reply(), idempotency_key="k-2", now=AT)

    with pytest.raises(IdempotencyKeyReused):
        store.queue_message(customer_id, reply("something else"), idempotency_key="k-2", now=AT)
