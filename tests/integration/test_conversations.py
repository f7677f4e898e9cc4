"""Conversations against DynamoDB in moto server: opened, continued across channels and
identities, closed by the quiet period (sweeper or next message) and through the API.

Messages go in through the real Twilio handler where a channel has one; messages of
other identities of one customer (e-mail, Slack with that confirmed e-mail) go in
through ``TimelineStore.ingest``, the call every channel handler makes, so a test can
set their time.
"""

from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import load_handler_module
from tests.integration.conftest import LambdaContext, http_api_event
from tests.integration.test_twilio_ingest import sms, whatsapp
from threadline.channels.base import InboundMessage
from threadline.channels.twilio.messaging import normalize_form
from threadline.conversations import DUE_INDEX, close_bucket
from threadline.outbound import SendMessageRequest
from threadline.schema import Channel, Identity, TextPart, utc_now
from threadline.store import KeptRaw, RawPayloadRef

QUIET = timedelta(hours=24)
RAW = KeptRaw(
    ref=RawPayloadRef(location="inline", content_type="application/json", size=2, sha256="0" * 64),
    inline="{}",
)


@pytest.fixture
def api_post(api_module):
    def post(path: str, body: Any = None) -> dict[str, Any]:
        event = http_api_event("POST", path, headers={"content-type": "application/json"})
        event["isBase64Encoded"] = False
        event["body"] = json.dumps(body) if body is not None else ""
        event["routeKey"] = "ANY /v1/{proxy+}"
        return api_module.lambda_handler(event, LambdaContext())

    return post


@pytest.fixture(scope="module")
def sweeper_module(function_env, aws_env):
    import os

    os.environ.update(function_env("ConversationSweeperFunction"))
    return load_handler_module("functions/conversation_sweeper")


def new_number() -> str:
    return "+1555" + str(secrets.randbelow(10**7)).zfill(7)


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def customer_id_of(api_get, identity: str) -> str:
    response = api_get("/v1/customers", {"identity": identity})
    assert response["statusCode"] == 200, response
    return str(body(response)["id"])


def conversations_of(api_get, customer_id: str, **query: str) -> dict[str, Any]:
    response = api_get(f"/v1/customers/{customer_id}/conversations", query)
    assert response["statusCode"] == 200, response
    return dict(body(response))


def conversation(api_get, conversation_id: str) -> dict[str, Any]:
    response = api_get(f"/v1/conversations/{conversation_id}")
    assert response["statusCode"] == 200, response
    return dict(body(response))


def profile_pointer(aws, customer_id: str) -> str | None:
    item = aws.dynamodb.get_item(
        TableName=aws.table,
        Key={"pk": {"S": f"CUST#{customer_id}"}, "sk": {"S": "PROFILE"}},
        ConsistentRead=True,
    )["Item"]
    return item.get("open_conversation_id", {}).get("S")


def email_message(address: str, text: str = "Hello") -> InboundMessage:
    return InboundMessage(
        channel=Channel.EMAIL,
        provider="ses",
        provider_message_id=f"<{secrets.token_hex(8)}@mail.example.com>",
        sender=Identity.parse(f"email:{address}"),
        recipient=Identity.parse("email:support@threadline.example"),
        parts=[TextPart(text=text)],
    )


def slack_message(user: str, address: str, text: str = "Hi on Slack") -> InboundMessage:
    return InboundMessage(
        channel=Channel.SLACK,
        provider="slack",
        provider_message_id=f"T0001:C0001:{secrets.randbelow(10**9)}.000100",
        sender=Identity.parse(f"slack:T0001:{user}"),
        parts=[TextPart(text=text)],
        verified_identities=[Identity.parse(f"email:{address}")],
    )


# ------------------------------------------------------------------ across channels


def test_sms_then_whatsapp_is_one_conversation_with_a_channel_switch(
    twilio_post, api_get, count_aws_calls
):
    number = new_number()
    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    customer_id = customer_id_of(api_get, f"phone:{number}")
    with count_aws_calls() as calls:
        assert twilio_post(whatsapp(new_sid(), sender=number))["statusCode"] == 200
    # The conversation touch (and the switch) rode in the message's one transaction.
    assert calls == ["dynamodb.GetItem", "dynamodb.TransactWriteItems"]
    assert twilio_post(whatsapp(new_sid(), sender=number))["statusCode"] == 200

    (listed,) = conversations_of(api_get, customer_id)["items"]
    found = conversation(api_get, listed["id"])
    assert found == listed
    assert found["state"] == "open"
    assert found["customer_id"] == customer_id
    assert found["last_channel"] == "whatsapp"
    assert found["message_count"] == 3
    metrics = found["metrics"]
    assert metrics["channels_used"] == ["sms", "whatsapp"]
    assert metrics["channel_switches"] == 1
    assert metrics["messages"] == {"customer": 3, "agent": 0, "bot": 0, "system": 0}
    assert metrics["first_response_seconds"] is None
    timeline = body(api_get(f"/v1/customers/{customer_id}/timeline"))["items"]
    assert {m["conversation_id"] for m in timeline} == {found["id"]}


