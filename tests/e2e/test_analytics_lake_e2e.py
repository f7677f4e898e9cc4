"""The local stack writes every published event to its analytics lake, in the layout
Firehose writes to S3, and the report reads it."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from tests.e2e.test_outbound_e2e import (
    api,
    customer_of,
    events,
    eventually,
    inbound,
    schema_validator,
)
from threadline_analytics.lake import LakeWriter
from threadline_analytics.report import compute

pytestmark = pytest.mark.e2e


def _lake_events(lake, customer_id):
    found = []
    for path in sorted(lake.glob("events/dt=*/*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                event = json.loads(line)
                if event.get("customer_id") == customer_id:
                    found.append((path.parent.name, event))
    return found


def test_published_events_land_in_the_lake_and_the_report_counts_them(local_stack):
    lake = local_stack.lake_dir
    number = "+15551460001"
    inbound(local_stack, number, "Where is my order?")
    customer_id = customer_of(local_stack, number)
    inbound(local_stack, number, "Now on WhatsApp", whatsapp=True)
    [opened] = eventually(
        lambda: events(local_stack, type="conversation.opened", customer_id=customer_id),
        "conversation.opened",
    )
    conversation_id = opened["detail"]["conversation"]["id"]
    closing = api(local_stack, "POST", f"/v1/conversations/{conversation_id}/close")
    assert closing.status_code == 200, closing.text
    eventually(
        lambda: events(local_stack, type="conversation.closed", customer_id=customer_id),
        "conversation.closed",
    )

    published = [e["detail"] for e in events(local_stack, customer_id=customer_id)]
    landed = eventually(
        lambda: found if len(found := _lake_events(lake, customer_id)) >= len(published) else None,
        "the customer's events in the lake",
    )
    # Exactly what subscribers got (the envelope's detail), each in its day's partition.
    assert sorted(e["id"] for _, e in landed) == sorted(e["id"] for e in published)
    for partition, event in landed:
        assert partition == f"dt={event['occurred_at'][:10]}"

    today = datetime.now(UTC).date()
    volume = {
        r["channel"]: r
        for result in compute(lake, start=today, end=today)
        if result.metric.name == "volume"
        for r in result.records()
    }
    assert volume["sms"]["inbound"] >= 1 and volume["whatsapp"]["inbound"] >= 1


def test_a_repeat_contact_after_a_resolved_close_is_published_and_counted(local_stack, tmp_path):
    number = "+15551460003"
    inbound(local_stack, number, "My card was charged twice")
    customer_id = customer_of(local_stack, number)
    [opened] = eventually(
        lambda: events(local_stack, type="conversation.opened", customer_id=customer_id),
        "conversation.opened",
    )
    first_id = opened["detail"]["conversation"]["id"]
    closing = api(
        local_stack,
        "POST",
        f"/v1/conversations/{first_id}/close",
        json={"resolution": "resolved", "agent_id": "agent-9"},
    )
    assert closing.status_code == 200, closing.text
    # Back the same day on WhatsApp: within the 72-hour window of a resolved close.
    inbound(local_stack, number, "It happened again", whatsapp=True)
    [reopened] = eventually(
        lambda: events(local_stack, type="conversation.reopened", customer_id=customer_id),
        "conversation.reopened",
    )
    detail = reopened["detail"]
    assert detail["conversation"]["id"] == first_id
    assert detail["conversation"]["resolution"] == "resolved"
    assert detail["conversation"]["closed_by"] == {"role": "agent", "id": "agent-9"}
    second_id = detail["repeat_conversation_id"]
    assert second_id != first_id
    second = api(local_stack, "GET", f"/v1/conversations/{second_id}").json()
    assert second["previous_conversation_id"] == first_id
    for event in events(local_stack, customer_id=customer_id):
        schema = schema_validator(event["detail-type"])
        assert not list(schema.iter_errors(event["detail"])), event["detail-type"]

    # This customer's lake lines alone: one close, resolved, then reopened: FCR 0 of 1.
    published = events(local_stack, customer_id=customer_id)
    landed = eventually(
        lambda: (
            found
            if len(found := _lake_events(local_stack.lake_dir, customer_id)) >= len(published)
            else None
        ),
        "the customer's events in the lake",
    )
    own_lake = tmp_path / "lake"
    LakeWriter(own_lake).write(event for _, event in landed)
    [fcr] = next(
        r for r in compute(own_lake) if r.metric.name == "first_contact_resolution"
    ).records()
    assert (fcr["closed_conversations"], fcr["resolved"], fcr["reopened"]) == (1, 1, 1)
    assert fcr["resolved_first_contact"] == 0
