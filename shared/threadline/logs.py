"""Structured JSON logs that do not leak what customers wrote or who they are.

By default every log line has message bodies replaced and phone numbers and e-mail
addresses masked, whatever the call site passed in. Setting
``THREADLINE_LOG_REDACTION=off`` (for a debugging session, never in production)
turns that off explicitly.
"""

from __future__ import annotations

import os
import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

# Keys whose values are message content, wherever they appear in a log record.
_CONTENT_KEYS = frozenset({"body", "Body", "text", "caption", "message_body", "raw"})
# Every phone shape the channels produce: E.164 (``+15551234567``), the same spaced
# or punctuated (``+1 555 123 4567``, ``+1 (555) 123-4567``), and without its ``+``
# (WhatsApp ids ``15551234567``, Telegram contact phones): a ``+`` and 7 digits or
# more, or a run of 8 to 15 digits (the shortest mobile numbers with their country
# code). Not inside a word or id (``wamid.HBgL...``), and not a run followed by
# ``.digits`` (Slack's ``1700000000.000100`` timestamps).
_PHONE = re.compile(
    r"(?<![\w+])\+\d(?:[ ().\-]{0,2}\d){6,}(?!\w)(?!\.\d)"
    # Without the +: not after ":" or "-" and not before "-" (an ARN's account id, a
    # request id's or a date's digit group).
    r"|(?<![\w+:\-])\d{8,15}(?![\w\-])(?!\.\d)"
)
# The local part allows every RFC 5322 "atext" character, not just the common ones.
_EMAIL = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]*"
    r"@([A-Za-z0-9\-]+\.[A-Za-z0-9.\-]+)"
)
REDACTED = "[redacted]"


def mask_phone(match: re.Match[str]) -> str:
    """``+*********67``: the last two digits, enough to tell numbers apart in a log."""
    number = match.group(0)
    digits = [c for c in number if c.isdigit()]
    return ("+" if number.startswith("+") else "") + "*" * (len(digits) - 2) + "".join(digits[-2:])


def redact_text(text: str) -> str:
    """Mask every phone number (every shape :data:`_PHONE` knows) and e-mail address."""
    text = _PHONE.sub(mask_phone, text)
    return _EMAIL.sub(r"\1***@\2", text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with content keys replaced and identities masked."""
    if isinstance(value, dict):
        return {
            redact(key): REDACTED
            if key in _CONTENT_KEYS and item not in (None, "")
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and _PHONE.fullmatch(str(value)):
        # A number logged as a number (powertools turns a message of digits into
        # one): a WhatsApp id or a phone all the same.
        return redact_text(str(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (an exception object powertools puts in stack_trace, say) is
    # turned into text by the serializer later: redact that text now.
    return redact_text(str(value))


class RedactingFormatter(LambdaPowertoolsFormatter):
    def __init__(self, *, enabled: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enabled = enabled

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return super().serialize(redact(log) if self.enabled else log)


def redaction_enabled() -> bool:
    return os.environ.get("THREADLINE_LOG_REDACTION", "on").lower() != "off"


def get_logger() -> Logger:
    """The one logger every threadline module and handler writes through."""
    return Logger(logger_formatter=RedactingFormatter(enabled=redaction_enabled()))


logger = get_logger()
