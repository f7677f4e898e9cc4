"""The common message schema: what every channel's inbound and outbound message becomes.

Every model carries ``schema_version`` so that consumers (CRMs reading events, the
REST API's clients) can tell which shape they hold. The JSON Schema files under
``infra/schemas/`` are generated from these models (``make schemas``) and a test
keeps them in step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Declared with each channel's rules in the registry; part of the schema all the same.
from threadline.channels.registry import Channel as Channel
from threadline.channels.registry import IdentityKind as IdentityKind
from threadline.identity import canonical_identity_value
from threadline.model import Model

SCHEMA_VERSION: Literal["1"] = "1"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    # An agent's note on the timeline: stored like a message, never sent to the
    # customer (docs/api.md, "Agent notes").
    INTERNAL = "internal"


class AuthorRole(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


class MessageStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class _Model(Model):
    # Frozen so a normalized message cannot be changed by accident on its way to the
    # store; forbid so a typo in a normalizer fails loudly instead of vanishing.
    # Fields with defaults are always in the JSON we emit: the schema says so, so
    # consumers can rely on them being present.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


class Identity(_Model):
    """One way to reach a person on one channel, in its canonical form.

    ``phone`` is E.164 (``+15551234567``) whatever channel it came from, so SMS,
    WhatsApp and voice from one number are the same identity.
    """

    kind: IdentityKind
    value: str = Field(min_length=1, max_length=320)

    @field_validator("value")
    @classmethod
    def _canonical(cls, value: str, info: Any) -> str:
        kind = info.data.get("kind")
        return canonical_identity_value(kind, value) if kind else value

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse ``kind:value`` (the form used in query strings and logs)."""
        kind, sep, value = text.partition(":")
        if not sep or not value:
            raise ValueError("identity must look like kind:value, e.g. phone:+15551234567")
        return cls(kind=IdentityKind(kind), value=value)


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class MediaPart(_Model):
    type: Literal["media"] = "media"
    content_type: str | None = None
    size: int | None = Field(default=None, ge=0)
    url: str | None = None
    s3_key: str | None = None
    filename: str | None = None
    caption: str | None = None
    provider_media_id: str | None = None
    sha256: str | None = Field(
        default=None, description="SHA-256 of the file as the provider gives it (WhatsApp: base64)"
    )


class LocationPart(_Model):
    type: Literal["location"] = "location"
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None
    address: str | None = None


class ContactPart(_Model):
    type: Literal["contact"] = "contact"
    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)


class InteractiveReplyPart(_Model):
    """The customer tapped a button or picked a list row we (or a template) offered."""

    type: Literal["interactive_reply"] = "interactive_reply"
    kind: Literal["button", "list", "quick_reply", "postback"]
    reply_id: str | None = None
    title: str | None = None
    description: str | None = None


class ReactionPart(_Model):
    type: Literal["reaction"] = "reaction"
    emoji: str | None = None
    target_provider_message_id: str | None = None
    removed: bool = False


Part = Annotated[
    TextPart | MediaPart | LocationPart | ContactPart | InteractiveReplyPart | ReactionPart,
    Field(discriminator="type"),
]


class StatusChange(_Model):
    status: MessageStatus
    at: datetime
    error_code: str | None = None
    error_message: str | None = None


class RawPayloadRef(_Model):
    """Where the provider's request is kept, byte for byte.

    Small payloads ride inline in the message's DynamoDB item (``location="inline"``),
    larger ones go to the raw-payload bucket (``location="s3"``).
    """

    location: Literal["inline", "s3"]
    content_type: str
    size: int = Field(ge=0)
    sha256: str
    bucket: str | None = None
    key: str | None = None


class MessageRevision(_Model):
    """An earlier state of a message the provider later edited or deleted."""

    kind: Literal["edited", "deleted"]
    at: datetime = Field(description="when the change was made (the provider's time)")
    parts: list[Part] = Field(description="the message's parts before this change")
    raw: RawPayloadRef | None = Field(default=None, description="the provider's change request")


