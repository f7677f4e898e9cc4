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

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from threadline.errors import Conflict, MalformedRequest, NotFound, StorageUnavailable
from threadline.items import (
    CONVERSATION_POINTER_SK,
    EXTERNAL_ID_SK,
    IDENT_SK,
    PROFILE_SK,
    cancellation_reasons,
    conversation_pointer_pk,
    conversation_sk,
    customer_pk,
    external_id_pk,
    from_item,
    is_conflict,
    to_item,
)
from threadline.logs import logger
from threadline.schema import utc_now

if TYPE_CHECKING:
    from threadline.store import TimelineStore

MERGING = "merging"
MERGED = "merged"
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
# A reply the dispatcher claimed longer ago than this is not in flight any more (its
# Lambda has timed out), so the merge moves it rather than wait for it forever.
IN_FLIGHT_GRACE = timedelta(minutes=15)
# Passes that find only in-flight replies before the merge reports "still merging".
IN_FLIGHT_PASSES = 3
# Sweeps of the source partition before one call gives up and reports "still merging".
MAX_PASSES = 20
_ATTEMPTS = 5
# Attributes of a profile that are personal data and are dropped from the tombstone.
_TOMBSTONE_DROPS = ("display_name", "consent", "help_requested", "last_inbound", "language", "tags")


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


