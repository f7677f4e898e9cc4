"""Conversations and the event catalog end to end over HTTP on the local stack.

A customer writes by SMS, then on WhatsApp from the same number (one phone identity,
two channels); an agent replies, the provider reports delivery, the agent closes
the conversation through the API. Every event the stack's own publisher put on the
bus for that customer is read back from /_dev/events and validated against the JSON
Schemas committed in infra/schemas.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_outbound_e2e import (
    ACCOUNT_SID,
    SMS_FROM,
    api,
    customer_of,
    events,
    eventually,
    form_of,
    inbound,
    outbox,
    queue_reply,
    reaches,
    schema_validator,
    signed_post,
)

pytestmark = pytest.mark.e2e

CATALOG = (
    "message.received",
    "message.queued",
    "message.sent",
    "message.status_changed",
    "customer.created",
    "conversation.opened",
    "conversation.channel_switched",
    "conversation.closed",
)


def _one(stack: Any, event_type: str, customer_id: str) -> dict[str, Any]:
    (event,) = eventually(
        lambda: events(stack, type=event_type, customer_id=customer_id), f"{event_type} event"
    )
    return dict(event)


def test_sms_then_whatsapp_switches_channel_and_closing_publishes_the_metrics(local_stack):
    number = "+15551260001"
    inbound(local_stack, number, "My parcel is late")
    customer_id = customer_of(local_stack, number)
    inbound(local_stack, number, "Writing from WhatsApp now", whatsapp=True)

    switched = _one(local_stack, "conversation.channel_switched", customer_id)["detail"]
    assert (switched["from_channel"], switched["to_channel"]) == ("sms", "whatsapp")
    conversation_id = switched["conversation"]["id"]
    opened = _one(local_stack, "conversation.opened", customer_id)["detail"]
    assert opened["conversation"]["id"] == conversation_id

    message_id = queue_reply(local_stack, customer_id, {"text": "Sorry! It ships today."})
    sid = reaches(local_stack, customer_id, message_id, "sent")["provider_message_id"]
    # The reply goes out on the channel the customer last wrote on.
    (request,) = outbox(local_stack, f"whatsapp:{number}")
    callback = form_of(request)["StatusCallback"]
    delivered = {
        "MessageSid": sid,
        "MessageStatus": "delivered",
        "AccountSid": ACCOUNT_SID,
        "From": SMS_FROM,
        "To": f"whatsapp:{number}",
    }
    assert signed_post(local_stack, callback, delivered).status_code == 200
    reaches(local_stack, customer_id, message_id, "delivered")

    closing = api(local_stack, "POST", f"/v1/conversations/{conversation_id}/close")
    assert closing.status_code == 200, closing.text
    assert closing.json()["state"] == "closed"
    again = api(local_stack, "POST", f"/v1/conversations/{conversation_id}/close")
    assert again.json() == closing.json()

    closed = _one(local_stack, "conversation.closed", customer_id)["detail"]
    assert closed["conversation"] == closing.json()
    metrics = closed["conversation"]["metrics"]
    assert metrics["channels_used"] == ["sms", "whatsapp"]
    assert metrics["channel_switches"] == 1
    assert metrics["messages"] == {"customer": 2, "agent": 1, "bot": 0, "system": 0}
    assert metrics["first_response_seconds"] >= 0
    assert metrics["time_to_close_seconds"] >= metrics["first_response_seconds"]
    assert closed["conversation"]["close_reason"] == "api"

    listed = api(local_stack, "GET", f"/v1/customers/{customer_id}/conversations")
    assert listed.status_code == 200
    assert listed.json()["items"] == [closing.json()]

    # Every event of this customer, as EventBridge delivered it, against its schema.
    found = events(local_stack, customer_id=customer_id)
    assert {e["detail-type"] for e in found} == set(CATALOG)
    for event in found:
        detail = event["detail"]
        assert detail["type"] == event["detail-type"]
        assert event["source"] == "threadline"
        errors = sorted(schema_validator(event["detail-type"]).iter_errors(detail), key=str)
        assert not errors, (event["detail-type"], [e.message for e in errors])
    # One event per change: ids are unique.
    assert len({e["detail"]["id"] for e in found}) == len(found)
