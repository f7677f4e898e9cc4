"""Opt-out, opt-in and HELP keywords: a whole message of one keyword is an action.

The keyword lists are the team contract's (design.md, "Consent and data subject
rights"), written out here rather than read from the package's own sets.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.consent import ConsentAction, detect, keyword_action, provider_action

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
OPT_IN = ["START", "UNSTOP"]
HELP = ["HELP"]
KEYWORDS = {
    **dict.fromkeys(OPT_OUT, ConsentAction.OPT_OUT),
    **dict.fromkeys(OPT_IN, ConsentAction.OPT_IN),
    **dict.fromkeys(HELP, ConsentAction.HELP),
}


@pytest.mark.parametrize("word", OPT_OUT)
def test_every_opt_out_keyword_opts_out(word):
    assert keyword_action(word) is ConsentAction.OPT_OUT


@pytest.mark.parametrize("word", OPT_IN)
def test_start_and_unstop_opt_back_in(word):
    assert keyword_action(word) is ConsentAction.OPT_IN


def test_help_asks_for_help():
    assert keyword_action("HELP") is ConsentAction.HELP


@pytest.mark.parametrize("text", ["stop", "Stop", "sToP", "unsubscribe", "Unstop", "help"])
def test_keywords_match_in_any_case(text):
    assert keyword_action(text) is KEYWORDS[text.upper()]


@pytest.mark.parametrize(
    "text",
    ["  STOP", "STOP  ", "\tstop\n", "stop.", "stop!", "Stop!!", "stop. ", " stop !", "STOP.!"],
)
def test_surrounding_whitespace_and_trailing_punctuation_are_ignored(text):
    assert keyword_action(text) is ConsentAction.OPT_OUT


@pytest.mark.parametrize(
    "text",
    [
        "please stop sending",
        "don't stop",
        "stop it",
        "STOP STOP",
        "I want to unsubscribe",
        "help me",
        "stopp",
        "s.t.o.p",
        "?stop",
        "stop?",
        "",
        "   ",
    ],
)
def test_a_keyword_inside_a_sentence_is_not_an_action(text):
    assert keyword_action(text) is None


@pytest.mark.parametrize(
    ("opt_out_type", "expected"),
    [
        ("STOP", ConsentAction.OPT_OUT),
        ("START", ConsentAction.OPT_IN),
        ("HELP", ConsentAction.HELP),
        ("stop", ConsentAction.OPT_OUT),
    ],
)
def test_twilio_opt_out_type_is_understood(opt_out_type, expected):
    assert provider_action(opt_out_type) is expected


@pytest.mark.parametrize("opt_out_type", [None, "", "UNKNOWN"])
def test_no_or_unknown_opt_out_type_is_no_verdict(opt_out_type):
    assert provider_action(opt_out_type) is None


@pytest.mark.parametrize(
    ("text", "opt_out_type", "expected"),
    [
        # Twilio recognised a custom keyword we do not know: its verdict counts.
        ("arret", "STOP", ConsentAction.OPT_OUT),
        ("START", "STOP", ConsentAction.OPT_OUT),
        ("STOP", "START", ConsentAction.OPT_IN),
        ("STOP", "HELP", ConsentAction.HELP),
    ],
)
def test_twilio_opt_out_type_wins_over_the_text(text, opt_out_type, expected):
    assert detect(text, opt_out_type) is expected


def test_without_twilio_verdict_the_text_decides():
    assert detect("stop.", None) is ConsentAction.OPT_OUT
    assert detect("please stop", None) is None


@given(st.text())
def test_keyword_action_never_raises_and_acts_only_on_a_whole_keyword(text):
    action = keyword_action(text)
    word = text.strip().rstrip(".!").strip().upper()
    assert action is KEYWORDS.get(word)


@given(
    word=st.sampled_from(sorted(KEYWORDS)),
    before=st.text(alphabet=" \t\n", max_size=3),
    gap=st.text(alphabet=" ", max_size=2),
    punctuation=st.text(alphabet=".!", max_size=3),
    after=st.text(alphabet=" \n", max_size=2),
    lower=st.booleans(),
)
def test_any_keyword_padded_with_space_and_punctuation_is_its_action(
    word, before, gap, punctuation, after, lower
):
    text = before + (word.lower() if lower else word) + gap + punctuation + after
    assert keyword_action(text) is KEYWORDS[word]


# ------------------------------------------------------------ per identity and purpose

from datetime import UTC, datetime  # noqa: E402

from threadline.consent import (  # noqa: E402
    ConsentSource,
    ConsentState,
    Purpose,
    allows,
    keyword_records,
    records_of,
    refusal_code,
)

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_without_records_replies_are_allowed_and_marketing_is_not():
    assert allows(None, Purpose.TRANSACTIONAL) is True
    assert allows({}, Purpose.MARKETING) is False
    assert refusal_code(None, Purpose.MARKETING) == "consent_required"


def test_stop_withdraws_every_purpose_with_its_evidence():
    entry = keyword_records(
        ConsentAction.OPT_OUT, source=ConsentSource.KEYWORD, evidence="01MSG", channel="sms", at=AT
    )
    for purpose in Purpose:
        record = records_of(entry)[purpose]
        assert (record.state, record.evidence, record.channel) == (
            ConsentState.WITHDRAWN,
            "01MSG",
            "sms",
        )
        assert refusal_code(entry, purpose) == "opted_out"


def test_start_grants_replies_but_not_marketing():
    entry = keyword_records(
        ConsentAction.OPT_IN, source=ConsentSource.PROVIDER, evidence="01MSG", channel="sms", at=AT
    )
    assert allows(entry, Purpose.TRANSACTIONAL)
    assert not allows(entry, Purpose.MARKETING)
    assert records_of(entry)[Purpose.TRANSACTIONAL].source is ConsentSource.PROVIDER


def test_records_written_before_purposes_still_count():
    legacy_out = {
        "status": "opted_out",
        "purpose": "all",
        "at": AT.isoformat(),
        "channel": "sms",
        "source": "keyword",
        "evidence_message_id": "01OLD",
    }
    assert not allows(legacy_out, Purpose.TRANSACTIONAL)
    assert not allows(legacy_out, Purpose.MARKETING)
    assert records_of(legacy_out)[Purpose.MARKETING].evidence == "01OLD"
    legacy_in = {**legacy_out, "status": "opted_in"}
    assert allows(legacy_in, Purpose.TRANSACTIONAL)
    assert not allows(legacy_in, Purpose.MARKETING)


@given(st.sampled_from(list(Purpose)), st.sampled_from(list(ConsentState)))
def test_a_granted_record_allows_and_a_withdrawn_one_refuses(purpose, state):
    entry = {purpose.value: {"state": state.value, "at": AT.isoformat(), "source": "api"}}
    assert allows(entry, purpose) is (state is ConsentState.GRANTED)


def test_surveys_are_allowed_without_a_record_and_refused_on_their_own():
    assert allows(None, Purpose.SURVEY) is True
    withdrawn = {"survey": {"state": "withdrawn", "at": AT.isoformat(), "source": "api"}}
    assert refusal_code(withdrawn, Purpose.SURVEY) == "opted_out"
    # Refusing surveys leaves replies alone.
    assert allows(withdrawn, Purpose.TRANSACTIONAL)


def test_start_after_stop_brings_surveys_back_to_their_default():
    entry = keyword_records(
        ConsentAction.OPT_IN, source=ConsentSource.KEYWORD, evidence="01MSG", channel="sms", at=AT
    )
    assert Purpose.SURVEY not in records_of(entry)
    assert allows(entry, Purpose.SURVEY)
