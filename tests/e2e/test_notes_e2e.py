"""Agent notes end to end over HTTP on the local stack: a note on a customer's
conversation is on the timeline and published as message.note_added, and only the
agent's reply queued after it reaches the provider."""

from __future__ import annotations

import pytest

from tests.e2e.test_outbound_e2e import (
    api,
    customer_of,
    events,
    eventually,
    form_of,
    inbound,
    message,
    outbox,
    queue_reply,
    schema_validator,
)

pytestmark = pytest.mark.e2e


def test_a_note_is_on_the_timeline_published_and_never_sent(local_stack):
    number = "+15551380001"
    inbound(local_stack, number, "Can I change my delivery address?")
    customer_id = customer_of(local_stack, number)
    conversation_id = api(local_stack, "GET", f"/v1/customers/{customer_id}/conversations").json()[
        "items"
    ][0]["id"]

    created = api(
        local_stack,
        "POST",
        f"/v1/conversations/{conversation_id}/notes",
        json={"text": "Address change needs a supervisor", "agent_id": "agent-9"},
        headers={"Idempotency-Key": "e2e-note-1"},
    )
    assert created.status_code == 201, created.text
    note = created.json()
    assert (note["direction"], note["author_role"]) == ("internal", "agent")
    reply_id = queue_reply(local_stack, customer_id, {"text": "Yes: which address?"})

    (published,) = eventually(
        lambda: events(local_stack, type="message.note_added", customer_id=customer_id),
        "message.note_added event",
    )
    schema_validator("message.note_added").validate(published["detail"])
    assert published["detail"]["message"]["id"] == note["id"]
    sent = eventually(
        lambda: (m := message(local_stack, customer_id, reply_id)) and m["status"] == "sent" and m,
        "the reply sent",
    )
    assert sent["id"] == reply_id
    # Only the reply went out: the note never reached the provider.
    assert [form_of(e)["Body"] for e in outbox(local_stack, number)] == ["Yes: which address?"]
    stored = message(local_stack, customer_id, note["id"])
    assert stored is not None and stored["status"] == "received"
    queued = events(local_stack, type="message.queued", customer_id=customer_id)
    assert [e["detail"]["message"]["id"] for e in queued] == [reply_id]
