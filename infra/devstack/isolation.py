"""DynamoDB's isolation guarantees, restored for moto in server mode.

moto runs a TransactWriteItems by snapshotting the tables, applying the writes and
restoring the snapshot when a condition fails. Its server answers requests on many
threads, so a write from another request can land inside that window and be rolled
back with the cancelled transaction, or a cancelled transaction's write can survive
another's restore. DynamoDB itself isolates transactions from every other operation
(serializable). The embedded AWS restores that by running DynamoDB operations one at
a time: requests still arrive concurrently, and threadline's conditional writes are
still what decides who wins a race, exactly as against DynamoDB.

The restore has a second effect on tables with a stream: the restored table is a
copy with a copy of its stream, while open shard iterators keep reading the
original one, which holds the cancelled writes' records and never sees another.
DynamoDB never streams a write that did not commit, so after a rollback the
original stream is put back on the restored table, without the cancelled records;
and stream reads take the same turn as writes, so none sees a record that is
about to be withdrawn.
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
_STREAM_OPERATIONS = ("describe_stream", "get_shard_iterator", "get_records")


def serialize_dynamodb_operations() -> None:
    """Make moto's DynamoDB backend run one operation at a time (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    for name in _OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "__threadline_serialized__", False):
            continue
        if name == "transact_write_items":
            original = _streams_survive_rollback(original)
        setattr(DynamoDBBackend, name, _serialized(original))
    for name in _STREAM_OPERATIONS:
        original = getattr(DynamoDBStreamsBackend, name)
        if not getattr(original, "__threadline_serialized__", False):
            setattr(DynamoDBStreamsBackend, name, _serialized(original))


def _serialized(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def run_alone(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return operation(*args, **kwargs)

    run_alone.__threadline_serialized__ = True  # type: ignore[attr-defined]
    return run_alone


def _streams_survive_rollback(transact: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(transact)
    def transact_write_items(backend: Any, *args: Any, **kwargs: Any) -> Any:
        streams = {
            name: (table, table.stream_shard, len(table.stream_shard.items))
            for name, table in backend.tables.items()
            if table.stream_shard is not None
        }
        try:
            return transact(backend, *args, **kwargs)
        except BaseException:
            for name, (before, shard, length) in streams.items():
                restored = backend.tables.get(name)
                if restored is None or restored is before:
                    continue  # not rolled back
                del shard.items[length:]
                shard.table = restored
                restored.stream_shard = shard
            raise

    return transact_write_items
