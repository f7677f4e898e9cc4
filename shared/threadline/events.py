"""Events for CRMs, made from committed table writes (the outbox).

Handlers write only to DynamoDB. The publisher reads the table's stream and turns
each committed item change into the events below on the ``threadline`` EventBridge
bus, so no event is lost (the stream keeps a change until it is published) and
none is invented (a write that did not commit is not on the stream).

Every event carries ``id`` (stable for one change, so a redelivery can be
deduplicated), ``schema_version``, ``type`` (also the EventBridge ``detail-type``),
``occurred_at``, ``customer_id`` and the object. JSON Schemas: infra/schemas/event.*.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from threadline.items import from_item, message_from_item
from threadline.schema import (
    SCHEMA_VERSION,
    Conversation,
    Customer,
    Direction,
    Identity,
    Message,
    MessageStatus,
    utc_now,
)
from threadline.store import profile_from_item

EVENT_SOURCE = "threadline"


class _Event(BaseModel):
    # Fields with defaults are always in the JSON we emit: the schema says so, so
    # consumers can rely on them being present.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    schema_version: Literal["1"] = SCHEMA_VERSION
    id: str
    occurred_at: datetime
    customer_id: str


class MessageReceived(_Event):
    type: Literal["message.received"] = "message.received"
    message: Message


class MessageQueued(_Event):
    type: Literal["message.queued"] = "message.queued"
    message: Message


class MessageSent(_Event):
    type: Literal["message.sent"] = "message.sent"
    message: Message


class MessageStatusChanged(_Event):
    type: Literal["message.status_changed"] = "message.status_changed"
    message: Message
    previous_status: MessageStatus


class CustomerCreated(_Event):
    type: Literal["customer.created"] = "customer.created"
    customer: Customer


class ConversationOpened(_Event):
    type: Literal["conversation.opened"] = "conversation.opened"
    conversation: Conversation


class CustomerIdentityLinked(_Event):
    """An identity joined a customer: through the API, or automatically (Slack's
    confirmed e-mail matching a customer's verified address)."""

    type: Literal["customer.identity_linked"] = "customer.identity_linked"
    identity: Identity
    link_source: Literal["api", "automatic"]
    linked_via: Identity | None = Field(
        default=None, description="automatic links: the verified identity that matched"
    )


class CustomerMerged(_Event):
    """One customer was absorbed by another; ``customer_id`` is the survivor."""

    type: Literal["customer.merged"] = "customer.merged"
    surviving_customer_id: str
    absorbed_customer_id: str = Field(
        description="now an alias: the API answers for the survivor when asked about it"
    )
    identities: list[Identity] = Field(description="the identities that moved to the survivor")


Event = (
    MessageReceived
    | MessageQueued
    | MessageSent
    | MessageStatusChanged
    | CustomerCreated
    | ConversationOpened
    | CustomerIdentityLinked
    | CustomerMerged
)
EVENT_MODELS: tuple[type[_Event], ...] = (
    MessageReceived,
    MessageQueued,
    MessageSent,
    MessageStatusChanged,
    CustomerCreated,
    ConversationOpened,
    CustomerIdentityLinked,
    CustomerMerged,
)


def _event_id(change_id: str, event_type: str) -> str:
    return hashlib.sha256(f"{change_id}/{event_type}".encode()).hexdigest()[:32]


def _occurred_at(record: dict[str, Any]) -> datetime:
    created = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, tz=utc_now().tzinfo)
    return utc_now()


def _conversation_from_item(item: dict[str, Any]) -> Conversation:
    return Conversation(
        id=item["conversation_id"],
        customer_id=item["customer_id"],
        state=item["state"],
        opened_at=datetime.fromisoformat(item["opened_at"]),
        last_message_at=datetime.fromisoformat(item["last_message_at"]),
        channels=sorted(item.get("channels") or []),
        message_count=int(item.get("message_count", 0)),
    )


def events_from_stream_record(record: dict[str, Any]) -> list[Event]:
    """The events one DynamoDB stream record (Lambda's event format) stands for."""
    change = record.get("dynamodb") or {}
    new = from_item(change["NewImage"]) if change.get("NewImage") else None
    old = from_item(change["OldImage"]) if change.get("OldImage") else None
    if new is None:
        return []  # deletions are announced by the erasure flow, not here
    change_id = str(record.get("eventID") or change.get("SequenceNumber") or "")
    common = {"occurred_at": _occurred_at(record), "customer_id": str(new.get("customer_id", ""))}

    def ids(event_type: str) -> dict[str, Any]:
        return {"id": _event_id(change_id, event_type), **common}

    item_type = new.get("type")
    if item_type == "message":
        message = message_from_item(new)
        if old is None:
            if new.get("merged_from"):
                return []  # a merge moved it: it was announced when it arrived
            if message.direction is Direction.INBOUND:
                return [MessageReceived(message=message, **ids("message.received"))]
            return [MessageQueued(message=message, **ids("message.queued"))]
        previous = MessageStatus(old["status"])
        if previous is message.status:
            return []
        events: list[Event] = [
            MessageStatusChanged(
                message=message, previous_status=previous, **ids("message.status_changed")
            )
        ]
        if message.status is MessageStatus.SENT:
            events.insert(0, MessageSent(message=message, **ids("message.sent")))
        return events
    if item_type == "customer" and old is None:
        customer = profile_from_item(new).customer
        return [CustomerCreated(customer=customer, **ids("customer.created"))]
    if item_type == "conversation" and old is None and not new.get("merged_from"):
        conversation = _conversation_from_item(new)
        return [ConversationOpened(conversation=conversation, **ids("conversation.opened"))]
    if (
        item_type == "identity"
        and new.get("linked_at")
        and (old is None or old.get("linked_at") != new["linked_at"])
    ):
        via = new.get("linked_via")
        return [
            CustomerIdentityLinked(
                identity=Identity.parse(str(new["identity"])),
                link_source=new.get("link_source") or "automatic",
                linked_via=Identity.parse(str(via)) if via else None,
                **ids("customer.identity_linked"),
            )
        ]
    if (
        item_type == "customer"
        and new.get("merge_state") == "merged"
        and (old or {}).get("merge_state") != "merged"
    ):
        survivor = str(new["merged_into"])
        return [
            CustomerMerged(
                surviving_customer_id=survivor,
                absorbed_customer_id=str(new["customer_id"]),
                identities=[Identity.parse(str(i)) for i in new.get("identities") or []],
                **{**ids("customer.merged"), "customer_id": survivor},
            )
        ]
    return []


def put_events_entry(event: Event, bus_name: str) -> dict[str, Any]:
    """The EventBridge PutEvents entry for ``event``."""
    return {
        "Source": EVENT_SOURCE,
        "DetailType": event.type,
        "Detail": event.model_dump_json(),
        "EventBusName": bus_name,
        "Time": event.occurred_at,
    }


def publish(events: list[Event], bus_name: str, client: Any) -> None:
    """Put ``events`` on the bus; raise if any entry was not accepted (so it is retried)."""
    for start in range(0, len(events), 10):  # PutEvents takes at most 10 entries
        batch = events[start : start + 10]
        response = client.put_events(Entries=[put_events_entry(e, bus_name) for e in batch])
        if response.get("FailedEntryCount"):
            failures = [e for e in response["Entries"] if e.get("ErrorCode")]
            raise RuntimeError(
                f"EventBridge refused {len(failures)} events: {json.dumps(failures)}"
            )
