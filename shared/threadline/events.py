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

from pydantic import ConfigDict, Field

from threadline.conversations import CLOSED, OPEN, conversation_from_item
from threadline.items import from_stream_image, message_from_item
from threadline.model import Model
from threadline.schema import (
    SCHEMA_VERSION,
    Channel,
    Conversation,
    Customer,
    Direction,
    Identity,
    Message,
    MessageStatus,
    Rating,
    utc_now,
)
from threadline.store import profile_from_item

EVENT_SOURCE = "threadline"


class _Event(Model):
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


class MessageNoteAdded(_Event):
    """An agent wrote an internal note on the timeline (``direction: internal``):
    never sent to the customer, shown to every CRM (docs/events.md)."""

    type: Literal["message.note_added"] = "message.note_added"
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


class ConversationChannelSwitched(_Event):
    """The customer wrote on another channel than their previous message in it."""

    type: Literal["conversation.channel_switched"] = "conversation.channel_switched"
    conversation: Conversation
    from_channel: Channel
    to_channel: Channel
    message_id: str = Field(description="the message that came on the new channel")


class ConversationClosed(_Event):
    """Closed by its quiet period or through the API; ``conversation.metrics`` final."""

    type: Literal["conversation.closed"] = "conversation.closed"
    conversation: Conversation


class ConversationReopened(_Event):
    """A customer wrote again within the repeat window after this conversation was
    closed resolved: ``conversation`` is the earlier one (no longer resolved on first
    contact), ``repeat_conversation_id`` the one their message opened."""

    type: Literal["conversation.reopened"] = "conversation.reopened"
    conversation: Conversation
    repeat_conversation_id: str


class ConversationRated(_Event):
    """The customer answered the satisfaction question (CSAT, 1-5)."""

    type: Literal["conversation.rated"] = "conversation.rated"
    conversation: Conversation
    rating: Rating


class Erasure(Model):
    """What an erasure removed: ids, times and counts, never personal data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    mode: Literal["delete", "anonymize"]
    requested_at: datetime
    completed_at: datetime
    counts: dict[str, int]


class CustomerErased(_Event):
    """The customer's data is gone from threadline: CRMs should erase their copies."""

    type: Literal["customer.erased"] = "customer.erased"
    erasure: Erasure


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
    | MessageNoteAdded
    | MessageSent
    | MessageStatusChanged
    | CustomerCreated
    | ConversationOpened
    | ConversationChannelSwitched
    | ConversationClosed
    | ConversationReopened
    | ConversationRated
    | CustomerErased
    | CustomerIdentityLinked
    | CustomerMerged
)
EVENT_MODELS: tuple[type[_Event], ...] = (
    MessageReceived,
    MessageQueued,
    MessageNoteAdded,
    MessageSent,
    MessageStatusChanged,
    CustomerCreated,
    ConversationOpened,
    ConversationChannelSwitched,
    ConversationClosed,
    ConversationReopened,
    ConversationRated,
    CustomerErased,
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


def events_from_stream_record(record: dict[str, Any]) -> list[Event]:
    """The events one DynamoDB stream record (Lambda's event format) stands for."""
    change = record.get("dynamodb") or {}
    new = from_stream_image(change["NewImage"]) if change.get("NewImage") else None
    old = from_stream_image(change["OldImage"]) if change.get("OldImage") else None
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
            if message.direction is Direction.INTERNAL:
                return [MessageNoteAdded(message=message, **ids("message.note_added"))]
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
    if item_type == "conversation":
        if old is None and new.get("merged_from"):
            return []  # moved by a merge, not opened
        return _conversation_events(new, old, ids)
    if item_type == "erasure":
        # Announced once, when the audit record (threadline.privacy) turns done.
        if new.get("state") != "done" or (old or {}).get("state") == "done":
            return []
        erasure = Erasure(
            job_id=str(new["job_id"]),
            mode=new.get("mode") or "delete",
            requested_at=datetime.fromisoformat(new["requested_at"]),
            completed_at=datetime.fromisoformat(new["completed_at"]),
            counts={k: int(v) for k, v in (new.get("counts") or {}).items()},
        )
        return [CustomerErased(erasure=erasure, **ids("customer.erased"))]
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


def _conversation_events(new: dict[str, Any], old: dict[str, Any] | None, ids: Any) -> list[Event]:
    conversation = conversation_from_item(new)
    if old is None:
        return [ConversationOpened(conversation=conversation, **ids("conversation.opened"))]
    events: list[Event] = []
    switch = new.get("last_switch")
    if int(new.get("channel_switches", 0)) > int(old.get("channel_switches", 0)) and switch:
        events.append(
            ConversationChannelSwitched(
                conversation=conversation,
                from_channel=switch["from"],
                to_channel=switch["to"],
                message_id=switch["message_id"],
                **ids("conversation.channel_switched"),
            )
        )
    if old.get("state") == OPEN and new.get("state") == CLOSED:
        events.append(ConversationClosed(conversation=conversation, **ids("conversation.closed")))
    repeat = new.get("repeat_conversation_id")
    if repeat and not old.get("repeat_conversation_id"):
        events.append(
            ConversationReopened(
                conversation=conversation,
                repeat_conversation_id=str(repeat),
                **ids("conversation.reopened"),
            )
        )
    if conversation.rating is not None and new.get("rating") != old.get("rating"):
        events.append(
            ConversationRated(
                conversation=conversation, rating=conversation.rating, **ids("conversation.rated")
            )
        )
    return events


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
