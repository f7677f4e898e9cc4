"""The merge state machine's pure parts: what moves, under which conditions, and how
two profiles become one. The DynamoDB side is proven against moto in
tests/integration/test_identity_merge.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from threadline.items import customer_pk, message_from_item, message_item
from threadline.merge import (
    IN_FLIGHT_GRACE,
    copy_for_target,
    external_id_conflicts,
    in_flight,
    profile_merge_update,
    unchanged_condition,
)
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    Message,
    MessageStatus,
    StatusChange,
    TextPart,
)

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE, TARGET = "01J9Z8X7W6V5T4S3R2Q1P0SRC0", "01J9Z8X7W6V5T4S3R2Q1P0TGT0"


def message(
    direction: Direction = Direction.INBOUND, status: MessageStatus = MessageStatus.RECEIVED
) -> Message:
    return Message(
        id="01J9Z8X7W6V5T4S3R2Q1P0MSG1",
        customer_id=SOURCE,
        conversation_id="01J9Z8X7W6V5T4S3R2Q1P0CNV1",
        channel=Channel.SMS,
        direction=direction,
        provider="twilio",
        provider_message_id="SM" + "1" * 32,
        author_role=AuthorRole.CUSTOMER,
        sender=Identity.parse("phone:+15555550123"),
        received_at=AT,
        parts=[TextPart(text="Olá, ça va? 👋")],
        status=status,
        status_history=[StatusChange(status=status, at=AT)],
    )


def profile(customer_id: str, **values: Any) -> dict[str, Any]:
    return {
        "pk": customer_pk(customer_id),
        "sk": "PROFILE",
        "type": "customer",
        "customer_id": customer_id,
        "created_at": AT.isoformat(),
        **values,
    }


# ---------------------------------------------------------------- moving one item


def test_a_copied_message_keeps_its_id_and_names_the_survivor_everywhere():
    item = message_item(message(), raw_inline='{"Body": "x"}')
    copy = copy_for_target(item, SOURCE, TARGET)
    assert copy["pk"] == customer_pk(TARGET) and copy["sk"] == item["sk"]
    assert copy["customer_id"] == TARGET and copy["merged_from"] == SOURCE
    moved = message_from_item(copy)
    assert moved.customer_id == TARGET and moved.id == message().id
    assert moved.parts == message_from_item(item).parts  # non-ASCII intact
    assert copy["raw"] == item["raw"]
    assert item["pk"] == customer_pk(SOURCE)  # the original is not modified


def test_an_unknown_item_type_moves_whole():
    item = {"pk": customer_pk(SOURCE), "sk": "CONSENT#sms#marketing", "type": "consent", "x": 1}
    copy = copy_for_target(item, SOURCE, TARGET)
    assert copy == {**item, "pk": customer_pk(TARGET), "merged_from": SOURCE}


def test_the_delete_of_a_message_is_conditioned_on_its_mutable_state():
    item = message_item(message(Direction.OUTBOUND, MessageStatus.QUEUED))
    condition, names, values = unchanged_condition(item)
    watched = set(names.values())
    assert {"status", "message", "dispatch_state"} <= watched
    assert values[next(k for k, v in values.items() if v == "queued")] == "queued"
    # A claimed reply has a dispatch_state; an unclaimed one must still lack it.
    name = next(k for k, v in names.items() if v == "dispatch_state")
    assert f"attribute_not_exists({name})" in condition


def test_the_delete_of_a_conversation_is_conditioned_on_its_counters():
    item = {
        "pk": customer_pk(SOURCE),
        "sk": "CONV#1",
        "type": "conversation",
        "state": "open",
        "last_message_at": AT.isoformat(),
        "message_count": 3,
    }
    condition, names, values = unchanged_condition(item)
    assert set(names.values()) == {"state", "last_message_at", "message_count"}
    assert sorted(values.values(), key=str) == sorted(["open", AT.isoformat(), 3], key=str)
    assert condition.startswith("attribute_exists(pk)")


@pytest.mark.parametrize(
    ("state", "started", "waits"),
    [
        ("sending", AT - timedelta(seconds=5), True),
        ("sending", AT - IN_FLIGHT_GRACE - timedelta(seconds=1), False),  # the Lambda is gone
        ("sending", None, True),
        ("retry", AT - timedelta(seconds=5), False),
        ("done", AT - timedelta(seconds=5), False),
        (None, None, False),
    ],
)
def test_only_a_reply_being_sent_right_now_is_waited_for(state, started, waits):
    item = {
        **message_item(message(Direction.OUTBOUND, MessageStatus.QUEUED)),
        "dispatch_state": state,
        "dispatch_started_at": started.isoformat() if started else None,
    }
    item = {k: v for k, v in item.items() if v is not None}
    assert in_flight(item, AT) is waits


# ---------------------------------------------------------------- external ids


def test_different_ids_in_one_system_conflict_and_others_do_not():
    source = profile(SOURCE, external_ids={"salesforce": "003A", "hubspot": "h1", "zendesk": "z"})
    target = profile(TARGET, external_ids={"salesforce": "003B", "zendesk": "z"})
    assert external_id_conflicts(source, target) == {
        "salesforce": {"surviving": "003B", "absorbed": "003A"}
    }
    assert external_id_conflicts(profile(SOURCE), target) == {}


# ---------------------------------------------------------------- two profiles become one


def evaluate(update: str, names: dict[str, str], values: dict[str, Any], item: dict[str, Any]):
    """Apply the SET / ADD / DELETE clauses the merge builds to ``item`` (a tiny evaluator
    for exactly the forms profile_merge_update emits)."""
    result = json.loads(json.dumps(item, default=sorted))
    clauses = {"SET": "", "ADD": "", "DELETE": ""}
    current = None
    for token in update.split(" "):
        if token in clauses:
            current = token
            continue
        assert current is not None
        clauses[current] += token + " "
    for assignment in filter(None, (a.strip() for a in clauses["SET"].split(","))):
        path, value = (p.strip() for p in assignment.split("="))
        keys = [names[part] for part in path.split(".")]
        target = result
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = values[value]
    path, value = clauses["ADD"].split()
    result[names[path]] = sorted(set(result.get(names[path], [])) | values[value])
    path, value = clauses["DELETE"].split()
    result[names[path]] = sorted(set(result.get(names[path], [])) - values[value])
    return result


def test_the_survivor_gains_identities_consent_and_keeps_what_is_newer():
    earlier, later = (AT - timedelta(days=2)).isoformat(), AT.isoformat()
    source = profile(
        SOURCE,
        created_at=earlier,
        display_name="Ana",
        language="pt-BR",
        identities=["phone:+15555550001", "email:ana@example.com"],
        consent={"phone:+15555550001": {"status": "opted_out", "at": later}},
        help_requested={"phone:+15555550001": later},
        last_inbound={"sms": later, "whatsapp": earlier},
        last_channel="sms",
        last_message_at=later,
        tags=["vip", "late-payer"],
        external_ids={"hubspot": "h1"},
        aliases={"OLDER"},
    )
    target = profile(
        TARGET,
        identities=["phone:+15555550002"],
        consent={},
        help_requested={},
        last_inbound={"whatsapp": later},
        last_channel="whatsapp",
        last_message_at=(AT - timedelta(hours=1)).isoformat(),
        tags=["vip"],
        merging_from={SOURCE},
    )
    update, names, values, condition = profile_merge_update(source, target)
    merged = evaluate(update, names, values, target)
    assert merged["identities"] == [
        "phone:+15555550002",
        "phone:+15555550001",
        "email:ana@example.com",
    ]
    assert merged["consent"] == source["consent"]
    assert merged["help_requested"] == source["help_requested"]
    assert merged["last_inbound"] == {"sms": later, "whatsapp": later}  # the newer of each
    assert (merged["last_channel"], merged["last_message_at"]) == ("sms", later)
    assert merged["created_at"] == earlier  # the customer has existed since the older one
    assert (merged["display_name"], merged["language"]) == ("Ana", "pt-BR")
    assert merged["tags"] == ["vip", "late-payer"]
    assert merged["external_ids"] == {"hubspot": "h1"}
    assert merged["aliases"] == sorted({SOURCE, "OLDER"})
    assert merged["merging_from"] == []
    # Everything computed from the target's read is pinned in the condition.
    assert "attribute_not_exists(merge_state)" in condition
    assert condition.count("size(") == 2  # identities and tags
    last_message = next(k for k, v in names.items() if v == "last_message_at")
    assert f"{last_message} = " in condition


def test_the_survivors_own_newer_values_and_its_name_win():
    later, earlier = AT.isoformat(), (AT - timedelta(days=1)).isoformat()
    source = profile(
        SOURCE,
        display_name="Old name",
        identities=["phone:+15555550001"],
        consent={"phone:+15555550001": {"status": "opted_in", "at": earlier}},
        last_inbound={"sms": earlier},
        last_message_at=earlier,
        external_ids={"salesforce": "003A"},
    )
    target = profile(
        TARGET,
        display_name="Ana",
        identities=["phone:+15555550002", "phone:+15555550001"],
        consent={"phone:+15555550001": {"status": "opted_out", "at": later}},
        last_inbound={"sms": later},
        last_message_at=later,
        external_ids={"salesforce": "003B"},
    )
    update, names, values, _ = profile_merge_update(source, target)
    merged = evaluate(update, names, values, target)
    for attribute in ("display_name", "identities", "consent", "last_inbound", "external_ids"):
        assert merged[attribute] == json.loads(json.dumps(target[attribute])), attribute
    assert merged["aliases"] == [SOURCE]