def external_id_conflicts(
    source: dict[str, Any], target: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """Systems in which the two profiles carry different external ids."""
    mine = target.get("external_ids") or {}
    theirs = source.get("external_ids") or {}
    return {
        system: {"surviving": str(mine[system]), "absorbed": str(value)}
        for system, value in theirs.items()
        if system in mine and mine[system] != value
    }


def copy_for_target(item: dict[str, Any], source_id: str, target_id: str) -> dict[str, Any]:
    """``item`` of the source partition as it is filed under the target."""
    copy = dict(item)
    copy["pk"] = customer_pk(target_id)
    if "customer_id" in copy:
        copy["customer_id"] = target_id
    if copy.get("type") == "message" and isinstance(copy.get("message"), str):
        document = json.loads(copy["message"])
        document["customer_id"] = target_id
        copy["message"] = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    copy["merged_from"] = source_id
    return copy


def unchanged_condition(item: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A condition that holds only while the source item is as we read it."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts = ["attribute_exists(pk)"]
    watched: tuple[str, ...]
    if item.get("type") == "message":
        watched = ("status", "message", "dispatch_state", "channel", "provider_message_id")
    elif item.get("type") == "conversation":
        watched = ("state", "last_message_at", "message_count")
    else:
        watched = ()
    for index, attribute in enumerate(watched):
        name = f"#w{index}"
        names[name] = attribute
        if attribute in item and item[attribute] is not None:
            values[f":w{index}"] = item[attribute]
            parts.append(f"{name} = :w{index}")
        else:
            parts.append(f"attribute_not_exists({name})")
    return " AND ".join(parts), names, values


def in_flight(item: dict[str, Any], now: datetime) -> bool:
    """A reply the dispatcher has claimed and may be sending right now."""
    if item.get("type") != "message" or item.get("dispatch_state") != "sending":
        return False
    started = item.get("dispatch_started_at")
    if not started:
        return True
    return now - datetime.fromisoformat(str(started)) < IN_FLIGHT_GRACE


def _item_size(item: dict[str, Any]) -> int:
    return sum(len(str(k)) + len(str(v)) for k, v in item.items())


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
    def _table(self) -> str:
        return self.store.table

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
        from botocore.exceptions import BotoCoreError, ClientError

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
        except (ClientError, BotoCoreError) as exc:
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
        from botocore.exceptions import ClientError

        try:
            self.store.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"pk": customer_pk(source_id), "sk": PROFILE_SK}),
                            "UpdateExpression": (
                                "SET merge_state = :merging, merged_into = :target, "
                                "merge_started_at = :now, merge_forced = :force"
                            ),
                            "ConditionExpression": (
                                "attribute_exists(pk) AND attribute_not_exists(merge_state) "
                                "AND attribute_not_exists(merging_from)"
                            ),
                            "ExpressionAttributeValues": to_item(
                                {
                                    ":merging": MERGING,
                                    ":target": target_id,
                                    ":now": self.clock().isoformat(),
                                    ":force": force,
                                }
                            ),
                        }
                    },
                    {
                        # The survivor records the merges coming in, so it cannot itself
                        # begin merging into a third customer until they are done.
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"pk": customer_pk(target_id), "sk": PROFILE_SK}),
                            "UpdateExpression": "ADD merging_from :source",
                            "ConditionExpression": (
                                "attribute_exists(pk) AND attribute_not_exists(merge_state)"
                            ),
                            "ExpressionAttributeValues": to_item({":source": {source_id}}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if not cancellation_reasons(exc):
                raise
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
        from threadline.schema import Identity

        for text in source.get("identities") or []:
            self._move_identity(Identity.parse(str(text)), source_id, target_id)

    def _move_identity(self, identity: Any, source_id: str, target_id: str) -> None:
        from botocore.exceptions import ClientError

        from threadline.items import identity_pk

        key = {"pk": identity_pk(identity), "sk": IDENT_SK}
        for _ in range(_ATTEMPTS):
            item = self.store.get_item(key["pk"], key["sk"], consistent=True)
            if item is None or item.get("customer_id") != source_id:
                return  # moved already (a re-run), or released
            operations: list[Any] = [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_item(key),
                        "UpdateExpression": "SET customer_id = :target, merged_from = :source",
                        "ConditionExpression": "customer_id = :source",
                        "ExpressionAttributeValues": to_item(
                            {":target": target_id, ":source": source_id}
                        ),
                    }
                }
            ]
            conversation_id = item.get("conversation_id")
            if conversation_id:
                conversation = self.store.get_item(
                    customer_pk(source_id), conversation_sk(str(conversation_id)), consistent=True
                )
                if conversation is not None:
                    operations.extend(self._move_operations(conversation, source_id, target_id))
            try:
                self.store.dynamodb.transact_write_items(TransactItems=operations)
                return
            except ClientError as exc:
                if not is_conflict(exc):
                    raise
                self.pause(0.02)  # an inbound message touched it: re-read and retry
        raise StorageUnavailable("an identity kept changing during the merge; run it again")

    def _move_operations(self, item: dict[str, Any], source_id: str, target_id: str) -> list[Any]:
        condition, names, values = unchanged_condition(item)
        delete: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({"pk": item["pk"], "sk": item["sk"]}),
            "ConditionExpression": condition,
        }
        if names:
            delete["ExpressionAttributeNames"] = names
        if values:
            delete["ExpressionAttributeValues"] = to_item(values)
        return [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(copy_for_target(item, source_id, target_id)),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Delete": delete},
            *self._pointer_operations(item, target_id),
        ]

    def _pointer_operations(self, item: dict[str, Any], target_id: str) -> list[Any]:
        """A moved conversation's id must keep resolving: its pointer names the survivor."""
        if item.get("type") != "conversation":
            return []
        conversation_id = str(item["sk"]).removeprefix("CONV#")
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": to_item(
                        {
                            "pk": conversation_pointer_pk(conversation_id),
                            "sk": CONVERSATION_POINTER_SK,
                        }
                    ),
                    # An upsert: conversations written before pointers existed get one.
                    "UpdateExpression": (
                        "SET customer_id = :target, conversation_id = :cid, #type = :type"
                    ),
                    "ExpressionAttributeNames": {"#type": "type"},
                    "ExpressionAttributeValues": to_item(
                        {
                            ":target": target_id,
                            ":cid": conversation_id,
                            ":type": "conversation_pointer",
                        }
                    ),
                }
            }
        ]

    def _move_items(
        self, source_id: str, target_id: str, *, max_items: int | None, deadline: float | None
    ) -> tuple[int, int, bool]:
        """Sweep the source partition until only its PROFILE is left: (moved, waiting, done)."""
        moved = 0
        idle_passes = 0
        for _ in range(MAX_PASSES):
            found = 0
            waiting = 0
            start: dict[str, Any] | None = None
            while True:
                query: dict[str, Any] = {
                    "TableName": self._table,
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": to_item({":pk": customer_pk(source_id)}),
                    "ConsistentRead": True,
                    "Limit": PAGE_SIZE,
                }
                if start:
                    query["ExclusiveStartKey"] = start
                response = self.store.dynamodb.query(**query)
                now = self.clock()
                page = [from_item(raw) for raw in response.get("Items", [])]
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
                start = response.get("LastEvaluatedKey")
                if not start:
                    break
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
            item_size = _item_size(item)
            if batch and (len(batch) >= self.batch_items or size + item_size > BATCH_BYTES):
                moved += self._write_batch(batch, source_id, target_id)
                batch, size = [], 0
            batch.append(item)
            size += item_size
        if batch:
            moved += self._write_batch(batch, source_id, target_id)
        return moved

    def _write_batch(self, batch: list[dict[str, Any]], source_id: str, target_id: str) -> int:
        from botocore.exceptions import ClientError

        operations = [
            op for item in batch for op in self._move_operations(item, source_id, target_id)
        ]
        try:
            self.store.dynamodb.transact_write_items(TransactItems=operations)
            self.checkpoint("items_batch")
            return len(batch)
        except ClientError as exc:
            if not cancellation_reasons(exc):
                raise
        # One item changed under us (a status callback, an edit): move the others one
        # by one; the changed one is re-read by the next pass of the sweep.
        moved = 0
        for item in batch:
            try:
                self.store.dynamodb.transact_write_items(
                    TransactItems=self._move_operations(item, source_id, target_id)
                )
                moved += 1
            except ClientError as exc:
                if not cancellation_reasons(exc):
                    raise
        self.checkpoint("items_batch")
        return moved

    def _move_external_ids(self, source_id: str, target_id: str) -> None:
        from botocore.exceptions import ClientError

        source = self._profile(source_id) or {}
        target = self._profile(target_id) or {}
        theirs = source.get("external_ids") or {}
        mine = target.get("external_ids") or {}
        for system, value in theirs.items():
            if system in mine and mine[system] != value:
                continue  # forced merge: the survivor keeps its own; the alias resolves the other
            try:
                self.store.dynamodb.update_item(
                    TableName=self._table,
                    Key=to_item({"pk": external_id_pk(system, str(value)), "sk": EXTERNAL_ID_SK}),
                    UpdateExpression="SET customer_id = :target",
                    ConditionExpression="customer_id IN (:source, :target)",
                    ExpressionAttributeValues=to_item({":source": source_id, ":target": target_id}),
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise

    def _finish(self, source_id: str, target_id: str) -> None:
        from botocore.exceptions import ClientError

        for _ in range(_ATTEMPTS):
            source = self._profile(source_id)
            target = self._profile(target_id)
            if source is None or target is None:
                raise NotFound("a customer of the merge disappeared")
            if source.get("merge_state") == MERGED:
                return
            update, names, values, condition = profile_merge_update(source, target)
            drops = {f"#d{i}": attribute for i, attribute in enumerate(_TOMBSTONE_DROPS)}
            tombstone = "SET merge_state = :merged, merged_at = :now REMOVE " + ", ".join(drops)
            try:
                self.store.dynamodb.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": to_item({"pk": customer_pk(target_id), "sk": PROFILE_SK}),
                                "UpdateExpression": update,
                                "ConditionExpression": condition,
                                "ExpressionAttributeNames": names,
                                "ExpressionAttributeValues": to_item(values),
                            }
                        },
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": to_item({"pk": customer_pk(source_id), "sk": PROFILE_SK}),
                                "UpdateExpression": tombstone,
                                "ConditionExpression": (
                                    "merge_state = :merging AND merged_into = :target"
                                ),
                                "ExpressionAttributeNames": drops,
                                "ExpressionAttributeValues": to_item(
                                    {
                                        ":merged": MERGED,
                                        ":merging": MERGING,
                                        ":target": target_id,
                                        ":now": self.clock().isoformat(),
                                    }
                                ),
                            }
                        },
                    ]
                )
                return
            except ClientError as exc:
                if not is_conflict(exc):
                    raise
                self.pause(0.02)  # the target changed (an inbound message): recompute
        raise StorageUnavailable("the surviving profile kept changing; run the merge again")


