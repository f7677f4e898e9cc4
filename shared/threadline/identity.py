"""Canonical identity values, so one person on one address is always one string.

Kept free of pydantic models so the schema can import it without a cycle.
"""

from __future__ import annotations

import re

# E.164 numbers are 7 to 15 digits with the country code (Tokelau: +690 7290); short
# codes are 5 or 6 digits, so 7 is the line between them.
MIN_BARE_DIGITS = 7


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
    """The one spelling of ``value`` for identity ``kind`` (ValueError if impossible).

    Each kind's rule is declared with its channel in the channel registry.
    """
    # Imported here: the registry builds its rules from the functions above.
    from threadline.channels.registry import identity_rule

    return identity_rule(kind).apply(value)
