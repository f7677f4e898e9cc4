"""Property test of the log formatter: no phone shape a channel produces, and no
e-mail address, survives into a log line."""

from __future__ import annotations

import json
import logging

import phonenumbers
from hypothesis import given
from hypothesis import strategies as st

from threadline.logs import RedactingFormatter, redact_text

REGIONS = sorted(
    r
    for r in phonenumbers.SUPPORTED_REGIONS
    if phonenumbers.example_number_for_type(r, phonenumbers.PhoneNumberType.MOBILE)
)


@st.composite
def phone_shapes(draw) -> str:
    """A mobile number of any region, written as one of the channels writes it."""
    region = draw(st.sampled_from(REGIONS))
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    shapes = [
        e164,  # Twilio From/To, stored identities
        e164.removeprefix("+"),  # WhatsApp Cloud wa_id, Telegram contact phone_number
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        "whatsapp:" + e164,  # Twilio's WhatsApp addresses
        "tel:" + e164,
    ]
    return str(draw(st.sampled_from(shapes)))


emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._%+\-]{0,20}\Z"),
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9\-]{0,20}\Z"),
    st.sampled_from(["com", "org", "example", "co.uk", "io"]),
)
# Prose around a planted value: words and punctuation, set off by a separator.
fillers = st.text(
    alphabet=st.characters(categories=("L", "P", "Zs"), exclude_characters="+@"), max_size=12
)
separators = st.sampled_from([" ", ", ", ": ", " (", '"', "\n", "\t"])


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _format(message: str, **extra: object) -> str:
    formatter = RedactingFormatter(enabled=True)
    record = logging.LogRecord("threadline", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return formatter.format(record)


@given(
    planted=st.lists(st.one_of(phone_shapes(), emails), min_size=1, max_size=4),
    filler=fillers,
    separator=separators,
)
def test_the_log_formatter_lets_no_phone_shape_or_email_through(planted, filler, separator):
    message = separator.join([filler, *planted, filler])
    line = _format(message, customer={"to": planted[0], "notes": [message]})
    document = json.loads(line)
    rendered = json.dumps(document, ensure_ascii=False)
    for value in planted:
        assert value not in rendered
        if "@" not in value:
            # Not even the digits with the punctuation taken out.
            assert _digits(value) not in _digits(rendered)


def test_slack_timestamps_ids_and_log_times_are_left_alone():
    for text in (
        "ts 1700000000.000100",
        "2026-12-02 13:48:16,123+0000",
        "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTZBN0Y",
        "customer 01JD4S5X7Z1234567890ABCD",
    ):
        assert redact_text(text) == text


def test_masked_numbers_keep_their_last_two_digits():
    assert redact_text("from +1 (555) 123-4567") == "from +*********67"
    assert redact_text("wa_id 15551234567") == "wa_id *********67"
