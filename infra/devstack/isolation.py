"""DynamoDB's isolation guarantees and costs, restored for moto in server mode.

moto runs a TransactWriteItems by deep-copying every table it names, applying the
writes and putting the copies back when a condition fails. Two things follow:

* **Isolation.** Its server answers requests on many threads, so a write from
  another request could land inside that window and be rolled back with the
  cancelled transaction. DynamoDB isolates transactions from every other operation
  (serializable); the embedded AWS does so by running DynamoDB operations, stream
  reads included, one at a time. Requests still arrive concurrently, and
  threadline's conditional writes still decide who wins a race, as against DynamoDB.
* **Cost.** The copy is the whole table with its stream records: a 5-item
  transaction took 33 ms at 100 items and 4.2 s at 6 000, so functions timed out
  under load, and memory grew with every message. Here a transaction backs up only
  the items it names (and the stream's length); moto's own rollback is then a no-op,
  and a cancelled transaction's items are put back and its stream records
  withdrawn, as DynamoDB never streams a write that did not commit.

A query is also made to cost about what it costs DynamoDB. moto answers a query by
sorting every item of the table and keeping those its key condition matches, so a
query's time grew with the whole table: the conversation sweeper's index queries
(one per hour bucket, every 5 minutes) held the embedded DynamoDB for seconds once
a fuzz run had stored 50 000 items. Here a query on the table's key looks at its
partition only, and an index query at the items whose index key matches.

Stream records would still grow without bound (DynamoDB keeps them 24 hours), so
records every reader has read, beyond the newest :data:`KEEP_STREAM_RECORDS`, are
dropped: a reader is a chain of shard iterators (each read hands out the next), and
a chain not used for :data:`ITERATOR_LIFETIME_SECONDS` expires, as DynamoDB's shard
iterators do. moto also keeps every iterator it ever handed out; here each chain
keeps only the one it last used and the one it last got.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
# DynamoDB: "A shard iterator expires 15 minutes after it is returned to the requester."
ITERATOR_LIFETIME_SECONDS = 15 * 60
KEEP_STREAM_RECORDS = 1000


def serialize_dynamodb_operations() -> None:
    """Patch moto's DynamoDB backends as described above (idempotent)."""
    import moto.dynamodb.models as dynamodb_models
    import moto.dynamodb.models.table as table_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    if getattr(DynamoDBBackend.transact_write_items, "__threadline_serialized__", False):
        return
    # moto's transaction backs a table up with copy.deepcopy; only its module sees this.
    dynamodb_models.copy = _TablesByReference()  # type: ignore[attr-defined,assignment]
    for name in _OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if name == "transact_write_items":
            original = _roll_back_touched_items(original)
        setattr(DynamoDBBackend, name, _serialized(original))
    table_models.Table.query = _candidates_only(table_models.Table.query)  # type: ignore[method-assign]
    streams = {
        "describe_stream": DynamoDBStreamsBackend.describe_stream,
        "get_shard_iterator": _new_reader(DynamoDBStreamsBackend.get_shard_iterator),
        "get_records": _reader_moves_on(DynamoDBStreamsBackend.get_records),
    }
    for name, operation in streams.items():
        setattr(DynamoDBStreamsBackend, name, _serialized(operation))


