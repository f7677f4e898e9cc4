"""Pollers woken as soon as their source has something, not at their next round.

Lambda's pollers long-poll SQS and read a DynamoDB stream within milliseconds of a
write. Locally each poller polls every interval (0.25 s, 0.5 s once quiet), and a
webhook reaches a CRM through three of them (the table's stream, the events queue,
the delivery queue): up to 1.5 s of waiting that Lambda does not have, over half
of the end-to-end latency `make bench` measured. When moto runs in this process,
its SQS sends and its stream writes signal the source's key here, and the poller
of that source, waiting between rounds, polls again at once. The interval stays
the fallback (an ``AWS_ENDPOINT_URL`` stack, a message visible again after its
visibility timeout).
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

_CHANGED = threading.Condition()
_GENERATIONS: defaultdict[str, int] = defaultdict(int)


def queue_key(queue_name: str) -> str:
    return f"sqs:{queue_name}"


def table_key(table_name: str) -> str:
    return f"dynamodb:{table_name}"


def signal(key: str) -> None:
    """Something arrived at ``key``'s source."""
    with _CHANGED:
        _GENERATIONS[key] += 1
        _CHANGED.notify_all()


def wake_all() -> None:
    """Wake every waiting poller (each re-checks its own stop flag)."""
    with _CHANGED:
        _CHANGED.notify_all()


def generation(key: str) -> int:
    with _CHANGED:
        return _GENERATIONS[key]


def wait(key: str, seen: int, timeout: float, stop: threading.Event) -> None:
    """Until ``key`` moved past ``seen``, ``stop`` is set, or ``timeout`` passed."""
    with _CHANGED:
        _CHANGED.wait_for(lambda: _GENERATIONS[key] != seen or stop.is_set(), timeout)


def signal_from_moto() -> None:
    """Patch moto's SQS sends and DynamoDB stream writes to signal (idempotent)."""
    from moto.dynamodb.models.table import StreamShard
    from moto.sqs.models import SQSBackend

    if getattr(StreamShard.add, "__threadline_signals__", False):
        return
    StreamShard.add = _signalling(  # type: ignore[method-assign]
        StreamShard.add, lambda shard, *_, **__: table_key(shard.table.name)
    )
    # SendMessageBatch sends each entry through send_message too.
    SQSBackend.send_message = _signalling(  # type: ignore[method-assign]
        SQSBackend.send_message,
        lambda _backend, *args, **kwargs: queue_key(
            kwargs["queue_name"] if "queue_name" in kwargs else args[0]
        ),
    )


def _signalling(operation: Callable[..., Any], key: Callable[..., str]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def signalled(*args: Any, **kwargs: Any) -> Any:
        result = operation(*args, **kwargs)
        signal(key(*args, **kwargs))
        return result

    signalled.__threadline_signals__ = True  # type: ignore[attr-defined]
    return signalled
