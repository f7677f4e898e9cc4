"""Opt-out and opt-in keywords, as carriers and WhatsApp expect them honoured.

A customer who texts STOP must receive nothing more on that identity until they
text START; HELP is recorded so an operator can follow up. The keyword must be the
whole message (carriers match it that way too), in any case, with trailing
punctuation ignored: "stop." is an opt-out, "don't stop" is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from threadline.model import Model

OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP"})


class ConsentAction(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


class ConsentStatus(StrEnum):
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"


def keyword_action(text: str) -> ConsentAction | None:
    """The consent action a whole message asks for, if it is one keyword."""
    word = text.strip().rstrip(".!").strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return ConsentAction.OPT_OUT
    if word in OPT_IN_KEYWORDS:
        return ConsentAction.OPT_IN
    if word in HELP_KEYWORDS:
        return ConsentAction.HELP
    return None


def provider_action(opt_out_type: str | None) -> ConsentAction | None:
    """Twilio Advanced Opt-Out's ``OptOutType`` (STOP, START, HELP) as an action."""
    return {
        "STOP": ConsentAction.OPT_OUT,
        "START": ConsentAction.OPT_IN,
        "HELP": ConsentAction.HELP,
    }.get((opt_out_type or "").strip().upper())


def detect(text: str, provider_keyword: str | None = None) -> ConsentAction | None:
    """The provider's own verdict when it gave one, else the message's keyword."""
    return provider_action(provider_keyword) or keyword_action(text)


# --------------------------------------------------------------------------------------
# Consent per identity and purpose (docs/api.md, "Consent").
#
# The PROFILE item keeps ``consent`` as identity (kind:value) -> purpose -> record, so
# the dispatcher reads it with the profile it already reads (no extra AWS call) and a
# merge that moves an identity moves its consent with it. Records written before
# purposes existed ({"status": "opted_out"|"opted_in", "purpose": "all", ...}) are read
# as that state for every purpose.


class Purpose(StrEnum):
    TRANSACTIONAL = "transactional"
    """Replies and service messages about something the customer asked for."""
    MARKETING = "marketing"
    """Promotions; needs an explicit grant (TCPA prior express consent, GDPR opt-in)."""
    SURVEY = "survey"
    """The satisfaction question after a resolved conversation (docs/analytics.md):
    allowed without a record like a reply, but withdrawn on its own, so a customer can
    refuse surveys and still get replies."""


class ConsentState(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class ConsentSource(StrEnum):
    KEYWORD = "keyword"
    """The customer texted STOP/START (the evidence is that message's id)."""
    PROVIDER = "provider"
    """The provider reported the opt-out (Twilio Advanced Opt-Out's OptOutType)."""
    API = "api"
    """A CRM or agent recorded it through ``PUT /v1/customers/{id}/consent``."""
    EMAIL_COMPLAINT = "email_complaint"
    EMAIL_UNSUBSCRIBE = "email_unsubscribe"
    IMPORT = "import"


class ConsentRecord(Model):
    """The latest consent of one identity for one purpose, with its evidence."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: ConsentState
    at: datetime
    source: ConsentSource
    evidence: str | None = Field(
        default=None,
        max_length=1024,
        description="what proves it: the inbound message id of a STOP, a form or ticket id",
    )
    channel: str | None = Field(default=None, description="the channel a keyword came in on")


def default_allows(purpose: Purpose) -> bool:
    """Without any record: replies (and the satisfaction question) to someone who wrote
    in are fine, marketing is not."""
    return purpose is not Purpose.MARKETING


def records_of(entry: Mapping[str, Any] | None) -> dict[Purpose, ConsentRecord]:
    """One identity's ``consent`` entry as purpose -> record (legacy entries included)."""
    if not entry:
        return {}
    if "status" in entry:  # written before purposes: one record for every purpose
        state = (
            ConsentState.WITHDRAWN
            if entry.get("status") == ConsentStatus.OPTED_OUT
            else ConsentState.GRANTED
        )
        legacy = ConsentRecord(
            state=state,
            at=datetime.fromisoformat(str(entry["at"])),
            source=ConsentSource(entry.get("source") or ConsentSource.KEYWORD),
            evidence=entry.get("evidence_message_id"),
            channel=entry.get("channel"),
        )
        # A START never granted marketing (see keyword_records); neither does a legacy one.
        if state is ConsentState.GRANTED:
            return {Purpose.TRANSACTIONAL: legacy}
        return dict.fromkeys(Purpose, legacy)
    found = {}
    for purpose in Purpose:
        value = entry.get(purpose.value)
        if isinstance(value, Mapping):
            found[purpose] = ConsentRecord.model_validate(value)
    return found


def allows(entry: Mapping[str, Any] | None, purpose: Purpose) -> bool:
    record = records_of(entry).get(purpose)
    if record is None:
        return default_allows(purpose)
    return record.state is ConsentState.GRANTED


def refusal_code(entry: Mapping[str, Any] | None, purpose: Purpose) -> str | None:
    """Why a send for ``purpose`` is refused (a stable error code), or None if allowed."""
    if allows(entry, purpose):
        return None
    record = records_of(entry).get(purpose)
    return "opted_out" if record is not None else "consent_required"


def keyword_records(
    action: ConsentAction,
    *,
    source: ConsentSource,
    evidence: str,
    channel: str,
    at: datetime,
) -> dict[str, Any]:
    """The identity's new ``consent`` entry after a STOP or START (CTIA rules).

    STOP (and its synonyms) ends every message to that number from us, whatever the
    purpose: it withdraws transactional, marketing and survey alike. START/UNSTOP re-opens
    the conversation: it grants transactional only, because a keyword is not the
    express written consent marketing needs; marketing needs a new grant through the
    API with its evidence. (Ingest does not read the profile, so the entry is written
    whole: after START, marketing is back to its default, not allowed, and survey to
    its default, allowed.)
    """
    records: dict[str, Any] = {}
    if action is ConsentAction.OPT_OUT:
        purposes, state = list(Purpose), ConsentState.WITHDRAWN
    else:
        purposes, state = [Purpose.TRANSACTIONAL], ConsentState.GRANTED
    record = ConsentRecord(state=state, at=at, source=source, evidence=evidence, channel=channel)
    for purpose in purposes:
        records[purpose.value] = record.model_dump(mode="json", exclude_none=True)
    return records
