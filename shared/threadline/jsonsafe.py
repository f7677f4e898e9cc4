"""Reading JSON that someone else wrote: bounded, finite, encodable.

``json.loads`` accepts documents nothing downstream can take: a lone UTF-16
surrogate (``"\\ud800"``) that no UTF-8 encoder (DynamoDB, S3, logs) accepts, nesting
deeper than DynamoDB's 32 levels or Python's recursion limit, ``NaN`` and numbers
such as ``1e400`` that read as infinity. :func:`load_json` refuses or repairs these
with :class:`~threadline.errors.MalformedRequest` (400), for the webhooks and the API
alike.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from threadline.errors import MalformedRequest

# Deeper than any provider's payload (Slack's nested rich-text blocks reach about 10
# levels) or API body; DynamoDB refuses an item nested over 32 levels, and a provider
# document lands in an item's channel_data a few levels down.
MAX_JSON_DEPTH = 20


def _refuse_constant(name: str) -> float:
    raise MalformedRequest(f"body holds {name}, which JSON does not allow")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise MalformedRequest("body holds a number out of range")
    return value


def repair_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (the replacement character)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean(document: Any, depth: int, surrogates: Literal["repair", "refuse"]) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise MalformedRequest(f"body nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(document, str):
        if document.isascii() or not has_lone_surrogate(document):
            return document
        if surrogates == "refuse":
            raise MalformedRequest("body holds a lone UTF-16 surrogate")
        return repair_text(document)
    if isinstance(document, dict):
        return {
            _clean(key, depth, surrogates): _clean(value, depth + 1, surrogates)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_clean(value, depth + 1, surrogates) for value in document]
    return document


def load_json(data: bytes | str, *, surrogates: Literal["repair", "refuse"]) -> Any:
    """``data`` parsed as JSON, or MalformedRequest.

    Refused: invalid UTF-8, invalid JSON, ``NaN``/``Infinity``, numbers out of float
    range, nesting deeper than :data:`MAX_JSON_DEPTH`. Lone surrogates are repaired
    (a provider's message is kept with U+FFFD in their place: the provider cannot
    send it differently) or refused (an API client can).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedRequest("body is not JSON") from exc
    return _clean(document, 0, surrogates)
