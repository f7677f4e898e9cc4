"""Conversation outcomes, repeat contacts and satisfaction answers: the rules.

The decisions (docs/analytics.md) as pure functions, so the store's close and open
paths and the inbound path apply the same rules:

- closing through the API records the outcome the caller gives (``resolved`` unless
  told otherwise) and the agent who closed it;
- the quiet period closes ``abandoned`` when the customer had the last word, else
  ``resolved`` (answered, and the customer did not come back), closed by ``system``;
- a customer's message within the repeat window (``REPEAT_CONTACT_WINDOW_HOURS``,
  default 72) after a ``resolved`` close is a repeat contact: the new conversation
  names the earlier one, which gets ``repeat_conversation_id`` (published as
  ``conversation.reopened``) and stops counting as resolved on first contact;
- the satisfaction question (``CSAT_SURVEY=on``) follows a ``resolved`` close only,
  is sent under the ``survey`` consent purpose, and the identity it went to carries
  ``csat_pending`` (conversation and deadline) for ``RATING_WINDOW``: that identity's
  next message whose whole text is one score from 1 to 5 is the answer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ConfigDict, Field

from threadline.model import Model
from threadline.schema import AuthorRole, ClosedBy, Resolution

REPEAT_CONTACT_WINDOW = timedelta(hours=72)
# How long after the question an answer counts as a rating, not a new message.
RATING_WINDOW = timedelta(hours=24)
SURVEY_QUESTION = "How did we do? Reply 1-5"
RESOLUTIONS: tuple[Resolution, ...] = ("resolved", "unresolved", "abandoned")
SYSTEM = ClosedBy(role="system")

# "5", "5/5", "4 stars", "⭐⭐⭐⭐", "3." ... : one score and nothing else, so a
# message such as "2 parcels are missing" is never taken for a rating.
_SCORE = re.compile(r"^\s*([1-5])\s*(?:/\s*5|stars?|\.|!)?\s*$", re.IGNORECASE)
_STARS = re.compile(r"^\s*(⭐{1,5})\s*$")


class CloseRequest(Model):
    """The optional body of ``POST /v1/conversations/{id}/close``."""

    model_config = ConfigDict(extra="forbid")

    resolution: Resolution = "resolved"
    agent_id: str | None = Field(
        default=None, max_length=200, description="who closed it, in the CRM's ids"
    )

    def outcome(self) -> tuple[Resolution, ClosedBy]:
        return api_close_outcome(self.resolution, self.agent_id)


def repeat_window_from_env() -> timedelta:
    """``REPEAT_CONTACT_WINDOW_HOURS`` (template parameter RepeatContactWindowHours)."""
    hours = os.environ.get("REPEAT_CONTACT_WINDOW_HOURS")
    return timedelta(hours=float(hours)) if hours else REPEAT_CONTACT_WINDOW


def api_close_outcome(requested: str | None, agent_id: str | None) -> tuple[Resolution, ClosedBy]:
    """The outcome of ``POST /v1/conversations/{id}/close``; raises ValueError on an
    unknown resolution (a 400 for the caller)."""
    resolution = requested or "resolved"
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    return resolution, ClosedBy(role="agent", id=agent_id)


def quiet_period_outcome(last_author_role: AuthorRole | str | None) -> tuple[Resolution, ClosedBy]:
    """The outcome of a close by the quiet period, from who wrote the last message."""
    if last_author_role is None or AuthorRole(last_author_role) is AuthorRole.CUSTOMER:
        return "abandoned", SYSTEM
    return "resolved", SYSTEM


def outcome_of(item: Mapping[str, Any]) -> tuple[Resolution | None, ClosedBy | None]:
    """A conversation item's outcome: as recorded by an API close, or derived for a
    quiet-period close from ``last_author_role`` (frozen once closed: a closed
    conversation takes no more messages). None while open, and for conversations
    closed before outcomes were recorded."""
    if item.get("state") != "closed":
        return None, None
    if item.get("resolution"):
        closed_by = item.get("closed_by")
        return item["resolution"], ClosedBy.model_validate(closed_by) if closed_by else None
    if item.get("close_reason") == "quiet_period" and item.get("last_author_role"):
        return quiet_period_outcome(item["last_author_role"])
    return None, None


def is_repeat_contact(
    previous_resolution: str | None,
    previous_closed_at: datetime | None,
    now: datetime,
    window: timedelta = REPEAT_CONTACT_WINDOW,
) -> bool:
    """Whether a customer's message at ``now`` makes their last conversation a repeat."""
    if previous_resolution != "resolved" or previous_closed_at is None:
        return False
    return timedelta(0) <= now - previous_closed_at <= window


def parse_rating(text: str) -> int | None:
    """The score a survey answer gives, or None when the text is not just a score."""
    match = _SCORE.match(text)
    if match:
        return int(match.group(1))
    stars = _STARS.match(text)
    return len(stars.group(1)) if stars else None


def csat_survey_on() -> bool:
    """``CSAT_SURVEY`` (template parameter CsatSurvey): ``on`` asks after a resolved close."""
    return os.environ.get("CSAT_SURVEY", "off") == "on"


def csat_question() -> str:
    """``CSAT_QUESTION`` (template parameter CsatQuestion)."""
    return os.environ.get("CSAT_QUESTION") or SURVEY_QUESTION


def asks_for_rating(resolution: str | None, already_asked: bool, survey_on: bool) -> bool:
    """Whether a closed conversation gets the satisfaction question: once, resolved only."""
    return survey_on and resolution == "resolved" and not already_asked


def csat_pending(conversation_id: str, asked_at: datetime) -> dict[str, str]:
    """The mark the asked identity carries until answered or ``RATING_WINDOW`` passes."""
    return {
        "conversation_id": conversation_id,
        "deadline": (asked_at + RATING_WINDOW).isoformat(),
    }


def rating_answer(
    pending: Mapping[str, Any] | None, text: str, now: datetime
) -> tuple[str, int] | None:
    """(conversation id, score) when a message answers a pending question, else None:
    a question is pending, its deadline has not passed, and the text is just a score."""
    if not pending or now > datetime.fromisoformat(str(pending["deadline"])):
        return None
    score = parse_rating(text)
    return (str(pending["conversation_id"]), score) if score is not None else None
