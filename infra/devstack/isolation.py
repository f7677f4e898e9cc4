"""DynamoDB's isolation guarantees, restored for moto in server mode.

moto runs a TransactWriteItems by snapshotting the tables, applying the writes and
restoring the snapshot when a condition fails. Its server answers requests on many
threads, so a write from another request can land inside that window and be rolled
back with the cancelled transaction, or a cancelled transaction's write can survive
another's restore. DynamoDB itself isolates transactions from every other operation
(serializable). The embedded AWS restores that by running DynamoDB operations one at
a time: requests still arrive concurrently, and threadline's conditional writes are
still what decides who wins a race, exactly as against DynamoDB.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_LOCK = threading.RLock()
_OPERATIONS = (
    "put_item",
    "get_item",
    "query",
    "scan",
    "update_item",
    "delete_item",
    "transact_write_items",
)


def serialize_dynamodb_operations() -> None:
    """Make moto's DynamoDB backend run one operation at a time (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "__threadline_serialized__", False):
            continue
        setattr(DynamoDBBackend, name, _serialized(original))


def _serialized(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def run_alone(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return operation(*args, **kwargs)

    run_alone.__threadline_serialized__ = True  # type: ignore[attr-defined]
    return run_alone
