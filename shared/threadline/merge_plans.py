"""The merge's decisions and writes, without I/O (threadline.merge runs them).

Which profile attributes the survivor takes, how a source item is filed under the
target, which condition proves an item unchanged since it was read, and the writes
of each step of the merge's state machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from threadline.dal.base import Delete, Update, Write, put_once
from threadline.items import (
    CONVERSATION_POINTER_SK,
    EXTERNAL_ID_SK,
    IDENT_SK,
    PROFILE_SK,
    conversation_pointer_pk,
    customer_pk,
    external_id_pk,
)

MERGING = "merging"
MERGED = "merged"
# A reply the dispatcher claimed longer ago than this is not in flight any more (its
# Lambda has timed out), so the merge moves it rather than wait for it forever.
IN_FLIGHT_GRACE = timedelta(minutes=15)
# Attributes of a profile that are personal data and are dropped from the tombstone.
_TOMBSTONE_DROPS = ("display_name", "consent", "help_requested", "last_inbound", "language", "tags")


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
    if item.get("type") != "message" or item.get("dispatch_state") not in ("sending", "calling"):
        return False
    started = item.get("dispatch_started_at")
    if not started:
        return True
    return now - datetime.fromisoformat(str(started)) < IN_FLIGHT_GRACE


def item_size(item: dict[str, Any]) -> int:
    return sum(len(str(k)) + _value_size(v) for k, v in item.items())


def _value_size(value: Any) -> int:
    # A binary attribute (a message's compressed document) is boto3's Binary.
    data = getattr(value, "value", value)
    return len(data) if isinstance(data, bytes | bytearray) else len(str(value))


def begin_writes(source_id: str, target_id: str, *, force: bool, now: datetime) -> list[Write]:
    """Mark the source ``merging`` into the target; the target records it incoming."""
    return [
        Update(
            key=(customer_pk(source_id), PROFILE_SK),
            expression=(
                "SET merge_state = :merging, merged_into = :target, "
                "merge_started_at = :now, merge_forced = :force"
            ),
            condition=(
                "attribute_exists(pk) AND attribute_not_exists(merge_state) "
                "AND attribute_not_exists(merging_from)"
            ),
            values={
                ":merging": MERGING,
                ":target": target_id,
                ":now": now.isoformat(),
                ":force": force,
            },
        ),
        # The survivor records the merges coming in, so it cannot itself begin
        # merging into a third customer until they are done.
        Update(
            key=(customer_pk(target_id), PROFILE_SK),
            expression="ADD merging_from :source",
            condition="attribute_exists(pk) AND attribute_not_exists(merge_state)",
            values={":source": {source_id}},
        ),
    ]


def identity_move_write(identity_key: str, source_id: str, target_id: str) -> Update:
    """An identity item moves to the target, if it still names the source."""
    return Update(
        key=(identity_key, IDENT_SK),
        expression="SET customer_id = :target, merged_from = :source",
        condition="customer_id = :source",
        values={":target": target_id, ":source": source_id},
    )


def move_writes(item: dict[str, Any], source_id: str, target_id: str) -> list[Write]:
    """File a source item under the target and delete it, if unchanged since read."""
    condition, names, values = unchanged_condition(item)
    writes: list[Write] = [
        put_once(copy_for_target(item, source_id, target_id)),
        Delete((str(item["pk"]), str(item["sk"])), condition=condition, names=names, values=values),
    ]
    if item.get("type") == "conversation":
        # A moved conversation's id must keep resolving: its pointer names the survivor.
        conversation_id = str(item["sk"]).removeprefix("CONV#")
        writes.append(
            Update(
                key=(conversation_pointer_pk(conversation_id), CONVERSATION_POINTER_SK),
                # An upsert: conversations written before pointers existed get one.
                expression="SET customer_id = :target, conversation_id = :cid, #type = :type",
                names={"#type": "type"},
                values={
                    ":target": target_id,
                    ":cid": conversation_id,
                    ":type": "conversation_pointer",
                },
            )
        )
    return writes


def external_id_move_write(system: str, value: str, source_id: str, target_id: str) -> Update:
    return Update(
        key=(external_id_pk(system, value), EXTERNAL_ID_SK),
        expression="SET customer_id = :target",
        condition="customer_id IN (:source, :target)",
        values={":source": source_id, ":target": target_id},
    )


def finish_writes(
    source_id: str, target_id: str, source: dict[str, Any], target: dict[str, Any], now: datetime
) -> list[Write]:
    """The survivor absorbs the source's profile; the source becomes a tombstone."""
    update, names, values, condition = profile_merge_update(source, target)
    drops = {f"#d{i}": attribute for i, attribute in enumerate(_TOMBSTONE_DROPS)}
    return [
        Update(
            key=(customer_pk(target_id), PROFILE_SK),
            expression=update,
            condition=condition,
            names=names,
            values=values,
        ),
        Update(
            key=(customer_pk(source_id), PROFILE_SK),
            expression="SET merge_state = :merged, merged_at = :now REMOVE " + ", ".join(drops),
            condition="merge_state = :merging AND merged_into = :target",
            names=drops,
            values={
                ":merged": MERGED,
                ":merging": MERGING,
                ":target": target_id,
                ":now": now.isoformat(),
            },
        ),
    ]


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
