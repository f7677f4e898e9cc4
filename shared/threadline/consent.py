"""Opt-out and opt-in keywords, as carriers and WhatsApp expect them honoured.

A customer who texts STOP must receive nothing more on that identity until they
text START; HELP is recorded so an operator can follow up. The keyword must be the
whole message (carriers match it that way too), in any case, with trailing
punctuation ignored: "stop." is an opt-out, "don't stop" is not.
"""

from __future__ import annotations

from enum import StrEnum

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
