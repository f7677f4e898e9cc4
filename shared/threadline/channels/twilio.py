"""Twilio Programmable Messaging: SMS, MMS and WhatsApp inbound.

Twilio posts ``application/x-www-form-urlencoded`` parameters and signs them with
``X-Twilio-Signature`` (HMAC over the URL it called plus the sorted parameters).
A ``whatsapp:+1...`` address and a plain ``+1...`` are the same ``phone`` identity,
so one person's SMS and WhatsApp land on one timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    WebhookRequest,
    build_inbound,
)
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.identity import canonical_phone
from threadline.schema import (
    Channel,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    Part,
    TextPart,
)

PROVIDER = "twilio"
WHATSAPP_PREFIX = "whatsapp:"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio allows at most 10 media items on one message (MMS and WhatsApp alike).
MAX_MEDIA = 10

# Parameters that the normalized message already carries; everything else Twilio
# sends is kept in channel_data so nothing is dropped silently.
_MAPPED = frozenset(
    {
        "MessageSid",
        "SmsSid",
        "SmsMessageSid",
        "From",
        "To",
        "Body",
        "NumMedia",
        "ProfileName",
        "Latitude",
        "Longitude",
        "Address",
        "Label",
        "ButtonText",
        "ButtonPayload",
        "ListId",
        "ListTitle",
        "ListDescription",
        "OriginalRepliedMessageSid",
    }
)


def parse_form(body: bytes) -> dict[str, str]:
    """Decode a form body. Twilio never repeats a key; a repeated key is malformed."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest("body is not a URL-encoded form") from exc
    form = dict(pairs)
    if len(form) != len(pairs):
        raise MalformedRequest("a form field is repeated")
    return form


def _phone_identity(address: str, field: str) -> Identity:
    try:
        return Identity(
            kind=IdentityKind.PHONE,
            value=canonical_phone(address.removeprefix(WHATSAPP_PREFIX)),
        )
    except ValueError as exc:
        raise MalformedRequest(f"{field} is not a phone number") from exc


def _media_parts(form: Mapping[str, str]) -> list[Part]:
    try:
        count = int(form.get("NumMedia") or 0)
    except ValueError as exc:
        raise MalformedRequest("NumMedia is not a number") from exc
    if not 0 <= count <= MAX_MEDIA:
        raise MalformedRequest("NumMedia is out of range")
    parts: list[Part] = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}")
        if not url:
            raise MalformedRequest(f"MediaUrl{index} is missing")
        parts.append(MediaPart(url=url, content_type=form.get(f"MediaContentType{index}")))
    return parts


def _location_part(form: Mapping[str, str]) -> LocationPart | None:
    if "Latitude" not in form and "Longitude" not in form:
        return None
    try:
        return LocationPart(
            latitude=float(form["Latitude"]),
            longitude=float(form["Longitude"]),
            name=form.get("Label") or None,
            address=form.get("Address") or None,
        )
    except (KeyError, ValueError) as exc:
        raise MalformedRequest("Latitude/Longitude are not a location") from exc


def _interactive_part(form: Mapping[str, str]) -> InteractiveReplyPart | None:
    if form.get("ButtonPayload") or form.get("ButtonText"):
        return InteractiveReplyPart(
            kind="button",
            reply_id=form.get("ButtonPayload") or None,
            title=form.get("ButtonText") or None,
        )
    if form.get("ListId") or form.get("ListTitle"):
        return InteractiveReplyPart(
            kind="list",
            reply_id=form.get("ListId") or None,
            title=form.get("ListTitle") or None,
            description=form.get("ListDescription") or None,
        )
    return None


def normalize_form(form: Mapping[str, str]) -> InboundMessage:
    """One Twilio messaging webhook's parameters as a normalized inbound message."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid")
    if not sid:
        raise MalformedRequest("MessageSid is missing")
    sender_address = form.get("From")
    if not sender_address:
        raise MalformedRequest("From is missing")
    channel = Channel.WHATSAPP if sender_address.startswith(WHATSAPP_PREFIX) else Channel.SMS
    sender = _phone_identity(sender_address, "From")
    recipient: Identity | None = None
    to_address = form.get("To")
    if to_address:
        try:
            recipient = _phone_identity(to_address, "To")
        except MalformedRequest:
            # Our own short code or alphanumeric sender is not E.164; it is still
            # kept, in channel_data below, rather than refusing the customer's message.
            recipient = None

    parts: list[Part] = []
    interactive = _interactive_part(form)
    if interactive is not None:
        parts.append(interactive)
    elif form.get("Body"):
        parts.append(TextPart(text=form["Body"]))
    parts.extend(_media_parts(form))
    location = _location_part(form)
    if location is not None:
        parts.append(location)

    channel_data: dict[str, Any] = {k: v for k, v in form.items() if k not in _MAPPED}
    media_keys = [k for k in channel_data if k.startswith(("MediaUrl", "MediaContentType"))]
    for key in media_keys:
        channel_data.pop(key)
    if recipient is None and to_address:
        channel_data["To"] = to_address

    return build_inbound(
        channel=channel,
        provider=PROVIDER,
        provider_message_id=sid,
        sender=sender,
        recipient=recipient,
        sender_display_name=form.get("ProfileName") or None,
        sent_at=_date_header(form),
        parts=parts,
        in_reply_to=form.get("OriginalRepliedMessageSid") or None,
        channel_data=channel_data,
    )


def _date_header(form: Mapping[str, str]) -> datetime | None:
    # Inbound messaging webhooks carry no send time; status callbacks may carry
    # RFC 2822 dates. Parse when present so both paths share one rule.
    value = form.get("DateSent") or form.get("DateCreated")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None


class TwilioMessaging:
    """The channel adapter for ``POST /webhooks/twilio/messaging``."""

    provider = PROVIDER

    def __init__(self, auth_token: Callable[[], str]) -> None:
        # A callable, so the secret is fetched (and cached by powertools) only for a
        # request that needs it, and a rotated token is picked up.
        self._auth_token = auth_token

    def verify(self, request: WebhookRequest) -> None:
        from twilio.request_validator import (
            SIGNATURE_HEADER,
            SIGNATURE_SETTINGS_HEADER,
            RequestValidator,
            get_signature_algorithm,
        )

        signature = request.headers.get(SIGNATURE_HEADER.lower())
        if not signature:
            raise SignatureInvalid("X-Twilio-Signature is missing")
        form = parse_form(request.body)
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER.lower()))
        validator = RequestValidator(self._auth_token())
        if not validator.validate(request.url, form, signature, algorithm=algorithm):
            raise SignatureInvalid("X-Twilio-Signature does not match this request")

    def normalize(self, request: WebhookRequest) -> list[InboundMessage]:
        return [normalize_form(parse_form(request.body))]

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type="text/xml", body=EMPTY_TWIML)
