"""Telegram updates inbound: ``POST /webhooks/telegram``.

Telegram posts one JSON ``Update`` per request and proves it is Telegram by echoing
the ``secret_token`` given to ``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token``
(there is no signature over the body). It retries an update until it gets a 2xx.

A Telegram user is the identity ``telegram:<user id>``. A message's provider id is
``<chat id>:<message id>`` (message ids are unique only within a chat), so a retried
update meets the same DEDUP item and is stored once, an ``edited_message`` finds
the message it changes, and a reply (``reply_to_message``) names the message it
answers, ours included: the dispatcher records our own messages under the same form.

Replies go out through :mod:`threadline.channels.telegram.outbound`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    Normalized,
    WebhookRequest,
    build,
    parse_json_object,
)
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.identity import canonical_phone
from threadline.schema import (
    Channel,
    ContactPart,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    Part,
    TextPart,
)

PROVIDER = "telegram"
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name)

# Media a message can carry, with the content type Telegram uses when it names none
# (photos are always JPEG; voice notes OGG/Opus; video notes and GIF animations MP4).
_MEDIA_FIELDS: tuple[tuple[str, str | None], ...] = (
    ("document", None),
    ("voice", "audio/ogg"),
    ("audio", "audio/mpeg"),
    ("video", "video/mp4"),
    ("video_note", "video/mp4"),
    ("animation", "video/mp4"),
    ("sticker", "image/webp"),
)
# Content threadline has no part for: such a message is stored with its content in
# channel_data rather than dropped. Anything else without a part is a service
# message (members joined, title changed, pinned, ...) and is not stored.
_UNMAPPED_CONTENT = frozenset(
    {"poll", "dice", "game", "story", "invoice", "paid_media", "web_app_data", "giveaway"}
)
# Message fields the normalized message carries itself.
_MAPPED_MESSAGE_FIELDS = frozenset(
    {"message_id", "from", "date", "text", "caption", "reply_to_message"}
)
# Update kinds that are acknowledged and not stored: channel posts have no customer
# behind them (a channel speaks, not a person), and the rest (inline queries, chat
# member changes, polls, payments, reactions, business connections, ...) are no
# message to a support team.
_MESSAGE_UPDATES = ("message", "edited_message", "callback_query")


def verify_secret_token(request: WebhookRequest, secret_token: str) -> None:
    """Raise SignatureInvalid unless the request carries the webhook's secret token."""
    supplied = request.headers.get(SECRET_HEADER)
    if not supplied:
        raise SignatureInvalid("X-Telegram-Bot-Api-Secret-Token is missing")
    # Constant time, so the token cannot be guessed a character at a time.
    if not hmac.compare_digest(supplied.encode("utf-8"), secret_token.encode("utf-8")):
        raise SignatureInvalid("X-Telegram-Bot-Api-Secret-Token does not match")


# ---------------------------------------------------------------- small readers