class Message(_Model):
    schema_version: Literal["1"] = SCHEMA_VERSION
    id: str = Field(description="ULID: sortable by the time threadline received the message")
    customer_id: str
    conversation_id: str
    channel: Channel
    direction: Direction
    provider: str = Field(description="who carried it: twilio, slack, meta, telegram, ses")
    provider_message_id: str | None = None
    author_role: AuthorRole
    author_id: str | None = Field(
        default=None, description="who wrote an outbound message: the CRM's agent or bot id"
    )
    sender: Identity | None = Field(
        default=None, description="the customer's identity inbound; our address outbound, once sent"
    )
    recipient: Identity | None = None
    sent_at: datetime | None = Field(default=None, description="the provider's timestamp")
    received_at: datetime
    parts: list[Part] = Field(default_factory=list)
    in_reply_to: str | None = Field(
        default=None, description="provider message id of the message this one answers"
    )
    thread_id: str | None = None
    status: MessageStatus
    status_history: list[StatusChange] = Field(default_factory=list)
    raw: RawPayloadRef | None = None
    channel_data: dict[str, Any] = Field(
        default_factory=dict,
        description="everything the channel sent that has no field above, never dropped",
    )
    edited_at: datetime | None = Field(default=None, description="when it was last edited")
    deleted_at: datetime | None = Field(
        default=None, description="when the sender deleted it; parts are then empty"
    )
    revisions: list[MessageRevision] = Field(
        default_factory=list, description="earlier versions, oldest first (edits, deletion)"
    )

    @property
    def text(self) -> str:
        """All text parts joined: what a plain-text channel or a search index wants."""
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))


class Customer(_Model):
    schema_version: Literal["1"] = SCHEMA_VERSION
    id: str
    display_name: str | None = None
    identities: list[Identity] = Field(default_factory=list)
    created_at: datetime
    last_channel: Channel | None = None
    last_message_at: datetime | None = None
    language: str | None = Field(default=None, description="BCP 47 tag, e.g. pt-BR")
    tags: list[str] = Field(default_factory=list)
    external_ids: dict[str, str] = Field(
        default_factory=dict, description="CRM system -> the customer's id there"
    )


class ConversationMessageCounts(_Model):
    """Messages in a conversation per author role (who wrote them)."""

    customer: int = 0
    agent: int = 0
    bot: int = 0
    system: int = 0


class ConversationMetrics(_Model):
    """The figures support teams measure, kept on the conversation as messages flow."""

    channels_used: list[Channel] = Field(
        default_factory=list, description="every channel the customer wrote on, sorted"
    )
    channel_switches: int = Field(
        default=0, ge=0, description="times the customer wrote on another channel than before"
    )
    first_response_seconds: float | None = Field(
        default=None,
        description="from the first customer message to the first outbound message "
        "(agent, bot or system); null until there is one",
    )
    time_to_close_seconds: float | None = Field(
        default=None, description="from opened_at to closed_at; null while open"
    )
    messages: ConversationMessageCounts = Field(default_factory=ConversationMessageCounts)


Resolution = Literal["resolved", "unresolved", "abandoned"]


class ClosedBy(_Model):
    """Who closed a conversation: an agent through the API, or the quiet period."""

    role: Literal["agent", "system"]
    id: str | None = Field(default=None, description="the agent's id in the CRM; null: system")


class Rating(_Model):
    """A customer's answer to the satisfaction question (docs/analytics.md)."""

    conversation_id: str
    score: int = Field(ge=1, le=5)
    channel: Channel = Field(description="the channel the answer came on")
    rated_at: datetime


class Conversation(_Model):
    """A customer's exchange across channels: opens with their first message after a
    quiet period, closes after the quiet period or when closed through the API."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    id: str
    customer_id: str
    state: Literal["open", "closed"]
    opened_at: datetime = Field(description="the first customer message's time")
    last_message_at: datetime = Field(description="the latest message, either side")
    closed_at: datetime | None = Field(
        default=None,
        description="closed through the API: then; by the quiet period: when it ended "
        "(last_message_at + the quiet period), however late the sweeper ran",
    )
    close_reason: Literal["quiet_period", "api"] | None = None
    channels: list[Channel] = Field(default_factory=list)
    last_channel: Channel | None = Field(
        default=None, description="the channel of the customer's latest message"
    )
    message_count: int = 0
    first_response_at: datetime | None = None
    metrics: ConversationMetrics = Field(default_factory=ConversationMetrics)
    resolution: Resolution | None = Field(
        default=None,
        description="set at close: resolved, unresolved, or abandoned (quiet period with "
        "the customer's message last); docs/analytics.md",
    )
    closed_by: ClosedBy | None = None
    previous_conversation_id: str | None = Field(
        default=None,
        description="a repeat contact: the resolved conversation closed within the repeat "
        "window before this one opened",
    )
    repeat_conversation_id: str | None = Field(
        default=None,
        description="set when a repeat contact reopened this resolved conversation: it no "
        "longer counts as resolved on first contact",
    )
    rating: Rating | None = Field(default=None, description="the customer's CSAT answer")


class ConversationPage(_Model):
    items: list[Conversation]
    next_cursor: str | None = None


class TimelinePage(_Model):
    items: list[Message]
    next_cursor: str | None = None


# The documents exported as JSON Schema files (make schemas), by file stem.
EXPORTED_MODELS: dict[str, type[BaseModel]] = {
    "message": Message,
    "customer": Customer,
    "conversation": Conversation,
    "timeline-page": TimelinePage,
    "conversation-page": ConversationPage,
}
