"""A demo and test scenario: the events threadline publishes for it (the lake's lines).

One customer: chats on SMS, then e-mails in the same conversation (A, resolved on
first contact, rated 5 on e-mail); e-mails again the next day (B, resolved, rated 2 on
e-mail); writes on WhatsApp four hours after B closed (C, a repeat contact: B is
reopened) and goes quiet after the agent's answer with the last word (C abandoned).
Every event is delivered twice once (at-least-once delivery), as the bus may.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

CUSTOMER = "01JCUSTOMER0000000000000001"
AGENT = "agent-7"
QUIET = timedelta(hours=24)
_ids = itertools.count(1)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(event_type: str, at: datetime, **body: Any) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "id": f"ev{next(_ids):04d}",
        "type": event_type,
        "occurred_at": _iso(at),
        "customer_id": CUSTOMER,
        **body,
    }


def _message(kind: str, conversation: str, channel: str, at: datetime, role: str) -> dict[str, Any]:
    inbound = kind == "message.received"
    return _event(
        kind,
        at,
        message={
            "schema_version": "1",
            "id": f"msg{next(_ids):04d}",
            "customer_id": CUSTOMER,
            "conversation_id": conversation,
            "channel": channel,
            "direction": "inbound" if inbound else "outbound",
            "author_role": role,
            "provider": "ses" if channel == "email" else "twilio",
            "provider_message_id": None,
            "author_id": None if inbound else AGENT,
            "sender": None,
            "recipient": None,
            "sent_at": None,
            "status": "received" if inbound else "queued",
            "received_at": _iso(at),
            "parts": [{"type": "text", "text": "..."}],
            "in_reply_to": None,
            "thread_id": None,
            "status_history": [],
            "raw": None,
            "channel_data": {},
            "edited_at": None,
            "deleted_at": None,
            "revisions": [],
        },
    )


def _conversation(
    cid: str,
    opened: datetime,
    closed: datetime,
    *,
    resolution: str,
    closed_by: dict[str, Any],
    channels: list[str],
    switches: int,
    first_response: float,
    previous: str | None = None,
    close_reason: str = "api",
) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "id": cid,
        "customer_id": CUSTOMER,
        "state": "closed",
        "opened_at": _iso(opened),
        "closed_at": _iso(closed),
        "last_message_at": _iso(closed),
        "close_reason": close_reason,
        "channels": sorted(channels),
        "last_channel": channels[-1],
        "message_count": 0,
        "first_response_at": _iso(opened + timedelta(seconds=first_response)),
        "resolution": resolution,
        "closed_by": closed_by,
        "previous_conversation_id": previous,
        "repeat_conversation_id": None,
        "rating": None,
        "metrics": {
            "channels_used": sorted(channels),
            "channel_switches": switches,
            "first_response_seconds": first_response,
            "time_to_close_seconds": (closed - opened).total_seconds(),
            "messages": {"customer": 0, "agent": 0, "bot": 0, "system": 0},
        },
    }


def _opened(conversation: dict[str, Any]) -> dict[str, Any]:
    """The conversation as conversation.opened shows it: open, no outcome yet."""
    metrics = {**conversation["metrics"], "time_to_close_seconds": None}
    return {
        **conversation,
        "state": "open",
        "closed_at": None,
        "close_reason": None,
        "resolution": None,
        "closed_by": None,
        "metrics": metrics,
    }


def _rating(conversation: dict[str, Any], channel: str, score: int, at: datetime) -> dict[str, Any]:
    rating = {
        "conversation_id": conversation["id"],
        "score": score,
        "channel": channel,
        "rated_at": _iso(at),
    }
    return _event(
        "conversation.rated", at, conversation={**conversation, "rating": rating}, rating=rating
    )


def scenario_events() -> list[dict[str, Any]]:
    agent = {"role": "agent", "id": AGENT}
    a_open, b_open, c_open = (
        _at("2026-11-23T09:00:00+00:00"),
        _at("2026-11-24T08:00:00+00:00"),
        _at("2026-11-24T12:30:00+00:00"),
    )
    a = _conversation(
        "convA",
        a_open,
        a_open + timedelta(hours=1),
        resolution="resolved",
        closed_by=agent,
        channels=["sms", "email"],
        switches=1,
        first_response=120,
    )
    b = _conversation(
        "convB",
        b_open,
        b_open + timedelta(minutes=30),
        resolution="resolved",
        closed_by=agent,
        channels=["email"],
        switches=0,
        first_response=600,
    )
    c_last = c_open + timedelta(minutes=5)
    c = _conversation(
        "convC",
        c_open,
        c_last + QUIET,
        resolution="abandoned",
        closed_by={"role": "system", "id": None},
        channels=["whatsapp"],
        switches=0,
        first_response=30,
        previous="convB",
        close_reason="quiet_period",
    )
    minute = timedelta(minutes=1)
    events = [
        # A: SMS, an answer, then e-mail (a switch), an answer, closed resolved, rated 5.
        _event("conversation.opened", a_open, conversation=_opened(a)),
        _message("message.received", "convA", "sms", a_open, "customer"),
        _message("message.queued", "convA", "sms", a_open + 2 * minute, "agent"),
        _message("message.received", "convA", "sms", a_open + 5 * minute, "customer"),
        _message("message.received", "convA", "email", a_open + 20 * minute, "customer"),
        _event(
            "conversation.channel_switched",
            a_open + 20 * minute,
            conversation=a,
            from_channel="sms",
            to_channel="email",
            message_id="m",
        ),
        _message("message.queued", "convA", "email", a_open + 40 * minute, "agent"),
        _event("conversation.closed", a_open + timedelta(hours=1), conversation=a),
        _message("message.queued", "convA", "email", a_open + 61 * minute, "system"),
        _message("message.received", "convA", "email", a_open + 70 * minute, "customer"),
        _rating(a, "email", 5, a_open + 70 * minute),
        # B: e-mail the next day, answered, closed resolved, rated 2.
        _event("conversation.opened", b_open, conversation=_opened(b)),
        _message("message.received", "convB", "email", b_open, "customer"),
        _message("message.queued", "convB", "email", b_open + 10 * minute, "agent"),
        _event("conversation.closed", b_open + 30 * minute, conversation=b),
        _message("message.queued", "convB", "email", b_open + 31 * minute, "system"),
        _message("message.received", "convB", "email", b_open + 45 * minute, "customer"),
        _rating(b, "email", 2, b_open + 45 * minute),
        # C: WhatsApp within 72 h of B's resolved close: B is reopened; C goes quiet
        # with the customer's message last: abandoned.
        _event("conversation.opened", c_open, conversation=_opened(c)),
        _event(
            "conversation.reopened",
            c_open,
            conversation={**b, "repeat_conversation_id": "convC"},
            repeat_conversation_id="convC",
        ),
        _message("message.received", "convC", "whatsapp", c_open, "customer"),
        _message("message.queued", "convC", "whatsapp", c_open + timedelta(seconds=30), "agent"),
        _message("message.received", "convC", "whatsapp", c_last, "customer"),
        _event("conversation.closed", c_last + QUIET, conversation=c),
    ]
    # At-least-once delivery: the bus delivered A's close and a message twice.
    return [*events, events[7], events[1]]