def _later(a: Any, b: Any) -> bool:
    """Whether ISO timestamp ``a`` is later than ``b`` (absent counts as earliest)."""
    if not a:
        return False
    if not b:
        return True
    return datetime.fromisoformat(str(a)) > datetime.fromisoformat(str(b))


def _newer_record(mine: Any, theirs: Any) -> bool:
    """Whether the source's consent record ``theirs`` should replace the target's."""
    if not isinstance(theirs, dict):
        return False
    if not isinstance(mine, dict):
        return True
    return _later(theirs.get("at"), mine.get("at"))


def profile_merge_update(
    source: dict[str, Any], target: dict[str, Any]
) -> tuple[str, dict[str, str], dict[str, Any], str]:
    """The target PROFILE update that absorbs ``source``: (update, names, values, condition).

    The condition pins every target attribute the update was computed from, so a
    concurrent inbound message on the target makes the transaction fail and the
    update is recomputed from a fresh read.
    """
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []
    conditions = ["attribute_exists(pk)", "attribute_not_exists(merge_state)"]

    def name(attribute: str) -> str:
        key = f"#a{len(names)}"
        names[key] = attribute
        return key

    def value(v: Any) -> str:
        key = f":v{len(values)}"
        values[key] = v
        return key

    def pin(path: str, seen: Any) -> None:
        if seen is None:
            conditions.append(f"attribute_not_exists({path})")
        else:
            conditions.append(f"{path} = {value(seen)}")

    source_identities = [str(i) for i in source.get("identities") or []]
    target_identities = [str(i) for i in target.get("identities") or []]
    new_identities = [i for i in source_identities if i not in target_identities]
    if new_identities:
        path = name("identities")
        sets.append(f"{path} = {value(target_identities + new_identities)}")
        if "identities" in target:
            conditions.append(f"size({path}) = {value(len(target_identities))}")
        else:
            conditions.append(f"attribute_not_exists({path})")

    choosers: dict[str, Callable[[Any, Any], bool]] = {
        "consent": _newer_record,
        "help_requested": lambda mine, theirs: _later(theirs, mine),
        "last_inbound": lambda mine, theirs: _later(theirs, mine),
        "external_ids": lambda mine, theirs: mine is None,
    }
    for attribute, take in choosers.items():
        theirs_map = source.get(attribute) or {}
        mine_map = target.get(attribute)
        chosen = {key: v for key, v in theirs_map.items() if take((mine_map or {}).get(key), v)}
        if not chosen:
            continue
        path = name(attribute)
        if mine_map is None:
            sets.append(f"{path} = {value(chosen)}")
            conditions.append(f"attribute_not_exists({path})")
            continue
        for key, v in chosen.items():
            entry = f"{path}.{name(key)}"
            sets.append(f"{entry} = {value(v)}")
            pin(entry, mine_map.get(key))

    for attribute in ("display_name", "language"):
        if source.get(attribute) and not target.get(attribute):
            path = name(attribute)
            sets.append(f"{path} = {value(source[attribute])}")
            conditions.append(f"attribute_not_exists({path})")

    if _later(source.get("last_message_at"), target.get("last_message_at")):
        last = name("last_message_at")
        sets.append(f"{last} = {value(source['last_message_at'])}")
        if source.get("last_channel"):
            sets.append(f"{name('last_channel')} = {value(source['last_channel'])}")
        pin(last, target.get("last_message_at"))

    if _later(target.get("created_at"), source.get("created_at")):
        created = name("created_at")
        sets.append(f"{created} = {value(source['created_at'])}")
        pin(created, target.get("created_at"))

    source_tags = list(source.get("tags") or [])
    target_tags = list(target.get("tags") or [])
    extra_tags = [t for t in source_tags if t not in target_tags]
    if extra_tags:
        path = name("tags")
        sets.append(f"{path} = {value(target_tags + extra_tags)}")
        if "tags" in target:
            conditions.append(f"size({path}) = {value(len(target_tags))}")
        else:
            conditions.append(f"attribute_not_exists({path})")

    aliases = {str(source["customer_id"]), *(str(a) for a in source.get("aliases") or [])}
    update = ("SET " + ", ".join(sets) + " " if sets else "") + (
        f"ADD {name('aliases')} {value(aliases)} "
        f"DELETE {name('merging_from')} {value({str(source['customer_id'])})}"
    )
    return update, names, values, " AND ".join(conditions)
