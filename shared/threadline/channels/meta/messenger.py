"""Messenger (``object: page``) and Instagram (``object: instagram``) notifications.

Each entry's ``messaging`` (and ``standby``) events become drafts, edits, reactions
and delivery/read statuses; media arrives as a CDN URL, kept on the part as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from threadline.channels.base import (
    InboundMessage,
    MessageEdit,
    Normalized,
    StatusUpdate,
    build,
)
from threadline.channels.meta.payload import (
    PROVIDER,
    id_at,
    list_at,
    number_at,
    object_at,
    objects_at,
    scoped_identity,
    string_at,
    unix_milliseconds,
)
from threadline.channels.registry import channel_spec
from threadline.errors import MalformedRequest
from threadline.schema import (
    Channel,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    MessageStatus,
    Part,
    ReactionPart,
    TextPart,
)

# Messenger / Instagram attachment types that are a file at a URL.
MESSENGER_MEDIA_TYPES = frozenset({"image", "video", "audio", "file"})
_MESSENGER_MAPPED = frozenset(
    {"mid", "text", "attachments", "quick_reply", "reply_to", "is_echo", "is_deleted"}
)


def _messenger_attachment(attachment: Mapping[str, Any]) -> Part | None:
    kind = string_at(attachment, "type")
    payload = object_at(attachment, "payload")
    if kind in MESSENGER_MEDIA_TYPES:
        return build(
            MediaPart,
            url=string_at(payload, "url"),
            provider_media_id=id_at(payload, "attachment_id"),
            filename=string_at(attachment, "name"),
        )
    if kind == "location":
        coordinates = object_at(payload, "coordinates")
        return build(
            LocationPart,
            latitude=number_at(coordinates.get("lat"), "coordinates.lat"),
            longitude=number_at(coordinates.get("long"), "coordinates.long"),
            name=string_at(attachment, "title"),
        )
    return None  # templates, fallbacks, shares, story mentions: in channel_data


def _messenger_message_parts(message: Mapping[str, Any]) -> list[Part]:
    parts: list[Part] = []
    text = string_at(message, "text")
    quick_reply = object_at(message, "quick_reply")
    if quick_reply:
        parts.append(
            build(
                InteractiveReplyPart,
                kind="quick_reply",
                reply_id=string_at(quick_reply, "payload"),
                title=text,
            )
        )
    elif text:
        parts.append(TextPart(text=text))
    for attachment in objects_at(message, "attachments"):
        part = _messenger_attachment(attachment)
        if part is not None:
            parts.append(part)
    return parts


class _MessagingEvents:
    """Normalizes the ``messaging`` events of one Messenger or Instagram entry."""

    def __init__(self, channel: Channel, kind: IdentityKind, account_id: str) -> None:
        self.channel = channel
        self.kind = kind
        self.account_id = account_id

    def normalize(self, event: Mapping[str, Any]) -> list[Normalized]:
        sender = id_at(object_at(event, "sender"), "id")
        at = unix_milliseconds(event.get("timestamp"))
        message = object_at(event, "message")
        if message.get("is_echo") is True or sender == self.account_id:
            return []  # what our page or account sent (our replies among them): no loops
        if message:
            return self._message(event, message, sender, at)
        edit = object_at(event, "message_edit")
        if edit:
            return self._edit(edit, at)
        postback = object_at(event, "postback")
        if postback:
            return [self._postback(event, postback, sender, at)]
        reaction = object_at(event, "reaction")
        if reaction:
            return [self._reaction(event, reaction, sender, at)]
        delivery = object_at(event, "delivery")
        if delivery:
            mids = [m for m in list_at(delivery, "mids") if isinstance(m, str) and m]
            return [self._status(mid, MessageStatus.DELIVERED, at) for mid in mids]
        read = object_at(event, "read")
        if read and string_at(read, "mid"):
            # Instagram names the message read. Messenger only sends a watermark
            # (everything before it was read), which no stored item is keyed by.
            return [self._status(str(read["mid"]), MessageStatus.READ, at)]
        return []  # optins, referrals, handovers, Messenger read watermarks

    def _inbound(
        self,
        event: Mapping[str, Any],
        sender: str | None,
        provider_message_id: str,
        parts: list[Part],
        at: datetime | None,
        channel_data: dict[str, Any],
        in_reply_to: str | None = None,
    ) -> InboundMessage:
        recipient = id_at(object_at(event, "recipient"), "id")
        channel_data = {**channel_data, "recipient_id": recipient, "account_id": self.account_id}
        reply_key = "page_id" if self.channel is Channel.MESSENGER else "instagram_account_id"
        return build(
            InboundMessage,
            channel=self.channel,
            provider=PROVIDER,
            provider_message_id=provider_message_id,
            sender=scoped_identity(self.kind, sender, "sender.id"),
            sent_at=at,
            parts=parts,
            in_reply_to=in_reply_to,
            channel_data=channel_data,
            reply_to={reply_key: self.account_id},
        )

    def _message(
        self,
        event: Mapping[str, Any],
        message: Mapping[str, Any],
        sender: str | None,
        at: datetime | None,
    ) -> list[Normalized]:
        mid = string_at(message, "mid")
        if not mid:
            raise MalformedRequest("a message without mid")
        if message.get("is_deleted") is True:
            # Instagram: the customer unsent the message.
            return [
                build(
                    MessageEdit,
                    provider=PROVIDER,
                    provider_message_id=mid,
                    kind="deleted",
                    edit_id=f"deleted:{mid}",
                    at=at,
                )
            ]
        reply_to = object_at(message, "reply_to")
        channel_data = {k: v for k, v in message.items() if k not in _MESSENGER_MAPPED}
        if reply_to:
            channel_data["reply_to"] = reply_to
        others = [
            a
            for a in objects_at(message, "attachments")
            if string_at(a, "type") not in MESSENGER_MEDIA_TYPES | {"location"}
        ]
        if others:
            channel_data["attachments"] = others
        return [
            self._inbound(
                event,
                sender,
                mid,
                _messenger_message_parts(message),
                at,
                channel_data,
                in_reply_to=string_at(reply_to, "mid"),
            )
        ]

    def _edit(self, edit: Mapping[str, Any], at: datetime | None) -> list[Normalized]:
        mid = string_at(edit, "mid")
        if not mid:
            raise MalformedRequest("a message_edit without mid")
        text = string_at(edit, "text")
        count = edit.get("num_edit")
        return [
            build(
                MessageEdit,
                provider=PROVIDER,
                provider_message_id=mid,
                kind="edited",
                edit_id=f"edit:{mid}:{count if isinstance(count, int) else at}",
                parts=[TextPart(text=text)] if text else [],
                at=at,
            )
        ]

    def _postback(
        self,
        event: Mapping[str, Any],
        postback: Mapping[str, Any],
        sender: str | None,
        at: datetime | None,
    ) -> InboundMessage:
        # Postbacks carry a mid on current API versions; older ones are keyed by
        # who tapped when, which a redelivery repeats exactly.
        mid = string_at(postback, "mid") or f"postback:{sender}:{event.get('timestamp')}"
        part = build(
            InteractiveReplyPart,
            kind="postback",
            reply_id=string_at(postback, "payload"),
            title=string_at(postback, "title"),
        )
        channel_data = {k: v for k, v in postback.items() if k not in ("mid", "payload", "title")}
        return self._inbound(event, sender, mid, [part], at, {"postback": channel_data})

    def _reaction(
        self,
        event: Mapping[str, Any],
        reaction: Mapping[str, Any],
        sender: str | None,
        at: datetime | None,
    ) -> InboundMessage:
        target = string_at(reaction, "mid")
        action = string_at(reaction, "action")
        part = build(
            ReactionPart,
            emoji=string_at(reaction, "emoji"),
            target_provider_message_id=target,
            removed=action == "unreact",
        )
        provider_id = f"reaction:{target}:{sender}:{action}:{event.get('timestamp')}"
        return self._inbound(
            event, sender, provider_id, [part], at, {"reaction": dict(reaction)}, in_reply_to=target
        )

    def _status(self, mid: str, status: MessageStatus, at: datetime | None) -> StatusUpdate:
        return build(StatusUpdate, provider=PROVIDER, provider_message_id=mid, status=status, at=at)


def normalize_messaging(document: Mapping[str, Any], channel: Channel) -> list[Normalized]:
    """A ``page`` (Messenger) or ``instagram`` notification: its messaging events."""
    kind = channel_spec(channel).identity_kind
    items: list[Normalized] = []
    for entry in objects_at(document, "entry"):
        account_id = id_at(entry, "id")
        if account_id is None:
            raise MalformedRequest("an entry without id")
        events = _MessagingEvents(channel, kind, account_id)
        # Standby events are messages while another app holds the thread (handover
        # protocol): the customer still wrote them.
        for key in ("messaging", "standby"):
            for event in objects_at(entry, key):
                items.extend(events.normalize(event))
    return items
