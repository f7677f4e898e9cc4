"""Merging one customer into another: a resumable state machine recorded on the items.

The absorbed customer (the *source*) carries the state on its PROFILE::

    (none) --begin--> merge_state=merging, merged_into=<target> --finish--> merged

Every step is conditional and idempotent, so a merge stopped anywhere (a crash, a
timeout, ``max_items``) is finished by running it again with the same two ids:

1. ``begin``: the source PROFILE becomes ``merging`` (condition: no merge state yet)
   and the target is checked to be a live customer, in one transaction. From here
   the API answers for the target when asked about the source (the alias), and the
   send API and automatic identity linking refuse to write to the source.
2. ``identities``: each identity item moves to the target (condition: it still names
   the source), in one transaction with the conversation it points to, so an inbound
   message never finds its identity on one customer and its conversation on the other.
   Inbound messages re-read the identity when the move wins the race (their
   transaction guards the identity), so from here nothing new lands on the source.
3. ``items``: the source partition (every item but PROFILE: messages, conversations,
   any other per-customer record) is swept page by page; each item is put under the
   target with ``merged_from`` (so the publisher does not announce a copy as new)
   and deleted from the source, both in one transaction, the delete conditioned on
   the item being unchanged since it was read. Messages keep their ULIDs, so order
   and cursors stay valid. The sweep repeats until the partition holds only the
   PROFILE: a message that committed on the source just before its identity moved
   is caught by the next pass. A reply the dispatcher is sending right now is left
   until it is done (at most ``IN_FLIGHT_GRACE``); the merge then answers "still
   merging" and a re-run moves it.
4. ``external_ids``: the target adopts the source's CRM ids it has no id for in
   that system; their pointer items move to the target.
5. ``finish``: one transaction merges the profile (identities, consent, HELP
   requests, last inbound per channel, name, language, tags, external ids, aliases)
   into the target and turns the source PROFILE into a ``merged`` tombstone that
   points at the target. The stream turns that change into ``customer.merged``.

``checkpoint(step)`` is called after each step (and after each batch of items) with
the step's name: tests inject faults there, as a crash would strike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from threadline.dal.base import Write, WriteCancelled
from threadline.errors import Conflict, MalformedRequest, NotFound, StorageUnavailable
from threadline.items import IDENT_SK, PROFILE_SK, conversation_sk, customer_pk, identity_pk
from threadline.logs import logger
from threadline.merge_plans import (
    IN_FLIGHT_GRACE,
    MERGED,
    MERGING,
    begin_writes,
    copy_for_target,
    external_id_conflicts,
    external_id_move_write,
    finish_writes,
    identity_move_write,
    in_flight,
    item_size,
    move_writes,
    profile_merge_update,
    unchanged_condition,
)
from threadline.schema import Identity, utc_now

if TYPE_CHECKING:
    from threadline.dal.base import TableAccess
    from threadline.store import TimelineStore

__all__ = [
    "IN_FLIGHT_GRACE",
    "MERGED",
    "MERGING",
    "copy_for_target",
    "external_id_conflicts",
    "in_flight",
    "profile_merge_update",
    "unchanged_condition",
]

# Step names passed to ``checkpoint``, in order.
STEPS = (
    "begun",
    "identities_moved",
    "items_batch",
    "items_moved",
    "external_ids_moved",
    "finished",
)

# Two operations (put + delete) per item: 10 items stay well inside TransactWriteItems'
# 100 operations, and the byte budget inside its 4 MB.
BATCH_ITEMS = 10
BATCH_BYTES = 2_000_000
PAGE_SIZE = 100
# Passes that find only in-flight replies before the merge reports "still merging".
IN_FLIGHT_PASSES = 3
# Sweeps of the source partition before one call gives up and reports "still merging".
MAX_PASSES = 20
_ATTEMPTS = 5


class MergeStopped(Exception):
    """Raised by a ``checkpoint`` to stop a merge at a step boundary (tests, shutdown)."""


@dataclass(frozen=True)
class MergeResult:
    surviving_customer_id: str
    absorbed_customer_id: str
    state: str
    """``merged`` when done; ``merging`` when it stopped early and must be run again."""
    moved_items: int = 0
    waiting_items: int = 0
    """Replies in flight at the dispatcher that a re-run will move."""


class Merger:
    """Runs (or resumes) the merge of one customer into another."""

    def __init__(
        self,
        store: TimelineStore,
        *,
        checkpoint: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
        pause: Callable[[float], None] = time.sleep,
        batch_items: int = BATCH_ITEMS,
    ) -> None:
        self.store = store
        self.batch_items = max(1, min(batch_items, BATCH_ITEMS))
        self.checkpoint = checkpoint or (lambda step: None)
        self.clock = clock
        self.pause = pause

    @property
    def data(self) -> TableAccess:
        return self.store.data

    def merge(
        self,
        source_id: str,
        target_id: str,
        *,
        force: bool = False,
        max_items: int | None = None,
        deadline: float | None = None,
    ) -> MergeResult:
        """Merge ``source_id`` into ``target_id``, or continue that merge.

        ``max_items`` and ``deadline`` (a ``time.monotonic()`` value) bound the work
        of this call; the result says ``merging`` when it stopped early.
        """
        if source_id == target_id:
            raise MalformedRequest("a customer cannot be merged into itself", code="invalid_merge")
        try:
            source = self._profile(source_id)
            if source is None:
                raise NotFound("no such customer to merge")
            state = source.get("merge_state")
            if state is not None and source.get("merged_into") != target_id:
                raise Conflict(
                    "this customer is already merged (or being merged) into another one",
                    code="customer_merged",
                    details={"customer_id": source_id, "merged_into": source.get("merged_into")},
                )
            if state == MERGED:
                return MergeResult(target_id, source_id, MERGED)
            target = self._profile(target_id)
            if target is None:
                raise NotFound("no such customer to merge into")
            if target.get("merge_state") is not None:
                raise Conflict(
                    "the surviving customer is itself merged into another one",
                    code="customer_merged",
                    details={"customer_id": target_id, "merged_into": target.get("merged_into")},
                )
            if state is None:
                conflicts = external_id_conflicts(source, target)
                if conflicts and not force:
                    raise Conflict(
                        "the customers carry different external ids for the same system; "
                        "merge with force=true to keep the surviving customer's",
                        code="external_id_conflict",
                        details=conflicts,
                    )
                self._begin(source_id, target_id, force=force)
                source = self._profile(source_id) or source
            self.checkpoint("begun")
            self._move_identities(source, source_id, target_id)
            self.checkpoint("identities_moved")
            moved, waiting, complete = self._move_items(
                source_id, target_id, max_items=max_items, deadline=deadline
            )
            if not complete:
                logger.info(
                    "merge paused",
                    extra={"customer_id": target_id, "absorbed": source_id, "moved": moved},
                )
                return MergeResult(target_id, source_id, MERGING, moved, waiting)
            self.checkpoint("items_moved")
            self._move_external_ids(source_id, target_id)
            self.checkpoint("external_ids_moved")
            self._finish(source_id, target_id)
            self.checkpoint("finished")
        except (StorageUnavailable, WriteCancelled) as exc:
            raise StorageUnavailable("the merge could not be written; run it again") from exc
        logger.info(
            "customers merged",
            extra={"customer_id": target_id, "absorbed": source_id, "moved": moved},
        )
        return MergeResult(target_id, source_id, MERGED, moved)

    # ------------------------------------------------------------------ steps

    def _profile(self, customer_id: str) -> dict[str, Any] | None:
        return self.store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)

    def _begin(self, source_id: str, target_id: str, *, force: bool) -> None:
        try:
            self.data.write(begin_writes(source_id, target_id, force=force, now=self.clock()))
        except WriteCancelled as exc:
            # Someone else began a merge of one of the two at the same moment.
            source = self._profile(source_id) or {}
            if source.get("merge_state") and source.get("merged_into") == target_id:
                return  # a concurrent request began this very merge: carry on
            raise Conflict(
                "one of the customers is being merged by another request",
                code="merge_in_progress",
                details={"customer_id": source_id, "merged_into": source.get("merged_into")},
            ) from exc

    def _move_identities(self, source: dict[str, Any], source_id: str, target_id: str) -> None:
        for text in source.get("identities") or []:
            self._move_identity(identity_pk(Identity.parse(str(text))), source_id, target_id)

    def _move_identity(self, key: str, source_id: str, target_id: str) -> None:
        for _ in range(_ATTEMPTS):
            item = self.store.get_item(key, IDENT_SK, consistent=True)
            if item is None or item.get("customer_id") != source_id:
                return  # moved already (a re-run), or released
            writes: list[Write] = [identity_move_write(key, source_id, target_id)]
            conversation_id = item.get("conversation_id")
            if conversation_id:
                conversation = self.store.get_item(
                    customer_pk(source_id), conversation_sk(str(conversation_id)), consistent=True
                )
                if conversation is not None:
                    writes += move_writes(conversation, source_id, target_id)
            try:
                self.data.write(writes)
                return
            except WriteCancelled as cancelled:
                if not cancelled.conflict:
                    raise
                self.pause(0.02)  # an inbound message touched it: re-read and retry
        raise StorageUnavailable("an identity kept changing during the merge; run it again")

    def _move_items(
        self, source_id: str, target_id: str, *, max_items: int | None, deadline: float | None
    ) -> tuple[int, int, bool]:
        """Sweep the source partition until only its PROFILE is left: (moved, waiting, done)."""
        moved = 0
        idle_passes = 0
        for _ in range(MAX_PASSES):
            found = 0
            waiting = 0
            for page in self.data.query_pages(
                customer_pk(source_id), page_size=PAGE_SIZE, consistent=True
            ):
                now = self.clock()
                page = [item for item in page if item["sk"] != PROFILE_SK]
                found += len(page)
                movable = [item for item in page if not in_flight(item, now)]
                waiting += len(page) - len(movable)
                if max_items is not None:
                    movable = movable[: max(0, max_items - moved)]
                moved += self._write_batches(movable, source_id, target_id)
                if (max_items is not None and moved >= max_items) or (
                    deadline is not None and time.monotonic() > deadline
                ):
                    return moved, waiting, False
            if found == 0:
                return moved, 0, True
            if found == waiting:
                idle_passes += 1
                if idle_passes >= IN_FLIGHT_PASSES:
                    return moved, waiting, False
                self.pause(0.2)
        return moved, 0, False  # items that keep changing: a re-run picks them up

    def _write_batches(self, items: list[dict[str, Any]], source_id: str, target_id: str) -> int:
        moved = 0
        batch: list[dict[str, Any]] = []
        size = 0
        for item in items:
            size_of = item_size(item)
            if batch and (len(batch) >= self.batch_items or size + size_of > BATCH_BYTES):
                moved += self._write_batch(batch, source_id, target_id)
                batch, size = [], 0
            batch.append(item)
            size += size_of
        if batch:
            moved += self._write_batch(batch, source_id, target_id)
        return moved

    def _write_batch(self, batch: list[dict[str, Any]], source_id: str, target_id: str) -> int:
        try:
            self.data.write([w for item in batch for w in move_writes(item, source_id, target_id)])
            self.checkpoint("items_batch")
            return len(batch)
        except WriteCancelled:
            pass
        # One item changed under us (a status callback, an edit): move the others one
        # by one; the changed one is re-read by the next pass of the sweep.
        moved = 0
        for item in batch:
            try:
                self.data.write(move_writes(item, source_id, target_id))
                moved += 1
            except WriteCancelled:
                pass
        self.checkpoint("items_batch")
        return moved

    def _move_external_ids(self, source_id: str, target_id: str) -> None:
        source = self._profile(source_id) or {}
        target = self._profile(target_id) or {}
        theirs = source.get("external_ids") or {}
        mine = target.get("external_ids") or {}
        for system, value in theirs.items():
            if system in mine and mine[system] != value:
                continue  # forced merge: the survivor keeps its own; the alias resolves the other
            move = external_id_move_write(system, str(value), source_id, target_id)
            # Held by a third customer now: not ours to move.
            with contextlib.suppress(WriteCancelled):
                self.data.write([move])

    def _finish(self, source_id: str, target_id: str) -> None:
        for _ in range(_ATTEMPTS):
            source = self._profile(source_id)
            target = self._profile(target_id)
            if source is None or target is None:
                raise NotFound("a customer of the merge disappeared")
            if source.get("merge_state") == MERGED:
                return
            try:
                self.data.write(finish_writes(source_id, target_id, source, target, self.clock()))
                return
            except WriteCancelled as cancelled:
                if not cancelled.conflict:
                    raise
                self.pause(0.02)  # the target changed (an inbound message): recompute
        raise StorageUnavailable("the surviving profile kept changing; run the merge again")
