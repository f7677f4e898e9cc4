"""The outcome, repeat-contact and rating rules (threadline.outcomes, docs/analytics.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.outcomes import (
    RATING_WINDOW,
    api_close_outcome,
    asks_for_rating,
    csat_pending,
    is_repeat_contact,
    parse_rating,
    quiet_period_outcome,
    rating_answer,
    repeat_window_from_env,
)
from threadline.schema import AuthorRole, ClosedBy

CLOSED_AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_an_api_close_is_resolved_by_the_agent_unless_told_otherwise():
    assert api_close_outcome(None, "agent-7") == ("resolved", ClosedBy(role="agent", id="agent-7"))
    assert api_close_outcome("unresolved", None)[0] == "unresolved"
    with pytest.raises(ValueError, match="resolution must be one of"):
        api_close_outcome("fixed", "agent-7")


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (AuthorRole.CUSTOMER, "abandoned"),
        ("customer", "abandoned"),
        (AuthorRole.AGENT, "resolved"),
        (AuthorRole.BOT, "resolved"),
        (AuthorRole.SYSTEM, "resolved"),
    ],
)
def test_the_quiet_period_abandons_when_the_customer_had_the_last_word(last, expected):
    assert quiet_period_outcome(last) == (expected, ClosedBy(role="system"))


@pytest.mark.parametrize(
    ("resolution", "after", "repeat"),
    [
        ("resolved", timedelta(hours=4), True),
        ("resolved", timedelta(hours=72), True),
        ("resolved", timedelta(hours=72, seconds=1), False),
        ("abandoned", timedelta(hours=4), False),
        ("unresolved", timedelta(hours=4), False),
        (None, timedelta(hours=4), False),
    ],
)
def test_a_repeat_contact_follows_a_resolved_close_within_the_window(resolution, after, repeat):
    assert is_repeat_contact(resolution, CLOSED_AT, CLOSED_AT + after) is repeat


def test_the_window_is_configurable(monkeypatch):
    monkeypatch.setenv("REPEAT_CONTACT_WINDOW_HOURS", "24")
    window = repeat_window_from_env()
    assert window == timedelta(hours=24)
    assert not is_repeat_contact("resolved", CLOSED_AT, CLOSED_AT + timedelta(hours=25), window)
    monkeypatch.delenv("REPEAT_CONTACT_WINDOW_HOURS")
    assert repeat_window_from_env() == timedelta(hours=72)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5", 5),
        (" 1 ", 1),
        ("4/5", 4),
        ("3 stars", 3),
        ("2.", 2),
        ("⭐⭐⭐⭐", 4),
        ("0", None),
        ("6", None),
        ("10", None),
        ("2 parcels are missing", None),
        ("thanks", None),
        ("", None),
    ],
)
def test_only_a_bare_score_is_a_rating(text, score):
    assert parse_rating(text) == score


def test_the_outcome_of_an_item_is_recorded_or_derived_from_who_wrote_last():
    from threadline.outcomes import outcome_of

    closed = {"state": "closed", "close_reason": "quiet_period"}
    assert outcome_of({**closed, "last_author_role": "customer"}) == (
        "abandoned",
        ClosedBy(role="system"),
    )
    assert outcome_of({**closed, "last_author_role": "agent"})[0] == "resolved"
    by_agent = {"role": "agent", "id": "agent-7"}
    recorded = {"state": "closed", "close_reason": "api", "resolution": "unresolved"}
    assert outcome_of({**recorded, "closed_by": by_agent}) == (
        "unresolved",
        ClosedBy(role="agent", id="agent-7"),
    )
    # Open, or closed before outcomes were recorded: no outcome.
    assert outcome_of({"state": "open", "last_author_role": "customer"}) == (None, None)
    assert outcome_of(closed) == (None, None)


def test_only_a_resolved_close_asks_and_only_once_and_only_when_on():
    assert asks_for_rating("resolved", already_asked=False, survey_on=True)
    assert not asks_for_rating("resolved", already_asked=True, survey_on=True)
    assert not asks_for_rating("resolved", already_asked=False, survey_on=False)
    for other in ("unresolved", "abandoned", None):
        assert not asks_for_rating(other, already_asked=False, survey_on=True)


def test_an_answer_is_a_score_before_the_deadline_of_a_pending_question():
    asked_at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    pending = csat_pending("01J9Z8X7W6V5T4S3R2Q1P0N9D1", asked_at)
    within = asked_at + RATING_WINDOW - timedelta(seconds=1)
    assert rating_answer(pending, "5", within) == ("01J9Z8X7W6V5T4S3R2Q1P0N9D1", 5)
    assert rating_answer(pending, "⭐⭐⭐", within) == ("01J9Z8X7W6V5T4S3R2Q1P0N9D1", 3)
    assert rating_answer(pending, "5 more days?", within) is None
    assert rating_answer(pending, "5", asked_at + RATING_WINDOW + timedelta(seconds=1)) is None
    assert rating_answer(None, "5", within) is None
