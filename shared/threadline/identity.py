"""Canonical identity values, so one person on one address is always one string.

Kept free of pydantic models so the schema can import it without a cycle.
"""

from __future__ import annotations

import re

# E.164 numbers are 7 to 15 digits with the country code (Tokelau: +690 7290); short
# codes are 5 or 6 digits, so 7 is the line between them.
MIN_BARE_DIGITS = 7
_SLACK_ID = re.compile(r"^[A-Z0-9]+:[A-Z0-9]+$")
# Telegram user ids are positive integers below 2**52 (the Bot API's own bound).
_TELEGRAM_ID = re.compile(r"^[1-9][0-9]{0,15}$")
# Page-scoped (Messenger PSID) and Instagram-scoped (IGSID) user ids are decimal digits.
_META_SCOPED_ID = re.compile(r"^[0-9]{1,64}$")
# registry(webchat): visitor ids are what POST /webchat/v1/sessions hands out.
_WEBCHAT_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def canonical_phone(value: str) -> str:
    """E.164 for any way a provider writes a phone number.

    Accepts ``+15551234567``, ``15551234567`` (WhatsApp's wa_id has no plus) and
    formatted forms with spaces or dashes. Raises ValueError for anything that cannot
    be a phone number. ``is_possible_number`` rather than ``is_valid_number``: the
    latter rejects the 555 numbers that documentation and test suites use, and an
    unassigned-but-possible number is still the identity the provider gave us.
    """
    # phonenumbers loads its metadata on import: only pay for it when a phone is parsed.
    import phonenumbers

    text = value.strip()
    if not text.startswith("+"):
        digits = re.sub(r"[\s\-().]", "", text)
        # Without a plus, only a full international number (country code included,
        # as WhatsApp's wa_id has it) is taken; 5-6 digit short codes are not phones.
        if not digits.isdigit() or len(digits.removeprefix("00")) < MIN_BARE_DIGITS:
            raise ValueError("not a phone number")
        text = "+" + digits.removeprefix("00")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a possible phone number")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Some digit strings lose leading zeros on the way (+49000000 becomes +4900000),
    # and the result would change again next time: such a string is no one's number.
    again = phonenumbers.parse(e164, None)
    if not phonenumbers.is_possible_number(again) or (
        phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) != e164
    ):
        raise ValueError("not a stable phone number")
    return e164


def canonical_email(value: str) -> str:
    text = value.strip().lower()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or "." not in domain or " " in text:
        raise ValueError("not an e-mail address")
    return text


def canonical_identity_value(kind: str, value: str) -> str:
    """The one spelling of ``value`` for identity ``kind`` (ValueError if impossible)."""
    if kind == "phone":
        return canonical_phone(value)
    if kind == "email":
        return canonical_email(value)
    text = value.strip()
    if kind == "slack":
        text = text.upper()
        if not _SLACK_ID.match(text):
            raise ValueError("slack identities are team:user, e.g. T0001:U0002")
    if kind == "telegram" and not _TELEGRAM_ID.match(text):
        raise ValueError("telegram identities are the user's numeric id, e.g. 123456789")
    if kind in ("messenger", "instagram") and not _META_SCOPED_ID.match(text):
        raise ValueError(f"{kind} identities are Meta's numeric scoped user ids")
    if kind == "webchat" and not _WEBCHAT_VISITOR_ID.match(text):  # registry(webchat)
        raise ValueError("webchat identities are visitor ids (8-64 of A-Z a-z 0-9 _ -)")
    if not text:
        raise ValueError("empty identity")
    return text