def int_at(document: Mapping[str, Any], key: str) -> int | None:
    value = document.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def str_at(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def _object(document: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedRequest(f"{key} is not an object")
    return value


def _required_int(document: Mapping[str, Any], key: str, where: str) -> int:
    value = int_at(document, key)
    if value is None:
        raise MalformedRequest(f"{where}.{key} is missing or not an integer")
    return value


def _time(seconds: int | None) -> datetime | None:
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedRequest("a Telegram date is not a Unix time") from exc


def _number(document: Mapping[str, Any], key: str) -> float:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRequest(f"location.{key} is not a number")
    return float(value)


def _display_name(user: Mapping[str, Any]) -> str | None:
    names = [n for n in (str_at(user, "first_name"), str_at(user, "last_name")) if n]
    return " ".join(names) or str_at(user, "username")


def _telegram_identity(user_id: int) -> Identity:
    try:
        return Identity(kind=IdentityKind.TELEGRAM, value=str(user_id))
    except ValueError as exc:
        raise MalformedRequest("from.id is not a Telegram user id") from exc


def message_key(chat_id: int | str, message_id: int | str) -> str:
    """The provider id of a message: its chat and its id in that chat."""
    return f"{chat_id}:{message_id}"


# ---------------------------------------------------------------- parts


def _file_part(obj: Mapping[str, Any], where: str, content_type: str | None) -> MediaPart:
    file_id = str_at(obj, "file_id")
    if file_id is None:
        raise MalformedRequest(f"{where}.file_id is missing")
    return build(
        MediaPart,
        content_type=str_at(obj, "mime_type") or content_type,
        size=int_at(obj, "file_size"),
        filename=str_at(obj, "file_name"),
        provider_media_id=file_id,
    )


def _largest_photo(photo: Any) -> MediaPart | None:
    if photo is None:
        return None
    if not isinstance(photo, list) or not all(isinstance(p, dict) for p in photo):
        raise MalformedRequest("photo is not a list of PhotoSize objects")
    if not photo:
        return None

    def area(size: Mapping[str, Any]) -> tuple[int, int]:
        return (
            (int_at(size, "width") or 0) * (int_at(size, "height") or 0),
            int_at(size, "file_size") or 0,
        )

    return _file_part(max(photo, key=area), "photo", "image/jpeg")


def _location_part(message: Mapping[str, Any]) -> LocationPart | None:
    venue = _object(message, "venue")
    location = _object(venue, "location") if venue else _object(message, "location")
    if location is None:
        return None
    return build(
        LocationPart,
        latitude=_number(location, "latitude"),
        longitude=_number(location, "longitude"),
        name=str_at(venue, "title") if venue else None,
        address=str_at(venue, "address") if venue else None,
    )


def _contact_part(contact: Mapping[str, Any]) -> ContactPart:
    names = [n for n in (str_at(contact, "first_name"), str_at(contact, "last_name")) if n]
    phone = str_at(contact, "phone_number")
    return build(ContactPart, name=" ".join(names) or None, phones=[phone] if phone else [])


def message_parts(message: Mapping[str, Any]) -> list[Part]:
    """What a Message carries, as parts: text (or caption), media, location, contact."""
    parts: list[Part] = []
    text = str_at(message, "text") or str_at(message, "caption")
    if text:
        parts.append(TextPart(text=text))
    photo = _largest_photo(message.get("photo"))
    if photo is not None:
        parts.append(photo)
    for field, content_type in _MEDIA_FIELDS:
        # A GIF comes as both animation and document (for old clients): keep one.
        if field == "document" and message.get("animation") is not None:
            continue
        obj = _object(message, field)
        if obj is not None:
            parts.append(_file_part(obj, field, content_type))
    location = _location_part(message)
    if location is not None:
        parts.append(location)
    contact = _object(message, "contact")
    if contact is not None:
        parts.append(_contact_part(contact))
    return parts


def _own_phone(contact: Mapping[str, Any] | None, user_id: int) -> list[Identity]:
    """The sender's phone when they shared their *own* contact.

    Telegram fills ``contact.user_id`` when the contact is a Telegram user; when it is
    the sender themselves (the "share my phone number" button), the number is the one
    Telegram verified for their account. Anyone else's card links nothing: a customer
    could otherwise attach themselves to another person's timeline.
    """
    if contact is None or int_at(contact, "user_id") != user_id:
        return []
    phone = str_at(contact, "phone_number")
    try:
        return [Identity(kind=IdentityKind.PHONE, value=canonical_phone(phone or ""))]
    except ValueError:
        return []


# ---------------------------------------------------------------- normalize


def _sender(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """The user who wrote ``message``, or None for bots and messages with no person."""
    user = _object(message, "from")
    if user is None:
        return None  # channel posts forwarded into a chat: nobody to file it on
    if user.get("is_bot") is True:
        return None  # our own bot, other bots, anonymous group admins: never a loop
    _required_int(user, "id", "from")
    return user


def _chat_id(message: Mapping[str, Any], where: str) -> int:
    chat = _object(message, "chat")
    if chat is None:
        raise MalformedRequest(f"{where}.chat is missing")
    return _required_int(chat, "id", f"{where}.chat")


def normalize_message(message: Mapping[str, Any], update_id: int) -> InboundMessage | None:
    """A ``message`` update as an inbound message; None when it is not a customer's."""
    user = _sender(message)
    if user is None:
        return None
    user_id = int(user["id"])
    chat_id = _chat_id(message, "message")
    message_id = _required_int(message, "message_id", "message")
    parts = message_parts(message)
    if not parts and not (_UNMAPPED_CONTENT & message.keys()):
        return None  # a service message (joins, title changes, pins): nobody wrote it
    reply = _object(message, "reply_to_message")
    reply_id = int_at(reply, "message_id") if reply else None
    thread = int_at(message, "message_thread_id")
    channel_data: dict[str, Any] = {
        k: v for k, v in message.items() if k not in _MAPPED_MESSAGE_FIELDS
    }
    channel_data["update_id"] = update_id
    return build(
        InboundMessage,
        channel=Channel.TELEGRAM,
        provider=PROVIDER,
        provider_message_id=message_key(chat_id, message_id),
        sender=_telegram_identity(user_id),
        sender_display_name=_display_name(user),
        sent_at=_time(int_at(message, "date")),
        parts=parts,
        in_reply_to=message_key(chat_id, reply_id) if reply_id is not None else None,
        thread_id=str(thread) if thread is not None else None,
        channel_data=channel_data,
        verified_identities=_own_phone(_object(message, "contact"), user_id),
        reply_to={"chat_id": str(chat_id), "message_id": str(message_id)},
    )


def normalize_edit(message: Mapping[str, Any], update_id: int) -> MessageEdit | None:
    """An ``edited_message`` update: the stored message's new content."""
    if _sender(message) is None:
        return None
    chat_id = _chat_id(message, "edited_message")
    message_id = _required_int(message, "message_id", "edited_message")
    return build(
        MessageEdit,
        provider=PROVIDER,
        provider_message_id=message_key(chat_id, message_id),
        kind="edited",
        edit_id=str(update_id),
        parts=message_parts(message),
        at=_time(int_at(message, "edit_date")),
        channel_data={"update_id": update_id},
    )


def _button_title(message: Mapping[str, Any] | None, data: str | None) -> str | None:
    """The label of the inline button whose callback_data is ``data``, if it is known."""
    markup = message.get("reply_markup") if message else None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or data is None:
        return None
    for row in rows:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return str_at(button, "text")
    return None


def normalize_callback_query(query: Mapping[str, Any], update_id: int) -> list[Normalized]:
    """A tap on an inline button: an interactive reply, and the answer Telegram awaits."""
    query_id = str_at(query, "id")
    if query_id is None:
        raise MalformedRequest("callback_query.id is missing")
    user = _object(query, "from")
    if user is None:
        raise MalformedRequest("callback_query.from is missing")
    user_id = _required_int(user, "id", "callback_query.from")
    # The client shows a spinner until the query is answered: answer it in the
    # webhook's response, which costs no API call of our own.
    answer = Acknowledgement(
        status=200,
        content_type="application/json",
        body=json.dumps({"method": "answerCallbackQuery", "callback_query_id": query_id}),
    )
    if user.get("is_bot") is True:
        return [answer]
    message = _object(query, "message")
    chat_id = _chat_id(message, "callback_query.message") if message is not None else None
    message_id = _required_int(message, "message_id", "callback_query.message") if message else None
    data = str_at(query, "data")
    channel_data: dict[str, Any] = {
        k: v for k, v in query.items() if k not in {"id", "from", "message", "data"}
    }
    channel_data["update_id"] = update_id
    channel_data["callback_query_id"] = query_id
    inbound = build(
        InboundMessage,
        channel=Channel.TELEGRAM,
        provider=PROVIDER,
        provider_message_id=f"callback:{query_id}",
        sender=_telegram_identity(user_id),
        sender_display_name=_display_name(user),
        parts=[
            InteractiveReplyPart(kind="button", reply_id=data, title=_button_title(message, data))
        ],
        in_reply_to=(
            message_key(chat_id, message_id)
            if chat_id is not None and message_id is not None
            else None
        ),
        channel_data=channel_data,
        reply_to={"chat_id": str(chat_id)} if chat_id is not None else None,
    )
    return [inbound, answer]


def normalize_update(update: Mapping[str, Any]) -> list[Normalized]:
    """One Update as what threadline stores; [] for kinds it acknowledges and skips."""
    update_id = int_at(update, "update_id")
    if update_id is None or update_id < 0:
        raise MalformedRequest("update_id is missing or not an integer")
    kind = next((k for k in _MESSAGE_UPDATES if k in update), None)
    if kind is None:
        return []
    body = _object(update, kind)
    if body is None:
        raise MalformedRequest(f"{kind} is null")
    item: Normalized | None
    if kind == "callback_query":
        return normalize_callback_query(body, update_id)
    if kind == "message":
        item = normalize_message(body, update_id)
    else:
        item = normalize_edit(body, update_id)
    return [item] if item is not None else []


class TelegramWebhook:
    """The channel adapter for ``POST /webhooks/telegram``."""

    provider = PROVIDER

    def __init__(self, secret_token: Callable[[], str]) -> None:
        self._secret_token = secret_token

    def verify(self, request: WebhookRequest) -> None:
        verify_secret_token(request, self._secret_token())

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        return normalize_update(parse_json_object(request.body))

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type="text/plain", body="")