def test_a_conversation_continues_across_identities_of_one_customer(
    twilio_module, api_get, count_aws_calls
):
    """E-mail, then Slack (linked by the confirmed e-mail), then e-mail again."""
    store = twilio_module.store
    address = f"ana.{secrets.token_hex(4)}@example.com"
    user = "U" + secrets.token_hex(4).upper()
    first = store.ingest(email_message(address), RAW)
    second = store.ingest(slack_message(user, address), RAW)
    # The e-mail identity's hint still says "e-mail was last": its condition fails,
    # the store re-reads the conversation and records the switch back.
    with count_aws_calls() as calls:
        third = store.ingest(email_message(address, "and by mail again"), RAW)
    assert calls == [
        "dynamodb.GetItem",  # identity
        "dynamodb.TransactWriteItems",  # cancelled: the hint was stale
        "dynamodb.GetItem",  # identity again
        "dynamodb.GetItem",  # profile: open_conversation_id
        "dynamodb.GetItem",  # the conversation
        "dynamodb.TransactWriteItems",
    ]
    assert first.customer_id == second.customer_id == third.customer_id
    assert second.identity_linked

    (found,) = conversations_of(api_get, first.customer_id)["items"]
    assert found["metrics"]["channels_used"] == ["email", "slack"]
    assert found["metrics"]["channel_switches"] == 2
    assert found["message_count"] == 3
    assert found["last_channel"] == "email"


def test_concurrent_messages_from_two_identities_after_the_quiet_period_open_one_conversation(
    twilio_module, api_get, aws
):
    store = twilio_module.store
    address = f"bo.{secrets.token_hex(4)}@example.com"
    user = "U" + secrets.token_hex(4).upper()
    long_ago = utc_now() - timedelta(hours=30)
    first = store.ingest(email_message(address), RAW, received_at=long_ago)
    store.ingest(slack_message(user, address), RAW, received_at=long_ago)
    start = threading.Barrier(6)

    def send(index: int) -> str:
        start.wait()
        inbound = (
            email_message(address, f"mail {index}")
            if index % 2
            else slack_message(user, address, f"slack {index}")
        )
        return store.ingest(inbound, RAW).message_id

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = set(pool.map(send, range(6)))

    page = conversations_of(api_get, first.customer_id)["items"]
    opened = [c for c in page if c["state"] == "open"]
    assert len(page) == 2 and len(opened) == 1
    assert opened[0]["message_count"] == 6
    assert profile_pointer(aws, first.customer_id) == opened[0]["id"]
    timeline = body(api_get(f"/v1/customers/{first.customer_id}/timeline"))["items"]
    assert {m["conversation_id"] for m in timeline if m["id"] in ids} == {opened[0]["id"]}


# ------------------------------------------------------------------ the quiet period


def test_a_message_after_the_quiet_period_closes_the_old_conversation_and_opens_one(
    twilio_module, api_get, aws, count_aws_calls
):
    store = twilio_module.store
    number = new_number()
    long_ago = utc_now() - timedelta(hours=30)
    old = store.ingest(normalize_form(sms(new_sid(), sender=number)), RAW, received_at=long_ago)
    with count_aws_calls() as calls:
        new = store.ingest(normalize_form(sms(new_sid(), sender=number)), RAW)
    # A new conversation also reads the previous one (a repeat contact?): one Query per
    # opened conversation, none per message that joins one.
    assert calls == ["dynamodb.GetItem", "dynamodb.TransactWriteItems", "dynamodb.Query"]

    newer, older = conversations_of(api_get, old.customer_id)["items"]
    assert newer["state"] == "open"
    assert older["state"] == "closed"
    assert older["close_reason"] == "quiet_period"
    # The customer had the last word: abandoned, so the new one is no repeat contact.
    assert (older["resolution"], older["closed_by"]) == (
        "abandoned",
        {"role": "system", "id": None},
    )
    assert newer["previous_conversation_id"] is None
    # Closed when its quiet period ended, not when the next message happened to come.
    assert older["closed_at"] == (long_ago + QUIET).isoformat().replace("+00:00", "Z")
    assert older["metrics"]["time_to_close_seconds"] == QUIET.total_seconds()
    assert profile_pointer(aws, new.customer_id) == newer["id"]


