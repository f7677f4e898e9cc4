"""Reading Meta's webhook JSON: each helper raises MalformedRequest (a 400) for a value
of the wrong type, so a hostile or broken body never becomes a 500."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from threadline.errors import MalformedRequest
from threadline.identity import canonical_phone
from threadline.schema import Identity, IdentityKind

PROVIDER = "meta"
CALLBACK_SEPARATOR = "/"


def string_at(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def id_at(document: Mapping[str, Any], key: str) -> str | None:
    """An id Meta sends as a string (or, in older payloads, as a number)."""
    value = document.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def object_at(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"{key} is not an object")
    return value


def list_at(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRequest(f"{key} is not a list")
    return value


def objects_at(document: Mapping[str, Any], key: str) -> Iterator[dict[str, Any]]:
    for item in list_at(document, key):
        if not isinstance(item, dict):
            raise MalformedRequest(f"an item of {key} is not an object")
        yield item


def unix_seconds(value: Any) -> datetime | None:
    """WhatsApp's timestamps: Unix seconds, as a string."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedRequest("a timestamp is not Unix seconds") from exc


def unix_milliseconds(value: Any) -> datetime | None:
    """Messenger's and Instagram's timestamps: Unix milliseconds, as a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRequest("a timestamp is not Unix milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedRequest("a timestamp is not Unix milliseconds") from exc


def phone_identity(value: str, field: str) -> Identity:
    try:
        return Identity(kind=IdentityKind.PHONE, value=canonical_phone(value))
    except ValueError as exc:
        raise MalformedRequest(f"{field} is not a phone number") from exc


def scoped_identity(kind: IdentityKind, value: str | None, field: str) -> Identity:
    if value is None:
        raise MalformedRequest(f"{field} is missing")
    try:
        return Identity(kind=kind, value=value)
    except ValueError as exc:
        raise MalformedRequest(f"{field} is not a {kind.value} id") from exc


def number_at(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise MalformedRequest(f"{field} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedRequest(f"{field} is not a number") from exc


def callback_data(customer_id: str, message_id: str) -> str:
    """What WhatsApp echoes back in every status of a message we sent: who it was."""
    return f"{customer_id}{CALLBACK_SEPARATOR}{message_id}"


def parse_callback_data(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    customer_id, separator, message_id = value.partition(CALLBACK_SEPARATOR)
    if not separator or not customer_id or not message_id or CALLBACK_SEPARATOR in message_id:
        return None, None
    return customer_id, message_id
