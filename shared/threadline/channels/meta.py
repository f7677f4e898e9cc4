"""Meta: WhatsApp Cloud API, Messenger and Instagram messaging, one webhook for all three.

``GET /webhooks/meta`` is the subscription handshake: Meta calls it with
``hub.mode=subscribe``, the verify token we chose in the app dashboard and a
``hub.challenge`` to echo. ``POST /webhooks/meta`` carries notifications as JSON,
signed with ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body keyed
with the app secret>``. One POST may batch many ``entry`` items, each with many
``changes`` (WhatsApp) or ``messaging`` events (Messenger, Instagram); every message
in it becomes one draft, deduplicated on its provider id (``wamid`` / ``mid``).

Identities: a WhatsApp sender's ``wa_id`` is the ``phone`` identity in E.164, the
same as their SMS and Twilio WhatsApp; Messenger and Instagram senders are
``messenger:<PSID>`` and ``instagram:<IGSID>``.

Media is never downloaded here: a WhatsApp media id becomes a media part (id, mime
type, sha256, caption) and is fetched on demand (:func:`WhatsAppMediaClient`);
Messenger and Instagram give a CDN URL, kept on the part as it is.

Outbound goes through the Graph API send endpoints with ``threadline.http``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    Normalized,
    SendFailed,
    SendResult,
    StatusUpdate,
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
    Message,
    MessageStatus,
    Part,
    ReactionPart,
    TextPart,
)

if TYPE_CHECKING:
    # urllib3 (under threadline.http) is imported only by the senders: the webhook
    # handler never calls out, and its cold start should not pay for it.
    from threadline.http import HttpClient, HttpResponse

PROVIDER = "meta"
GRAPH_API_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_API_VERSION = "v23.0"
SIGNATURE_HEADER = "x-hub-signature-256"
SIGNATURE_PREFIX = "sha256="
MAX_CHALLENGE_LENGTH = 256

OBJECT_WHATSAPP = "whatsapp_business_account"
OBJECT_PAGE = "page"
OBJECT_INSTAGRAM = "instagram"

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
# Messenger / Instagram attachment types that are a file at a URL.
MESSENGER_MEDIA_TYPES = frozenset({"image", "video", "audio", "file"})
_MESSENGER_MAPPED = frozenset(
    {"mid", "text", "attachments", "quick_reply", "reply_to", "is_echo", "is_deleted"}
)
# Graph API error codes that mean "slow down" (app, user, page, WhatsApp account and
# pair rate limits): the dispatcher retries them with backoff. Everything else is final.
RETRYABLE_GRAPH_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})


# ---------------------------------------------------------------------- signature


def signature_of(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(request: WebhookRequest, app_secret: str) -> None:
    """Raise SignatureInvalid unless Meta signed exactly this body with our app secret."""
    given = request.headers.get(SIGNATURE_HEADER)
    if not given:
        raise SignatureInvalid("X-Hub-Signature-256 is missing")
    if not given.startswith(SIGNATURE_PREFIX):
        raise SignatureInvalid("X-Hub-Signature-256 is not a sha256= signature")
    expected = signature_of(request.body, app_secret)
    if not hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("utf-8")):
        raise SignatureInvalid("X-Hub-Signature-256 does not match this request")


def _query(request: WebhookRequest) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))


def verify_handshake(request: WebhookRequest, verify_token: str) -> None:
    """Raise SignatureInvalid unless this GET is Meta's subscription check with our token."""
    query = _query(request)
    token = query.get("hub.verify_token", "")
    if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        token.encode("utf-8"), verify_token.encode("utf-8")
    ):
        raise SignatureInvalid("hub.verify_token does not match")


# ---------------------------------------------------------------------- parsing helpers