def test_the_sweeper_closes_conversations_whose_quiet_period_ended(
    twilio_module, sweeper_module, api_get, aws
):
    store = twilio_module.store
    quiet_number, busy_number = new_number(), new_number()
    long_ago = utc_now() - timedelta(hours=25)
    quiet = store.ingest(
        normalize_form(sms(new_sid(), sender=quiet_number)), RAW, received_at=long_ago
    )
    busy = store.ingest(normalize_form(sms(new_sid(), sender=busy_number)), RAW)

    result = sweeper_module.lambda_handler({"source": "aws.events"}, LambdaContext())
    assert result["closed"] >= 1

    (closed,) = conversations_of(api_get, quiet.customer_id)["items"]
    assert closed["state"] == "closed"
    assert closed["close_reason"] == "quiet_period"
    assert closed["closed_at"] == (long_ago + QUIET).isoformat().replace("+00:00", "Z")
    assert profile_pointer(aws, quiet.customer_id) is None
    (still_open,) = conversations_of(api_get, busy.customer_id)["items"]
    assert still_open["state"] == "open"
    # Closed conversations leave the sparse index: the next sweep finds nothing of it.
    hour = (long_ago + QUIET).replace(minute=0)
    due = aws.dynamodb.query(
        TableName=aws.table,
        IndexName=DUE_INDEX,
        KeyConditionExpression="close_bucket = :b",
        ExpressionAttributeValues={":b": {"S": close_bucket(hour)}},
    )["Items"]
    assert f"CONV#{closed['id']}" not in {i["sk"]["S"] for i in due}

    # The customer's next message opens a new conversation, still in two calls.
    again = store.ingest(normalize_form(sms(new_sid(), sender=quiet_number)), RAW)
    newer, older = conversations_of(api_get, again.customer_id)["items"]
    assert (newer["state"], older["id"]) == ("open", closed["id"])
    assert conversation(api_get, older["id"])["closed_at"] == closed["closed_at"]


def test_the_sweeper_leaves_a_conversation_that_got_a_message_after_the_index_was_read(
    twilio_module, api_get
):
    store = twilio_module.store
    number = new_number()
    long_ago = utc_now() - timedelta(hours=25)
    first = store.ingest(normalize_form(sms(new_sid(), sender=number)), RAW, received_at=long_ago)
    (seen,) = store._due_in(close_bucket(long_ago + QUIET), "9999")  # what the sweeper read
    # A message arrives 23 hours after the first: within the quiet period.
    store.ingest(
        normalize_form(sms(new_sid(), sender=number)),
        RAW,
        received_at=long_ago + timedelta(hours=23),
    )
    customer_id = str(seen["pk"]).removeprefix("CUST#")
    conversation_id = str(seen["sk"]).removeprefix("CONV#")
    closed = store._close(
        customer_id,
        conversation_id,
        closed_at=long_ago + QUIET,
        reason="quiet_period",
        condition="#state = :open AND close_due_at = :due",
        values={":due": seen["close_due_at"]},
    )
    assert closed is False
    assert conversation(api_get, conversation_id)["state"] == "open"
    assert customer_id == first.customer_id


# ------------------------------------------------------------------ the API


