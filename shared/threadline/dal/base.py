"""The data-access interface between the domain logic and the table.

Domain logic (ingest, conversations, outbound, privacy, subscriptions) decides and
returns plain write operations: items as Python values (``threadline.items`` builds
them) and the conditions that guard them. Nothing here is a boto3 type; the one
DynamoDB implementation is ``threadline.dal.dynamodb``, and the unit tests run the
logic against an in-memory fake of :class:`TableAccess`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

_CONFLICTS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})

Key = tuple[str, str]
"""(pk, sk) of one item."""


@dataclass(frozen=True)
class Put:
    """Write a whole item; ``condition`` guards it (``attribute_not_exists(pk)``: once)."""

    item: dict[str, Any]
    condition: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    return_old_on_conflict: bool = False

    @property
    def key(self) -> Key:
        return str(self.item["pk"]), str(self.item["sk"])


def put_once(item: dict[str, Any], *, replay: bool = False) -> Put:
    """The first writer of ``item``'s key wins; with ``replay`` a repeat gets its item."""
    return Put(item, condition="attribute_not_exists(pk)", return_old_on_conflict=replay)


@dataclass(frozen=True)
class Update:
    """Change attributes of one item with an update expression."""

    key: Key
    expression: str
    condition: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConditionCheck:
    """Only a condition on an item another write depends on (no change)."""

    key: Key
    condition: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delete:
    key: Key
    condition: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


Write = Put | Update | ConditionCheck | Delete


@dataclass(frozen=True)
class Page:
    """Items of one page, newest first, and the opaque cursor of the next one."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class WriteCancelled(Exception):
    """A transaction (or a conditional write) was refused; nothing was written.

    ``codes`` has one entry per write, in order (``ConditionalCheckFailed``,
    ``TransactionConflict`` or None for the writes that were fine); ``old_items``
    the item a refused ``return_old_on_conflict`` put met, when the table said.
    """

    def __init__(
        self, codes: Sequence[str | None], old_items: Sequence[dict[str, Any] | None]
    ) -> None:
        super().__init__(f"write cancelled: {list(codes)}")
        self.codes = list(codes)
        self.old_items = list(old_items)

    def failed(self, index: int) -> bool:
        """The write at ``index`` was refused by its own condition."""
        return index < len(self.codes) and self.codes[index] == "ConditionalCheckFailed"

    def conflicted(self, index: int) -> bool:
        """The write at ``index`` met a condition or a concurrent writer."""
        return index < len(self.codes) and self.codes[index] in _CONFLICTS

    @property
    def conflict(self) -> bool:
        """Caused by a concurrent writer, which a re-read resolves."""
        return bool(_CONFLICTS & set(self.codes))


class TableAccess(Protocol):
    """What the domain logic needs of the table. Raises StorageUnavailable when the
    table cannot answer, WriteCancelled when a condition refuses a write."""

    def get(
        self, key: Key, *, consistent: bool = False, attributes: Sequence[str] = ()
    ) -> dict[str, Any] | None: ...

    def get_many(
        self, keys: Sequence[Key], *, consistent: bool = False, attributes: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The items of the keys that exist (up to 100 keys; no order)."""

    def write(self, writes: Sequence[Write]) -> None:
        """All of ``writes`` or none (one write goes as a single request)."""

    def delete_all(self, keys: Sequence[Key]) -> None:
        """Delete many items (no conditions), in as few requests as the table allows."""

    def update_returning(self, update: Update) -> dict[str, Any]:
        """Apply one update and return the item's new attributes."""

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
        """One page of the items under ``pk`` whose sk starts with ``prefix``."""

    def query_all(
        self,
        pk: str,
        prefix: str = "",
        *,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Every item under ``pk`` (sk starting with ``prefix``), oldest first."""

    def query_pages(
        self,
        pk: str,
        prefix: str = "",
        *,
        page_size: int | None = None,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        """query_all page by page, for sweeps that write as they read."""

    def query_index(
        self, index: str, condition: str, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Every item of a secondary index matching a key condition."""

    def first_writer(
        self, cancelled: WriteCancelled, index: int, key: Key
    ) -> dict[str, Any] | None:
        """The item that refused the ``put_once`` at ``index``: from the cancellation
        when the table returned it, else read (consistently)."""