def _str(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def _id(document: Mapping[str, Any], key: str) -> str | None:
    """An id Meta sends as a string (or, in older payloads, as a number)."""
    value = document.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def _object(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"{key} is not an object")
    return value


def _list(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRequest(f"{key} is not a list")
    return value


def _objects(document: Mapping[str, Any], key: str) -> Iterator[dict[str, Any]]:
    for item in _list(document, key):
        if not isinstance(item, dict):
            raise MalformedRequest(f"an item of {key} is not an object")
        yield item


def _seconds(value: Any) -> datetime | None:
    """WhatsApp's timestamps: Unix seconds, as a string."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedRequest("a timestamp is not Unix seconds") from exc


def _milliseconds(value: Any) -> datetime | None:
    """Messenger's and Instagram's timestamps: Unix milliseconds, as a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRequest("a timestamp is not Unix milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedRequest("a timestamp is not Unix milliseconds") from exc


def _phone(value: str, field: str) -> Identity:
    try:
        return Identity(kind=IdentityKind.PHONE, value=canonical_phone(value))
    except ValueError as exc:
        raise MalformedRequest(f"{field} is not a phone number") from exc


def _scoped_id(kind: IdentityKind, value: str | None, field: str) -> Identity:
    if value is None:
        raise MalformedRequest(f"{field} is missing")
    try:
        return Identity(kind=kind, value=value)
    except ValueError as exc:
        raise MalformedRequest(f"{field} is not a {kind.value} id") from exc


def _float(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise MalformedRequest(f"{field} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedRequest(f"{field} is not a number") from exc


# ---------------------------------------------------------------------- WhatsApp


def _whatsapp_media(media: Mapping[str, Any]) -> MediaPart:
    size = media.get("file_size")
    return build(
        MediaPart,
        content_type=_str(media, "mime_type"),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        filename=_str(media, "filename"),
        caption=_str(media, "caption"),
        sha256=_str(media, "sha256"),
        provider_media_id=_id(media, "id"),
        url=_str(media, "url"),
    )


def _whatsapp_contact(contact: Mapping[str, Any]) -> ContactPart:
    name = _object(contact, "name")
    phones = [
        p.get("phone") or p.get("wa_id")
        for p in _objects(contact, "phones")
        if isinstance(p.get("phone") or p.get("wa_id"), str)
    ]
    emails = [e["email"] for e in _objects(contact, "emails") if isinstance(e.get("email"), str)]
    formatted = _str(name, "formatted_name") or " ".join(
        filter(None, (_str(name, "first_name"), _str(name, "last_name")))
    )
    return build(ContactPart, name=formatted or None, phones=phones, emails=emails)


def _whatsapp_parts(message: Mapping[str, Any], kind: str) -> list[Part]:
    if kind == "contacts":
        return [_whatsapp_contact(c) for c in _objects(message, "contacts")]
    body = _object(message, kind)
    if kind == "text":
        text = _str(body, "body")
        return [TextPart(text=text)] if text else []
    if kind in WHATSAPP_MEDIA_TYPES:
        return [_whatsapp_media(body)]
    if kind == "location":
        return [
            build(
                LocationPart,
                latitude=_float(body.get("latitude"), "location.latitude"),
                longitude=_float(body.get("longitude"), "location.longitude"),
                name=_str(body, "name"),
                address=_str(body, "address"),
            )
        ]
    if kind == "interactive":
        reply_type = _str(body, "type")
        if reply_type in ("button_reply", "list_reply"):
            reply = _object(body, reply_type)
            return [
                build(
                    InteractiveReplyPart,
                    kind="button" if reply_type == "button_reply" else "list",
                    reply_id=_id(reply, "id"),
                    title=_str(reply, "title"),
                    description=_str(reply, "description"),
                )
            ]
        return []  # flows (nfm_reply) and future types stay in channel_data
    if kind == "button":
        # A quick-reply button of a template we sent.
        return [
            build(
                InteractiveReplyPart,
                kind="button",
                reply_id=_str(body, "payload"),
                title=_str(body, "text"),
            )
        ]
    if kind == "reaction":
        emoji = _str(body, "emoji")
        return [
            build(
                ReactionPart,
                emoji=emoji,
                target_provider_message_id=_str(body, "message_id"),
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
    wamid = _str(message, "id")
    sender = _str(message, "from")
    if not wamid or not sender:
        raise MalformedRequest("a WhatsApp message without id or from")
    kind = _str(message, "type") or "unknown"
    metadata = _object(value, "metadata")
    phone_number_id = _id(metadata, "phone_number_id")
    display_number = _str(metadata, "display_phone_number")
    recipient: Identity | None = None
    if display_number:
        try:
            recipient = _phone(display_number, "metadata.display_phone_number")
        except MalformedRequest:
            recipient = None  # kept in channel_data below
    context = _object(message, "context")
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
    reply_to = {"whatsapp_provider": PROVIDER}
    if phone_number_id:
        reply_to["phone_number_id"] = phone_number_id
    return build(
        InboundMessage,
        channel=Channel.WHATSAPP,
        provider=PROVIDER,
        provider_message_id=wamid,
        sender=_phone(sender, "messages.from"),
        recipient=recipient,
        sender_display_name=names.get(sender),
        sent_at=_seconds(message.get("timestamp")),
        parts=_whatsapp_parts(message, kind),
        in_reply_to=_str(context, "id"),
        channel_data=channel_data,
        reply_to=reply_to,
    )


def _whatsapp_status(status: Mapping[str, Any]) -> StatusUpdate | None:
    wamid = _str(status, "id")
    reported = _str(status, "status")
    if not wamid or not reported:
        raise MalformedRequest("a WhatsApp status without id or status")
    mapped = _WHATSAPP_STATUS.get(reported)
    if mapped is None:
        return None  # "deleted", "warning" and future statuses move nothing
    errors = list(_objects(status, "errors"))
    first = errors[0] if errors else {}
    code = _id(first, "code")
    customer_id, message_id = _callback_data(_str(status, "biz_opaque_callback_data"))
    channel_data = {k: v for k, v in status.items() if k not in ("id", "status", "timestamp")}
    return build(
        StatusUpdate,
        provider=PROVIDER,
        provider_message_id=wamid,
        status=mapped,
        at=_seconds(status.get("timestamp")),
        error_code=code or (reported if mapped is MessageStatus.FAILED else None),
        error_message=_str(first, "title") or _str(first, "message"),
        customer_id=customer_id,
        message_id=message_id,
        channel_data=channel_data,
    )


def normalize_whatsapp(document: Mapping[str, Any]) -> list[Normalized]:
    """A ``whatsapp_business_account`` notification: messages and statuses of every change."""
    items: list[Normalized] = []
    for entry in _objects(document, "entry"):
        account_id = _id(entry, "id")
        for change in _objects(entry, "changes"):
            if change.get("field") != "messages":
                continue  # template, quality and account updates: nothing for a timeline
            value = _object(change, "value")
            names = {
                wa_id: name
                for contact in _objects(value, "contacts")
                if isinstance(wa_id := contact.get("wa_id"), str)
                and isinstance(name := _object(contact, "profile").get("name"), str)
                and name
            }
            for message in _objects(value, "messages"):
                items.append(_whatsapp_message(message, value, names, account_id))
            for status in _objects(value, "statuses"):
                update = _whatsapp_status(status)
                if update is not None:
                    items.append(update)
    return items


# ---------------------------------------------------------------------- Messenger / Instagram


def _messenger_attachment(attachment: Mapping[str, Any]) -> Part | None:
    kind = _str(attachment, "type")
    payload = _object(attachment, "payload")
    if kind in MESSENGER_MEDIA_TYPES:
        return build(
            MediaPart,
            url=_str(payload, "url"),
            provider_media_id=_id(payload, "attachment_id"),
            filename=_str(attachment, "name"),
        )
    if kind == "location":
        coordinates = _object(payload, "coordinates")
        return build(
            LocationPart,
            latitude=_float(coordinates.get("lat"), "coordinates.lat"),
            longitude=_float(coordinates.get("long"), "coordinates.long"),
            name=_str(attachment, "title"),
        )
    return None  # templates, fallbacks, shares, story mentions: in channel_data


def _messenger_message_parts(message: Mapping[str, Any]) -> list[Part]:
    parts: list[Part] = []
    text = _str(message, "text")
    quick_reply = _object(message, "quick_reply")
    if quick_reply:
        parts.append(
            build(
                InteractiveReplyPart,
                kind="quick_reply",
                reply_id=_str(quick_reply, "payload"),
                title=text,
            )
        )
    elif text:
        parts.append(TextPart(text=text))
    for attachment in _objects(message, "attachments"):
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
        sender = _id(_object(event, "sender"), "id")
        at = _milliseconds(event.get("timestamp"))
        message = _object(event, "message")
        if message.get("is_echo") is True or sender == self.account_id:
            return []  # what our page or account sent (our replies among them): no loops
        if message:
            return self._message(event, message, sender, at)
        edit = _object(event, "message_edit")
        if edit:
            return self._edit(edit, at)
        postback = _object(event, "postback")
        if postback:
            return [self._postback(event, postback, sender, at)]
        reaction = _object(event, "reaction")
        if reaction:
            return [self._reaction(event, reaction, sender, at)]
        delivery = _object(event, "delivery")
        if delivery:
            mids = [m for m in _list(delivery, "mids") if isinstance(m, str) and m]
            return [self._status(mid, MessageStatus.DELIVERED, at) for mid in mids]
        read = _object(event, "read")
        if read and _str(read, "mid"):
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
        recipient = _id(_object(event, "recipient"), "id")
        channel_data = {**channel_data, "recipient_id": recipient, "account_id": self.account_id}
        reply_key = "page_id" if self.channel is Channel.MESSENGER else "instagram_account_id"
        return build(
            InboundMessage,
            channel=self.channel,
            provider=PROVIDER,
            provider_message_id=provider_message_id,
            sender=_scoped_id(self.kind, sender, "sender.id"),
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
        mid = _str(message, "mid")
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
        reply_to = _object(message, "reply_to")
        channel_data = {k: v for k, v in message.items() if k not in _MESSENGER_MAPPED}
        if reply_to:
            channel_data["reply_to"] = reply_to
        others = [
            a
            for a in _objects(message, "attachments")
            if _str(a, "type") not in MESSENGER_MEDIA_TYPES | {"location"}
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
                in_reply_to=_str(reply_to, "mid"),
            )
        ]

    def _edit(self, edit: Mapping[str, Any], at: datetime | None) -> list[Normalized]:
        mid = _str(edit, "mid")
        if not mid:
            raise MalformedRequest("a message_edit without mid")
        text = _str(edit, "text")
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
        mid = _str(postback, "mid") or f"postback:{sender}:{event.get('timestamp')}"
        part = build(
            InteractiveReplyPart,
            kind="postback",
            reply_id=_str(postback, "payload"),
            title=_str(postback, "title"),
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
        target = _str(reaction, "mid")
        action = _str(reaction, "action")
        part = build(
            ReactionPart,
            emoji=_str(reaction, "emoji"),
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
    kind = IdentityKind.MESSENGER if channel is Channel.MESSENGER else IdentityKind.INSTAGRAM
    items: list[Normalized] = []
    for entry in _objects(document, "entry"):
        account_id = _id(entry, "id")
        if account_id is None:
            raise MalformedRequest("an entry without id")
        events = _MessagingEvents(channel, kind, account_id)
        # Standby events are messages while another app holds the thread (handover
        # protocol): the customer still wrote them.
        for key in ("messaging", "standby"):
            for event in _objects(entry, key):
                items.extend(events.normalize(event))
    return items


def normalize_notification(document: Mapping[str, Any]) -> list[Normalized]:
    """Every message, status and edit in one webhook POST, each provider id once."""
    kind = document.get("object")
    if kind == OBJECT_WHATSAPP:
        items = normalize_whatsapp(document)
    elif kind == OBJECT_PAGE:
        items = normalize_messaging(document, Channel.MESSENGER)
    elif kind == OBJECT_INSTAGRAM:
        items = normalize_messaging(document, Channel.INSTAGRAM)
    else:
        return []  # other Graph objects (user, permissions, ...) are not messaging
    seen: set[tuple[str, str]] = set()
    unique: list[Normalized] = []
    for item in items:
        if isinstance(item, InboundMessage):
            key = ("message", item.provider_message_id)
        elif isinstance(item, StatusUpdate):
            key = (f"status:{item.status.value}", item.provider_message_id)
        elif isinstance(item, MessageEdit):
            key = ("edit", item.edit_id)
        else:
            unique.append(item)
            continue
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


class MetaWebhook:
    """The channel adapter for ``GET|POST /webhooks/meta``."""

    provider = PROVIDER

    def __init__(self, app_secret: Callable[[], str], verify_token: Callable[[], str]) -> None:
        # Callables: each secret is read (and cached by powertools) only when a
        # request needs it, and a rotated one is picked up.
        self._app_secret = app_secret
        self._verify_token = verify_token

    def verify(self, request: WebhookRequest) -> None:
        if request.method.upper() == "GET":
            verify_handshake(request, self._verify_token())
        else:
            verify_signature(request, self._app_secret())

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        if request.method.upper() == "GET":
            challenge = _query(request).get("hub.challenge", "")
            if not challenge or len(challenge) > MAX_CHALLENGE_LENGTH:
                raise MalformedRequest("hub.challenge is missing or too long")
            return [Acknowledgement(status=200, content_type="text/plain", body=challenge)]
        return normalize_notification(parse_json_object(request.body))

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type="text/plain", body="EVENT_RECEIVED")


# ---------------------------------------------------------------------- outbound

CALLBACK_SEPARATOR = "/"


def callback_data(customer_id: str, message_id: str) -> str:
    """What WhatsApp echoes back in every status of a message we sent: who it was."""
    return f"{customer_id}{CALLBACK_SEPARATOR}{message_id}"


def _callback_data(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    customer_id, separator, message_id = value.partition(CALLBACK_SEPARATOR)
    if not separator or not customer_id or not message_id or CALLBACK_SEPARATOR in message_id:
        return None, None
    return customer_id, message_id


def graph_base_url(sandbox_url: str | None, version: str) -> str:
    """The Graph API, or the local stack's sandbox standing in for it."""
    root = f"{sandbox_url.rstrip('/')}/meta" if sandbox_url else GRAPH_API_URL
    return f"{root}/{version}"


def send_failed(response: HttpResponse) -> SendFailed:
    """A Graph API refusal: rate limits and server errors retryable, anything else final."""
    try:
        document = response.json()
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    code_number = code if isinstance(code, int) and not isinstance(code, bool) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    retryable = response.retryable or code_number in RETRYABLE_GRAPH_CODES
    return SendFailed(
        str(code_number) if code_number is not None else str(response.status),
        message or f"the Graph API answered {response.status}",
        retryable=retryable,
        retry_after=response.retry_after() if retryable else None,
    )


class _GraphSender:
    def __init__(
        self,
        *,
        access_token: Callable[[], str],
        sandbox_url: str | None = None,
        version: str = DEFAULT_GRAPH_API_VERSION,
        client: HttpClient | None = None,
    ) -> None:
        self._access_token = access_token
        self.base_url = graph_base_url(sandbox_url, version)
        self._client = client

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        from threadline.http import TransportError, http_client

        client = self._client or http_client()
        # The token goes in a header, not the query string, so no URL carries it.
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        try:
            response = client.post_json(f"{self.base_url}/{path}", payload, headers=headers)
        except TransportError as exc:
            raise SendFailed("network_error", "Meta could not be reached", retryable=True) from exc
        if not response.ok:
            raise send_failed(response)
        try:
            document = response.json()
        except ValueError as exc:
            raise SendFailed(
                "bad_response", "the Graph API answer is not JSON", retryable=False
            ) from exc
        if not isinstance(document, dict):
            raise SendFailed(
                "bad_response", "the Graph API answer is not an object", retryable=False
            )
        return document


def _media(message: Message) -> list[MediaPart]:
    return [p for p in message.parts if isinstance(p, MediaPart) and p.url]


def _text_with_links(message: Message) -> str:
    """Text, plus each media part as its caption and link: the plain-text fallback."""
    lines = [message.text] if message.text else []
    for part in _media(message):
        lines.append(f"{part.caption}: {part.url}" if part.caption else str(part.url))
    return "\n".join(lines)


def _whatsapp_media_type(content_type: str | None) -> str:
    major = (content_type or "").split("/")[0]
    return major if major in ("image", "video", "audio") else "document"


class WhatsAppCloudSender(_GraphSender):
    """Sends WhatsApp messages through the Cloud API (``POST /<phone-number-id>/messages``).

    The business number is the one the customer last wrote to (``reply_to``), else
    the configured default. A template (``channel_data["template"]``) is sent as
    one; else one media part goes as that media with the text as its caption, and
    anything else as text with links.
    """

    provider = PROVIDER

    def __init__(self, *, phone_number_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phone_number_id = phone_number_id or None

    def payload(self, message: Message) -> dict[str, Any]:
        if message.recipient is None or message.recipient.kind is not IdentityKind.PHONE:
            raise SendFailed("no_recipient", "the message has no phone recipient", retryable=False)
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient.value.removeprefix("+"),
            "biz_opaque_callback_data": callback_data(message.customer_id, message.id),
        }
        template = message.channel_data.get("template")
        media = _media(message)
        if isinstance(template, dict):
            body: dict[str, Any] = {
                "name": template["name"],
                "language": {"code": template["language"]},
            }
            if template.get("components"):
                body["components"] = template["components"]
            payload.update(type="template", template=body)
        elif len(media) == 1 and (not message.text or len(message.text) <= 1024):
            part = media[0]
            kind = _whatsapp_media_type(part.content_type)
            body = {"link": part.url}
            caption = message.text or part.caption
            if caption and kind != "audio":
                body["caption"] = caption
            if kind == "document" and part.filename:
                body["filename"] = part.filename
            payload.update(type=kind, **{kind: body})
        else:
            text = _text_with_links(message)
            if not text:
                raise SendFailed("empty_message", "nothing to send", retryable=False)
            payload.update(type="text", text={"body": text, "preview_url": bool(media)})
        return payload

    def send(self, message: Message) -> SendResult:
        payload = self.payload(message)
        reply_to = message.channel_data.get("reply_to") or {}
        phone_number_id = reply_to.get("phone_number_id") or self.phone_number_id
        if not phone_number_id:
            raise SendFailed(
                "whatsapp_not_configured",
                "no WhatsApp business phone number id (MetaWhatsAppPhoneNumberId)",
                retryable=False,
            )
        document = self._post(f"{phone_number_id}/messages", payload)
        messages = document.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, dict) else None
        if not isinstance(wamid, str) or not wamid:
            raise SendFailed(
                "bad_response", "the Cloud API returned no message id", retryable=False
            )
        return SendResult(provider_message_id=wamid)


class MessengerSender(_GraphSender):
    """Sends Messenger or Instagram messages through ``POST /me/messages`` (page token).

    ``messaging_type`` is RESPONSE inside the 24-hour window; a message tag the
    request asked for (``channel_data["message_tag"]``) sends it as MESSAGE_TAG.
    """

    provider = PROVIDER

    def __init__(self, *, channel: Channel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel = channel
        self.kind = (
            IdentityKind.MESSENGER if channel is Channel.MESSENGER else IdentityKind.INSTAGRAM
        )

    def payload(self, message: Message) -> dict[str, Any]:
        if message.recipient is None or message.recipient.kind is not self.kind:
            raise SendFailed(
                "no_recipient", f"the message has no {self.kind.value} recipient", retryable=False
            )
        media = _media(message)
        if len(media) == 1 and not message.text:
            part = media[0]
            kind = _whatsapp_media_type(part.content_type)
            kind = "file" if kind == "document" else kind
            content: dict[str, Any] = {
                "attachment": {"type": kind, "payload": {"url": part.url, "is_reusable": False}}
            }
        else:
            text = _text_with_links(message)
            if not text:
                raise SendFailed("empty_message", "nothing to send", retryable=False)
            content = {"text": text}
        payload: dict[str, Any] = {
            "recipient": {"id": message.recipient.value},
            "messaging_type": "RESPONSE",
            "message": content,
        }
        tag = message.channel_data.get("message_tag")
        if isinstance(tag, str) and tag:
            payload.update(messaging_type="MESSAGE_TAG", tag=tag)
        return payload

    def send(self, message: Message) -> SendResult:
        document = self._post("me/messages", self.payload(message))
        mid = document.get("message_id")
        if not isinstance(mid, str) or not mid:
            raise SendFailed("bad_response", "the Send API returned no message id", retryable=False)
        return SendResult(provider_message_id=mid)


class WhatsAppMediaClient:
    """Fetches a WhatsApp media file by its id, on demand (never in the webhook).

    The Cloud API gives a media URL valid for five minutes (``GET /<media-id>``),
    which is then downloaded with the same token. Callers keep the bytes where they
    need them (the raw bucket, under their sha256).
    """

    def __init__(
        self,
        *,
        access_token: Callable[[], str],
        sandbox_url: str | None = None,
        version: str = DEFAULT_GRAPH_API_VERSION,
        client: HttpClient | None = None,
    ) -> None:
        self._access_token = access_token
        self.base_url = graph_base_url(sandbox_url, version)
        self._client = client

    def fetch(self, media_id: str) -> tuple[bytes, str | None]:
        """(bytes, content type) of the media; SendFailed (retryable or not) otherwise."""
        from threadline.http import TransportError, http_client

        client = self._client or http_client()
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        try:
            located = client.get(f"{self.base_url}/{media_id}", headers=headers)
            if not located.ok:
                raise send_failed(located)
            document = located.json()
            url = document.get("url") if isinstance(document, dict) else None
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise SendFailed("bad_response", "no media URL in the answer", retryable=False)
            media = client.get(url, headers=headers)
        except TransportError as exc:
            raise SendFailed("network_error", "Meta could not be reached", retryable=True) from exc
        except ValueError as exc:
            raise SendFailed(
                "bad_response", "the media answer is not JSON", retryable=False
            ) from exc
        if not media.ok:
            raise send_failed(media)
        return media.body, media.headers.get("content-type")


def _graph_version() -> str:
    return os.environ.get("META_GRAPH_API_VERSION") or DEFAULT_GRAPH_API_VERSION


def whatsapp_sender_from_env() -> WhatsAppCloudSender:
    """The WhatsApp Cloud API sender as template.yaml configures it for the dispatcher."""
    from threadline.secrets import get_secret

    return WhatsAppCloudSender(
        access_token=lambda: get_secret("META_ACCESS_TOKEN"),
        phone_number_id=os.environ.get("META_WHATSAPP_PHONE_NUMBER_ID") or None,
        sandbox_url=os.environ.get("PROVIDER_SANDBOX_URL") or None,
        version=_graph_version(),
    )


def messenger_sender_from_env(channel: Channel) -> MessengerSender:
    """The Messenger or Instagram sender as template.yaml configures it."""
    from threadline.secrets import get_secret

    return MessengerSender(
        channel=channel,
        access_token=lambda: get_secret("META_PAGE_ACCESS_TOKEN"),
        sandbox_url=os.environ.get("PROVIDER_SANDBOX_URL") or None,
        version=_graph_version(),
    )


def media_client_from_env() -> WhatsAppMediaClient:
    """The on-demand WhatsApp media downloader as template.yaml configures it (API)."""
    from threadline.secrets import get_secret

    return WhatsAppMediaClient(
        access_token=lambda: get_secret("META_ACCESS_TOKEN"),
        sandbox_url=os.environ.get("PROVIDER_SANDBOX_URL") or None,
        version=_graph_version(),
    )