def test_closing_through_the_api_is_idempotent_and_the_next_message_opens_a_new_one(
    twilio_post, api_get, api_post, aws
):
    number = new_number()
    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    customer_id = customer_id_of(api_get, f"phone:{number}")
    reply = api_post(f"/v1/customers/{customer_id}/messages", {"text": "On it", "author_id": "a1"})
    assert reply["statusCode"] == 202, reply
    (opened,) = conversations_of(api_get, customer_id)["items"]
    assert body(reply)["conversation_id"] == opened["id"]
    assert opened["metrics"]["messages"]["agent"] == 1
    assert opened["metrics"]["first_response_seconds"] >= 0

    first = api_post(f"/v1/conversations/{opened['id']}/close")
    assert first["statusCode"] == 200, first
    closed = body(first)
    assert closed["state"] == "closed"
    assert closed["close_reason"] == "api"
    assert closed["metrics"]["time_to_close_seconds"] >= 0
    assert profile_pointer(aws, customer_id) is None
    second = api_post(f"/v1/conversations/{opened['id']}/close")
    assert second["statusCode"] == 200
    assert body(second) == closed

    # Closed without a body: resolved, by an agent the CRM did not name.
    assert (closed["resolution"], closed["closed_by"]) == (
        "resolved",
        {"role": "agent", "id": None},
    )

    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    newer, older = conversations_of(api_get, customer_id)["items"]
    assert newer["state"] == "open" and newer["id"] != opened["id"]
    # Back within the repeat window after a resolved close: a repeat contact.
    assert older == {**closed, "repeat_conversation_id": newer["id"]}
    assert newer["previous_conversation_id"] == opened["id"]


def test_an_api_close_records_the_outcome_and_the_agent(twilio_post, api_get, api_post):
    number = new_number()
    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    customer_id = customer_id_of(api_get, f"phone:{number}")
    (opened,) = conversations_of(api_get, customer_id)["items"]
    path = f"/v1/conversations/{opened['id']}/close"

    refused = api_post(path, {"resolution": "fixed"})
    assert refused["statusCode"] == 400
    assert body(refused)["error"]["code"] == "invalid_close"
    closing = api_post(path, {"resolution": "unresolved", "agent_id": "agent-7"})
    assert closing["statusCode"] == 200, closing
    closed = body(closing)
    assert (closed["resolution"], closed["closed_by"]) == (
        "unresolved",
        {"role": "agent", "id": "agent-7"},
    )
    # Not resolved: the customer's next message is no repeat contact.
    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    newer, older = conversations_of(api_get, customer_id)["items"]
    assert newer["previous_conversation_id"] is None
    assert older["repeat_conversation_id"] is None


def test_a_quiet_close_after_the_agent_answered_is_resolved_and_later_is_no_repeat(
    twilio_module, api_module, api_get
):
    store = twilio_module.store
    number = new_number()
    # The customer wrote 5 days ago and the agent answered last; the quiet period
    # closed it 4 days ago: resolved, but outside the 72-hour repeat window.
    long_ago = utc_now() - timedelta(days=5)
    first = store.ingest(normalize_form(sms(new_sid(), sender=number)), RAW, received_at=long_ago)
    api_module.store.queue_message(
        first.customer_id, SendMessageRequest(text="Done!"), now=long_ago + timedelta(minutes=5)
    )
    store.ingest(normalize_form(sms(new_sid(), sender=number)), RAW)
    newer, older = conversations_of(api_get, first.customer_id)["items"]
    assert (older["resolution"], older["closed_by"]["role"]) == ("resolved", "system")
    assert newer["previous_conversation_id"] is None
    assert older["repeat_conversation_id"] is None


def test_unknown_conversations_are_404(api_get, api_post):
    assert api_get("/v1/conversations/01NOSUCHCONVERSATION000000")["statusCode"] == 404
    response = api_post("/v1/conversations/01NOSUCHCONVERSATION000000/close")
    assert response["statusCode"] == 404
    assert body(response)["error"]["code"] == "not_found"
    missing = api_get("/v1/customers/01NOSUCHCUSTOMER00000000000/conversations")
    assert missing["statusCode"] == 404


def test_conversations_page_newest_first_with_a_cursor(twilio_module, api_get):
    store = twilio_module.store
    number = new_number()
    start = utc_now() - timedelta(days=10)
    results = [
        store.ingest(
            normalize_form(sms(new_sid(), sender=number)), RAW, received_at=start + QUIET * 2 * i
        )
        for i in range(5)
    ]
    customer_id = results[0].customer_id
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        page = conversations_of(
            api_get, customer_id, limit="2", **({"cursor": cursor} if cursor else {})
        )
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5
    assert [c["opened_at"] for c in seen] == sorted((c["opened_at"] for c in seen), reverse=True)
    assert [c["state"] for c in seen] == ["open"] + ["closed"] * 4
    path = f"/v1/customers/{customer_id}/conversations"
    timeline_cursor = body(api_get(f"/v1/customers/{customer_id}/timeline", {"limit": "1"}))
    forged = api_get(path, {"cursor": timeline_cursor["next_cursor"]})
    assert forged["statusCode"] == 400
    assert api_get(path, {"limit": "0"})["statusCode"] == 400
