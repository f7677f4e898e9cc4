"""WhatsApp Cloud API notifications (``object: whatsapp_business_account``).

Every ``change`` of field ``messages`` carries messages and statuses. Media is never
downloaded here: a media id becomes a media part (id, mime type, sha256, caption),
fetched on demand (:mod:`threadline.channels.meta.media`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadline.channels.base import InboundMessage, Normalized, StatusUpdate, build
from threadline.channels.meta.payload import (
    PROVIDER,
    id_at,
    number_at,
    object_at,
    objects_at,
    parse_callback_data,
    phone_identity,
    string_at,
    unix_seconds,
)
from threadline.channels.twilio.whatsapp import PROVIDER_KEY as WHATSAPP_PROVIDER_KEY
from threadline.errors import MalformedRequest
from threadline.schema import (
    Channel,
    ContactPart,
    Identity,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    MessageStatus,
    Part,
    ReactionPart,
    TextPart,
)

# WhatsApp message types whose payload is a media object ({id, mime_type, sha256, ...}).
WHATSAPP_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
# Fields of a WhatsApp message the normalized message carries itself; the rest
# (referral, errors, identity, ...) is kept in channel_data.
_WHATSAPP_MAPPED = frozenset({"from", "id", "timestamp", "type", "context"})
_WHATSAPP_STATUS = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def _whatsapp_media(media: Mapping[str, Any]) -> MediaPart:
    size = media.get("file_size")
    return build(
        MediaPart,
        content_type=string_at(media, "mime_type"),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        filename=string_at(media, "filename"),
        caption=string_at(media, "caption"),
        sha256=string_at(media, "sha256"),
        provider_media_id=id_at(media, "id"),
        url=string_at(media, "url"),
    )


def _whatsapp_contact(contact: Mapping[str, Any]) -> ContactPart:
    name = object_at(contact, "name")
    phones = [
        p.get("phone") or p.get("wa_id")
        for p in objects_at(contact, "phones")
        if isinstance(p.get("phone") or p.get("wa_id"), str)
    ]
    emails = [e["email"] for e in objects_at(contact, "emails") if isinstance(e.get("email"), str)]
    formatted = string_at(name, "formatted_name") or " ".join(
        filter(None, (string_at(name, "first_name"), string_at(name, "last_name")))
    )
    return build(ContactPart, name=formatted or None, phones=phones, emails=emails)


def _whatsapp_parts(message: Mapping[str, Any], kind: str) -> list[Part]:
    if kind == "contacts":
        return [_whatsapp_contact(c) for c in objects_at(message, "contacts")]
    body = object_at(message, kind)
    if kind == "text":
        text = string_at(body, "body")
        return [TextPart(text=text)] if text else []
    if kind in WHATSAPP_MEDIA_TYPES:
        return [_whatsapp_media(body)]
    if kind == "location":
        return [
            build(
                LocationPart,
                latitude=number_at(body.get("latitude"), "location.latitude"),
                longitude=number_at(body.get("longitude"), "location.longitude"),
                name=string_at(body, "name"),
                address=string_at(body, "address"),
            )
        ]
    if kind == "interactive":
        reply_type = string_at(body, "type")
        if reply_type in ("button_reply", "list_reply"):
            reply = object_at(body, reply_type)
            return [
                build(
                    InteractiveReplyPart,
                    kind="button" if reply_type == "button_reply" else "list",
                    reply_id=id_at(reply, "id"),
                    title=string_at(reply, "title"),
                    description=string_at(reply, "description"),
                )
            ]
        return []  # flows (nfm_reply) and future types stay in channel_data
    if kind == "button":
        # A quick-reply button of a template we sent.
        return [
            build(
                InteractiveReplyPart,
                kind="button",
                reply_id=string_at(body, "payload"),
                title=string_at(body, "text"),
            )
        ]
    if kind == "reaction":
        emoji = string_at(body, "emoji")
        return [
            build(
                ReactionPart,
                emoji=emoji,
                target_provider_message_id=string_at(body, "message_id"),
                removed=emoji is None,
            )
        ]
    return []


def _whatsapp_message(
    message: Mapping[str, Any],
    value: Mapping[str, Any],
    names: Mapping[str, str],
    account_id: str | None,
) -> InboundMessage:
    wamid = string_at(message, "id")
    sender = string_at(message, "from")
    if not wamid or not sender:
        raise MalformedRequest("a WhatsApp message without id or from")
    kind = string_at(message, "type") or "unknown"
    metadata = object_at(value, "metadata")
    phone_number_id = id_at(metadata, "phone_number_id")
    display_number = string_at(metadata, "display_phone_number")
    recipient: Identity | None = None
    if display_number:
        try:
            recipient = phone_identity(display_number, "metadata.display_phone_number")
        except MalformedRequest:
            recipient = None  # kept in channel_data below
    context = object_at(message, "context")
    channel_data: dict[str, Any] = {
        k: v for k, v in message.items() if k not in _WHATSAPP_MAPPED and k != kind
    }
    channel_data["type"] = kind
    if kind not in ("text", "contacts", *WHATSAPP_MEDIA_TYPES) and kind in message:
        # Whatever the parts do not carry of it (interactive flows, location URL).
        channel_data[kind] = message[kind]
    if context:
        channel_data["context"] = context
    if metadata:
        channel_data["metadata"] = metadata
    if account_id:
        channel_data["waba_id"] = account_id
    media = message.get(kind) if kind in WHATSAPP_MEDIA_TYPES else None
    if isinstance(media, dict) and isinstance(media.get("voice"), bool):
        channel_data["voice"] = media["voice"]
    if isinstance(media, dict) and isinstance(media.get("animated"), bool):
        channel_data["animated"] = media["animated"]
    reply_to = {WHATSAPP_PROVIDER_KEY: PROVIDER}
    if phone_number_id:
        reply_to["phone_number_id"] = phone_number_id
    return build(
        InboundMessage,
        channel=Channel.WHATSAPP,
        provider=PROVIDER,
        provider_message_id=wamid,
        sender=phone_identity(sender, "messages.from"),
        recipient=recipient,
        sender_display_name=names.get(sender),
        sent_at=unix_seconds(message.get("timestamp")),
        parts=_whatsapp_parts(message, kind),
        in_reply_to=string_at(context, "id"),
        channel_data=channel_data,
        reply_to=reply_to,
    )


def _whatsapp_status(status: Mapping[str, Any]) -> StatusUpdate | None:
    wamid = string_at(status, "id")
    reported = string_at(status, "status")
    if not wamid or not reported:
        raise MalformedRequest("a WhatsApp status without id or status")
    mapped = _WHATSAPP_STATUS.get(reported)
    if mapped is None:
        return None  # "deleted", "warning" and future statuses move nothing
    errors = list(objects_at(status, "errors"))
    first = errors[0] if errors else {}
    code = id_at(first, "code")
    customer_id, message_id = parse_callback_data(string_at(status, "biz_opaque_callback_data"))
    channel_data = {k: v for k, v in status.items() if k not in ("id", "status", "timestamp")}
    return build(
        StatusUpdate,
        provider=PROVIDER,
        provider_message_id=wamid,
        status=mapped,
        at=unix_seconds(status.get("timestamp")),
        error_code=code or (reported if mapped is MessageStatus.FAILED else None),
        error_message=string_at(first, "title") or string_at(first, "message"),
        customer_id=customer_id,
        message_id=message_id,
        channel_data=channel_data,
    )


def normalize_whatsapp(document: Mapping[str, Any]) -> list[Normalized]:
    """A ``whatsapp_business_account`` notification: messages and statuses of every change."""
    items: list[Normalized] = []
    for entry in objects_at(document, "entry"):
        account_id = id_at(entry, "id")
        for change in objects_at(entry, "changes"):
            if change.get("field") != "messages":
                continue  # template, quality and account updates: nothing for a timeline
            value = object_at(change, "value")
            names = {
                wa_id: name
                for contact in objects_at(value, "contacts")
                if isinstance(wa_id := contact.get("wa_id"), str)
                and isinstance(name := object_at(contact, "profile").get("name"), str)
                and name
            }
            for message in objects_at(value, "messages"):
                items.append(_whatsapp_message(message, value, names, account_id))
            for status in objects_at(value, "statuses"):
                update = _whatsapp_status(status)
                if update is not None:
                    items.append(update)
    return items
