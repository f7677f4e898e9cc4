"""Stale dispatcher claims: the decision rules (threadline.outbound.stale_claim_verdict)
and the writes the dispatcher plans for each case, against the in-memory fake of the
data-access interface. DynamoDB's own evaluation of the conditions:
tests/integration/test_outbound_claims.py, which kills real worker processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import load_template
from tests.unit.fake_table import FakeTable

# The store over the ``table`` fixture below, and a customer who wrote in by SMS.
from tests.unit.test_outbound_logic import customer_id, store  # noqa: F401
from threadline.channels.base import SendResult
from threadline.dal.base import Update, Write, WriteCancelled
from threadline.items import customer_pk, message_sk
from threadline.outbound import (
    DEFAULT_CLAIM_TIMEOUT,
    SEND_OUTCOME_UNKNOWN,
    ClaimVerdict,
    Dispatcher,
    DispatchOutcome,
    RetryLater,
    SendMessageRequest,
    stale_claim_verdict,
)
from threadline.outbound_store import OutboundStore
from threadline.schema import Channel, Message

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=20)
STALE = AT + TIMEOUT + timedelta(seconds=1)


def claim_item(
    state: str | None,
    *,
    started: datetime | None = AT,
    calling: datetime | None = None,
    status: str = "queued",
    channel: str = "sms",
    attempts: int = 1,
) -> dict[str, Any]:
    item: dict[str, Any] = {"status": status, "channel": channel, "dispatch_attempts": attempts}
    if state is not None:
        item["dispatch_state"] = state
    if started is not None:
        item["dispatch_started_at"] = started.isoformat()
    if calling is not None:
        item["provider_call_at"] = calling.isoformat()
    return item


# ------------------------------------------------------------ the decision rules


def test_a_fresh_claim_is_in_flight_until_it_goes_stale():
    verdict, wait = stale_claim_verdict(claim_item("sending"), AT + timedelta(seconds=5), TIMEOUT)
    assert verdict is ClaimVerdict.IN_FLIGHT
    assert wait == pytest.approx(15.0)


def test_a_fresh_calling_claim_is_in_flight_counted_from_the_provider_call():
    item = claim_item("calling", calling=AT + timedelta(seconds=8))
    verdict, wait = stale_claim_verdict(item, AT + timedelta(seconds=10), TIMEOUT)
    assert verdict is ClaimVerdict.IN_FLIGHT
    assert wait == pytest.approx(18.0)


def test_a_stale_claim_that_never_called_the_provider_is_sent_again():
    assert stale_claim_verdict(claim_item("sending"), STALE, TIMEOUT)[0] is ClaimVerdict.RESEND


def test_a_stale_calling_claim_has_an_unknown_outcome():
    item = claim_item("calling", calling=AT)
    assert stale_claim_verdict(item, STALE, TIMEOUT)[0] is ClaimVerdict.UNKNOWN


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "email", "telegram", "slack", "messenger"])
def test_no_provider_without_idempotency_is_called_twice(channel):
    item = claim_item("calling", calling=AT, channel=channel)
    assert stale_claim_verdict(item, STALE, TIMEOUT)[0] is ClaimVerdict.UNKNOWN


def test_a_stale_web_chat_push_is_repeated_the_widget_shows_it_once():
    item = claim_item("calling", calling=AT, channel="webchat")
    assert stale_claim_verdict(item, STALE, TIMEOUT)[0] is ClaimVerdict.RESEND


@pytest.mark.parametrize(
    ("status", "state"), [("sent", "done"), ("failed", "done"), ("delivered", "calling")]
)
def test_a_dispatched_message_is_left_alone(status, state):
    item = claim_item(state, calling=AT, status=status)
    assert stale_claim_verdict(item, STALE, TIMEOUT)[0] is ClaimVerdict.DONE


def test_a_claim_released_for_retry_meanwhile_is_claimed_again():
    verdict, _ = stale_claim_verdict(claim_item("retry"), AT, TIMEOUT)
    assert verdict is ClaimVerdict.RESEND


def test_the_claim_timeout_is_twice_the_dispatchers_and_below_the_queues_visibility():
    template = load_template()
    function_timeout = template["Globals"]["Function"]["Timeout"]
    dispatcher = template["Resources"]["DispatcherFunction"]["Properties"]
    setting = float(dispatcher["Environment"]["Variables"]["DISPATCH_CLAIM_TIMEOUT_SECONDS"])
    visibility = template["Resources"]["DispatchQueue"]["Properties"]["VisibilityTimeout"]
    assert setting == 2 * function_timeout == DEFAULT_CLAIM_TIMEOUT.total_seconds()
    # A job a dead worker held comes back after the visibility timeout: by then its
    # claim is stale and resolved on that delivery.
    assert setting < visibility


# ------------------------------------------------------------ the dispatcher's writes


class ClaimedTable(FakeTable):
    """The fake, refusing the dispatcher's first claim of a message that already has
    a dispatch state (what DynamoDB's condition does; the fake applies no updates)."""

    def write(self, writes: list[Write]) -> None:  # type: ignore[override]
        for write in writes:
            if isinstance(write, Update) and "dispatch_state = :retry" in (write.condition or ""):
                item = self.items.get(write.key) or {}
                if item.get("dispatch_state") not in (None, "retry"):
                    raise WriteCancelled(["ConditionalCheckFailed"], [None])
        super().write(writes)


class RecordingSender:
    provider = "twilio"

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        return SendResult(provider_message_id=f"SM{len(self.sent):032d}")


@pytest.fixture
def table() -> ClaimedTable:
    return ClaimedTable()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def dispatcher(store: OutboundStore, sender: RecordingSender) -> Dispatcher:  # noqa: F811
    return Dispatcher(store, {Channel.SMS: sender}, claim_timeout=TIMEOUT)


@pytest.fixture
def reply(store: OutboundStore, customer_id: str) -> Message:  # noqa: F811
    request = SendMessageRequest.model_validate({"text": "Your order ships today"})
    message, _ = store.queue_message(customer_id, request, now=AT)
    return message


def claim_as(table: ClaimedTable, reply: Message, **claim: Any) -> None:
    table.items[(customer_pk(reply.customer_id), message_sk(reply.id))].update(claim)


def updates_after(table: FakeTable, mark: int) -> list[Update]:
    return [w for writes in table.written[mark:] for w in writes if isinstance(w, Update)]


def test_an_unclaimed_reply_is_marked_calling_before_the_provider_is_called(
    dispatcher, table, sender, reply
):
    mark = len(table.written)
    assert dispatcher.dispatch(reply.customer_id, reply.id, now=AT) is DispatchOutcome.SENT
    claim, calling, *_ = updates_after(table, mark)
    assert "dispatch_state = :sending" in claim.expression
    assert calling.values[":calling"] == "calling"
    assert calling.values[":now"] == AT.isoformat()
    # Only the claim's owner (its attempt count) may mark the call.
    assert calling.condition == "dispatch_state = :sending AND dispatch_attempts = :token"
    assert len(sender.sent) == 1


def test_a_fresh_claim_sends_nothing_and_brings_the_job_back_when_it_goes_stale(
    dispatcher, table, sender, reply
):
    claim_as(table, reply, dispatch_state="sending", dispatch_started_at=AT.isoformat())
    mark = len(table.written)
    with pytest.raises(RetryLater) as retry:
        dispatcher.dispatch(reply.customer_id, reply.id, now=AT + timedelta(seconds=4))
    assert retry.value.delay == pytest.approx(16.0)
    assert sender.sent == [] and updates_after(table, mark) == []


def test_a_stale_claim_that_never_called_the_provider_is_reclaimed_and_sent(
    dispatcher, table, sender, reply
):
    claim_as(
        table,
        reply,
        dispatch_state="sending",
        dispatch_started_at=AT.isoformat(),
        dispatch_attempts=1,
    )
    mark = len(table.written)
    assert dispatcher.dispatch(reply.customer_id, reply.id, now=STALE) is DispatchOutcome.SENT
    reclaim = updates_after(table, mark)[0]
    # Taken over only if nobody claimed it since it was read.
    assert reclaim.values[":seen_state"] == "sending"
    assert reclaim.values[":seen_attempts"] == 1
    assert "REMOVE provider_call_at" in reclaim.expression
    assert [m.id for m in sender.sent] == [reply.id]


def test_a_stale_calling_claim_fails_with_send_outcome_unknown_and_sends_nothing(
    dispatcher, table, sender, reply, caplog
):
    claim_as(
        table,
        reply,
        dispatch_state="calling",
        dispatch_started_at=AT.isoformat(),
        provider_call_at=AT.isoformat(),
        dispatch_attempts=3,
    )
    mark = len(table.written)
    assert dispatcher.dispatch(reply.customer_id, reply.id, now=STALE) is DispatchOutcome.FAILED
    (failed,) = updates_after(table, mark)
    assert failed.values[":failed"] == "failed"
    (change,) = failed.values[":change"]
    assert change["error_code"] == SEND_OUTCOME_UNKNOWN
    # Fenced by the claim it read: a concurrent attempt's resolution wins alone.
    assert "dispatch_state = :calling AND dispatch_attempts = :token" in str(failed.condition)
    assert failed.values[":token"] == 3
    assert sender.sent == []


def test_a_sent_reply_is_left_alone(dispatcher, table, sender, reply):
    claim_as(table, reply, status="sent", dispatch_state="done", provider_call_at=AT.isoformat())
    mark = len(table.written)
    assert dispatcher.dispatch(reply.customer_id, reply.id, now=STALE) is DispatchOutcome.SKIPPED
    assert sender.sent == [] and updates_after(table, mark) == []
