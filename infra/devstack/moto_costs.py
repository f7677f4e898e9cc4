"""moto's SQS and EventBridge, at about the cost of the work asked for.

**SQS backlogs.** A queue whose consumer falls behind (the Twilio fallback queue
under ``make fuzz``) builds a backlog, and moto's SQS then slowed every call on it: each SendMessage
counts the queue's messages three times (for the queue's attributes, to read one
setting), each ReceiveMessage does so three times for every message it returns (to
read the retention period), and each count asks the clock, through ``datetime``,
twice per message. At a few thousand messages a send took tens of milliseconds,
the gateway answered ever fewer requests per second (24 -> 7), and the backlog grew
faster still. Here:

* the clock is read with :func:`time.time` (the same value, without building two
  ``datetime`` objects per call);
* a received message's retention is checked against the queue's own setting,
  without counting the queue.

Counting stays linear in the backlog, as it is in moto, but costs a comparison
per message.

**EventBridge input transformers.** For every event a rule with an input transformer
(the analytics rule, an archive) sends on, moto builds a new JSONPath parser per
path, which reads the parser's yacc tables each time: a third of the stack's time
during a fuzz run. Parsed paths are kept here, per path text (a parsed path is not
changed by ``find``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


def cheaper_moto() -> None:
    """Patch moto's SQS module and JSONPath parsing as described above (idempotent)."""
    _cache_jsonpath_parsing()
    _cheap_queue_operations()


def _cache_jsonpath_parsing() -> None:
    import jsonpath_ng.ext

    # moto imports ``parse`` from here at each call, so the cached one is what it gets.
    jsonpath_ext: Any = jsonpath_ng.ext
    if hasattr(jsonpath_ext.parse, "cache_info"):
        return
    jsonpath_ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ext.parse)


def _cheap_queue_operations() -> None:
    import moto.sqs.models

    # moto's own names, replaced where its SQS module looks them up.
    sqs_models: Any = moto.sqs.models
    if getattr(sqs_models.unix_time, "__threadline_cheap__", False):
        return
    sqs_models.unix_time = _now_or(sqs_models.unix_time)
    sqs_models.unix_time_millis = _now_or(sqs_models.unix_time_millis, scale=1000.0)
    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = _within_retention


def _now_or(clock: Callable[..., float], *, scale: float = 1.0) -> Callable[..., float]:
    """``clock()`` as :func:`time.time` does it; ``clock(dt)`` unchanged."""

    @functools.wraps(clock)
    def now(dt: Any = None) -> float:
        return time.time() * scale if dt is None else clock(dt)

    now.__threadline_cheap__ = True  # type: ignore[attr-defined]
    return now


def _within_retention(backend: Any, queue_name: str, message: Any) -> bool:
    retention_seconds = int(backend.get_queue(queue_name).message_retention_period)
    return bool(message.sent_timestamp / 1000 + retention_seconds > time.time())