def _serialized(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def run_alone(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return operation(*args, **kwargs)

    run_alone.__threadline_serialized__ = True  # type: ignore[attr-defined]
    return run_alone


# ------------------------------------------------------------------ transactions


class _TablesByReference:
    """``copy`` for moto's DynamoDB module: a table "backup" is the table itself."""

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _roll_back_touched_items(transact: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(transact)
    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        items, streams = _back_up(backend, transact_items)
        try:
            return transact(backend, transact_items)
        except BaseException:
            for table, hash_key, range_key, item in items:
                _put_back(table, hash_key, range_key, item)
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    return transact_write_items


def _back_up(
    backend: Any, transact_items: list[dict[str, Any]]
) -> tuple[list[tuple[Any, Any, Any, Any]], dict[int, tuple[Any, int]]]:
    """A copy of every item the transaction names, and each stream's length."""
    from moto.dynamodb.exceptions import MockValidationException

    items = []
    streams: dict[int, tuple[Any, int]] = {}
    for entry in transact_items:
        operation = next(iter(entry.values()), None) or {}
        table = backend.tables.get(operation.get("TableName"))
        if table is None:
            continue  # moto refuses the transaction itself
        key = operation.get("Key")
        if key is None:
            item = operation.get("Item") or {}
            names = (table.hash_key_attr, table.range_key_attr)
            key = {name: item[name] for name in names if name is not None and name in item}
        try:
            hash_key, range_key = backend.get_keys_value(table, key)
            current = table.get_item(hash_key, range_key)
        except MockValidationException:
            continue  # an invalid key: moto refuses the transaction before writing
        items.append((table, hash_key, range_key, copy.deepcopy(current)))
        if table.stream_shard is not None:
            streams.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
    return items, streams


def _put_back(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Restore one item as it was, without a stream record."""
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is None:
        table.items.get(hash_key, {}).pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


# ----------------------------------------------------------------------- queries


# Table.query(hash_key, range_comparison, range_objs, limit, exclusive_start_key,
# scan_index_forward, projection_expressions, index_name, ...): index_name's place
# among the arguments after hash_key.
_INDEX_ARGUMENT = 6


def _candidates_only(query: Callable[..., Any]) -> Callable[..., Any]:
    """A query that reads only the items its key condition can match.

    moto's query sorts ``self.all_items()`` (the whole table) and filters it by the
    key condition; for the call's length the table's ``all_items`` returns, unsorted,
    only the candidates: the partition for a query on the table's key, the items
    whose index key attributes equal the condition's for an index query (moto still
    filters and sorts them itself). Safe because every DynamoDB operation runs alone
    (:func:`_serialized`).
    """

    @functools.wraps(query)
    def query_candidates(table: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        positional_index = args[_INDEX_ARGUMENT] if len(args) > _INDEX_ARGUMENT else None
        index_name = positional_index or kwargs.get("index_name")
        hash_conditions = kwargs.get("hash_key_conditions") or []
        if index_name:
            if not hash_conditions:
                return query(table, hash_key, *args, **kwargs)
            items = [
                item
                for item in _every_item(table)
                if all(_equals(item.attrs.get(name), value) for name, value in hash_conditions)
            ]
        elif hash_key is None:
            return query(table, hash_key, *args, **kwargs)
        else:
            items = list(_items_of(table, table.items.get(hash_key)))
        table.all_items = lambda: items
        try:
            return query(table, hash_key, *args, **kwargs)
        finally:
            del table.all_items

    return query_candidates


def _every_item(table: Any) -> Iterator[Any]:
    for partition in table.items.values():
        yield from _items_of(table, partition)


def _items_of(table: Any, partition: Any) -> Iterator[Any]:
    """A partition's items: moto keeps {range key: item}, or the item itself."""
    if partition is None:
        return
    if table.range_key_attr:
        yield from partition.values()
    else:
        yield partition


def _equals(attribute: Any, value: Any) -> bool:
    return attribute is not None and bool(attribute == value)


# ---------------------------------------------------------------- stream records


@dataclass
class _Reader:
    """A chain of shard iterators: one consumer's position in one shard."""

    shard: Any
    position: int
    used_at: float = field(default_factory=time.monotonic)
    iterators: list[str] = field(default_factory=list)


def _readers(backend: Any) -> dict[str, _Reader]:
    """Iterator ARN -> its reader, kept on the streams backend."""
    readers: dict[str, _Reader] | None = getattr(backend, "_threadline_readers", None)
    if readers is None:
        readers = backend._threadline_readers = {}
    return readers


def _new_reader(get_shard_iterator: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(get_shard_iterator)
    def new_reader(backend: Any, *args: Any, **kwargs: Any) -> Any:
        iterator = get_shard_iterator(backend, *args, **kwargs)
        reader = _Reader(iterator.stream_shard, iterator.sequence_number, iterators=[iterator.arn])
        _readers(backend)[iterator.arn] = reader
        _expire_readers(backend)
        return iterator

    return new_reader


def _reader_moves_on(get_records: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(get_records)
    def get_records_and_trim(backend: Any, iterator_arn: str, limit: int) -> Any:
        from moto.core.exceptions import JsonRESTError

        _expire_readers(backend)
        readers = _readers(backend)
        reader = readers.get(iterator_arn)
        iterator = backend.shard_iterators.get(iterator_arn)
        if iterator is None:
            raise JsonRESTError("ExpiredIteratorException", "Iterator expired")
        # Behind the records kept (an expired reader's position): read on from the oldest.
        iterator.sequence_number = max(
            iterator.sequence_number, iterator.stream_shard.starting_sequence_number
        )
        result = get_records(backend, iterator_arn, limit)
        following = result["NextShardIterator"]
        if reader is None:  # an iterator handed out before the patch
            reader = readers[iterator_arn] = _Reader(iterator.stream_shard, 0)
        reader.position = backend.shard_iterators[following].sequence_number
        reader.used_at = time.monotonic()
        # The one just used (a reader may read it again) and the one just handed out.
        for stale in reader.iterators:
            if stale not in (iterator_arn, following):
                backend.shard_iterators.pop(stale, None)
                readers.pop(stale, None)
        reader.iterators = [iterator_arn, following] if following != iterator_arn else [following]
        readers[following] = reader
        _trim(reader.shard, readers)
        return result

    return get_records_and_trim


def _expire_readers(backend: Any) -> None:
    readers = _readers(backend)
    deadline = time.monotonic() - ITERATOR_LIFETIME_SECONDS
    for arn, reader in list(readers.items()):
        if reader.used_at < deadline:
            readers.pop(arn, None)
            backend.shard_iterators.pop(arn, None)


def _trim(shard: Any, readers: dict[str, _Reader]) -> None:
    """Drop the records every reader of ``shard`` has read, but the newest ones."""
    positions = [reader.position for reader in readers.values() if reader.shard is shard]
    keep_from = len(shard.items) - KEEP_STREAM_RECORDS
    read = min(positions) - shard.starting_sequence_number
    drop = min(read, keep_from)
    if drop > 0:
        del shard.items[:drop]
        shard.starting_sequence_number += drop
