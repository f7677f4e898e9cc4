"""An in-memory stand-in for the data-access interface (threadline.dal.base.TableAccess).

The domain logic's unit tests run against it: fast, and they see exactly which
reads and writes a decision costs. It keeps whole items (Put, Delete) and records
every write; of the condition language it knows only what makes a write happen at
most once (``attribute_not_exists(pk)``) or only to an existing item
(``attribute_exists(pk)`` at the start of a condition). Update expressions are
recorded, not applied: their semantics are DynamoDB's, tested against moto in
tests/integration.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from threadline.dal.base import (
    ConditionCheck,
    Delete,
    Key,
    Page,
    Put,
    TableAccess,
    Update,
    Write,
    WriteCancelled,
)
from threadline.items import decode_cursor, encode_cursor


class FakeTable:
    def __init__(self) -> None:
        self.items: dict[Key, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.written: list[list[Write]] = []

    # --------------------------------------------------------------- reads

    def get(
        self, key: Key, *, consistent: bool = False, attributes: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        self.calls.append("get")
        item = self.items.get(key)
        if item is None:
            return None
        if attributes:
            return {k: v for k, v in item.items() if k in attributes}
        return copy.deepcopy(item)

    def get_many(
        self, keys: Sequence[Key], *, consistent: bool = False, attributes: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        self.calls.append("get_many")
        return [copy.deepcopy(self.items[key]) for key in keys if key in self.items]

    def _under(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(item)
            for (item_pk, sk), item in sorted(self.items.items())
            if item_pk == pk and sk.startswith(prefix)
        ]

    def newest_first(
        self,
        pk: str,
        prefix: str,
        *,
        limit: int,
        cursor: str | None = None,
        attributes: Sequence[str] = (),
        consistent: bool = False,
    ) -> Page:
        self.calls.append("query")
        items = list(reversed(self._under(pk, prefix)))
        if cursor:
            after = decode_cursor(cursor, prefix=prefix)
            items = [item for item in items if item["sk"] < after]
        page = items[:limit]
        more = len(items) > limit
        return Page(items=page, next_cursor=encode_cursor(page[-1]["sk"]) if more else None)

    def query_all(
        self,
        pk: str,
        prefix: str = "",
        *,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        self.calls.append("query")
        return self._under(pk, prefix)

    def query_pages(
        self,
        pk: str,
        prefix: str = "",
        *,
        page_size: int | None = None,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        yield self.query_all(pk, prefix)

    def query_index(
        self, index: str, condition: str, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        self.calls.append("query")
        return []

    # --------------------------------------------------------------- writes

    def write(self, writes: Sequence[Write]) -> None:
        self.calls.append("write")
        codes: list[str | None] = []
        olds: list[dict[str, Any] | None] = []
        for write in writes:
            existing = self.items.get(_key_of(write))
            refused = _refuses(write.condition, existing)
            codes.append("ConditionalCheckFailed" if refused else None)
            returned = isinstance(write, Put) and write.return_old_on_conflict and refused
            olds.append(copy.deepcopy(existing) if returned else None)
        if any(codes):
            raise WriteCancelled(codes, olds)
        self.written.append(list(writes))
        for write in writes:
            if isinstance(write, Put):
                self.items[write.key] = copy.deepcopy(write.item)
            elif isinstance(write, Delete):
                self.items.pop(write.key, None)

    def update_returning(self, update: Update) -> dict[str, Any]:
        self.write([update])
        return copy.deepcopy(self.items.get(update.key, {}))

    def delete_all(self, keys: Sequence[Key]) -> None:
        self.calls.append("write")
        for key in keys:
            self.items.pop(key, None)

    def first_writer(
        self, cancelled: WriteCancelled, index: int, key: Key
    ) -> dict[str, Any] | None:
        old = cancelled.old_items[index] if index < len(cancelled.old_items) else None
        return old if old is not None else self.get(key, consistent=True)

    # --------------------------------------------------------------- for the tests

    def of_type(self, item_type: str) -> list[dict[str, Any]]:
        return [item for item in self.items.values() if item.get("type") == item_type]


def _key_of(write: Write) -> Key:
    return write.key


def _refuses(condition: str | None, existing: dict[str, Any] | None) -> bool:
    if not condition:
        return False
    if condition.startswith("attribute_not_exists(pk)") and " OR " not in condition:
        return existing is not None
    if condition.startswith("attribute_exists(pk)"):
        return existing is None
    return False


def _is_table_access(table: FakeTable) -> TableAccess:
    """mypy-checked: the fake offers everything the interface asks for."""
    return table


__all__ = ["ConditionCheck", "FakeTable"]
