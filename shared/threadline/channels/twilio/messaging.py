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
from urllib.parse import parse_qsl, urlencode, urlsplit

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    Normalized,
    SendFailed,
    SendResult,
    StatusUpdate,
    WebhookRequest,
    build,
)
from threadline.channels.twilio.whatsapp import PROVIDER_KEY as WHATSAPP_PROVIDER_KEY
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.identity import canonical_phone
from threadline.schema import (
    Channel,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    Message,
    MessageStatus,
    Part,
    TextPart,
)

PROVIDER = "twilio"
TWILIO_API_URL = "https://api.twilio.com"
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
        "OptOutType",
    }
)

# Twilio's MessageStatus values in status callbacks, as threadline statuses. Values
# before "sent" are progress Twilio reports on its side and change nothing here.
_STATUS_MAP = {
    "queued": MessageStatus.QUEUED,
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.QUEUED,
    "sending": MessageStatus.QUEUED,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "undelivered": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
# The query parameters threadline puts on the StatusCallback URL it gives Twilio;
# Twilio signs the URL, so they are as trustworthy as the body.
CALLBACK_CUSTOMER_PARAM = "cid"
CALLBACK_MESSAGE_PARAM = "mid"


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

    return build(
        InboundMessage,
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
        consent_keyword=form.get("OptOutType") or None,
        # Replies on WhatsApp go back through the provider the customer last used
        # (the same number may also reach us through Meta's Cloud API).
        reply_to={WHATSAPP_PROVIDER_KEY: PROVIDER} if channel is Channel.WHATSAPP else None,
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


def verify_signature(request: WebhookRequest, auth_token: str) -> None:
    """Raise SignatureInvalid unless Twilio signed exactly this request."""
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
    if not RequestValidator(auth_token).validate(request.url, form, signature, algorithm=algorithm):
        raise SignatureInvalid("X-Twilio-Signature does not match this request")


class _TwilioWebhook:
    """What every Twilio webhook shares: the signature and the empty TwiML answer."""

    provider = PROVIDER

    def __init__(self, auth_token: Callable[[], str]) -> None:
        # A callable, so the secret is fetched (and cached by powertools) only for a
        # request that needs it, and a rotated token is picked up.
        self._auth_token = auth_token

    def verify(self, request: WebhookRequest) -> None:
        verify_signature(request, self._auth_token())

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type="text/xml", body=EMPTY_TWIML)


class TwilioMessaging(_TwilioWebhook):
    """The channel adapter for ``POST /webhooks/twilio/messaging``."""

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        return [normalize_form(parse_form(request.body))]


def normalize_status_form(form: Mapping[str, str], query: Mapping[str, str]) -> StatusUpdate | None:
    """A status callback's parameters as a StatusUpdate; None for statuses we ignore."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        raise MalformedRequest("MessageSid is missing")
    reported = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not reported:
        raise MalformedRequest("MessageStatus is missing")
    status = _STATUS_MAP.get(reported)
    if status is None:
        # receiving/received describe inbound messages: nothing of ours to update.
        return None
    error_code = form.get("ErrorCode") or None
    if status is MessageStatus.FAILED and not error_code:
        error_code = reported
    return build(
        StatusUpdate,
        provider=PROVIDER,
        provider_message_id=sid,
        status=status,
        at=_date_header(form),
        error_code=error_code,
        error_message=form.get("ErrorMessage")
        or (reported if status is MessageStatus.FAILED else None),
        customer_id=query.get(CALLBACK_CUSTOMER_PARAM) or None,
        message_id=query.get(CALLBACK_MESSAGE_PARAM) or None,
        channel_data={k: v for k, v in form.items() if k not in {"MessageSid", "SmsSid"}},
    )


class TwilioStatusCallback(_TwilioWebhook):
    """The channel adapter for ``POST /webhooks/twilio/status`` (delivery receipts)."""

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        query = dict(parse_qsl(urlsplit(request.url).query))
        update = normalize_status_form(parse_form(request.body), query)
        return [update] if update else []


def status_callback_url(base_url: str, customer_id: str, message_id: str) -> str:
    """Where Twilio reports on one message we sent; it names the message itself."""
    query = urlencode({CALLBACK_CUSTOMER_PARAM: customer_id, CALLBACK_MESSAGE_PARAM: message_id})
    return f"{base_url.rstrip('/')}/webhooks/twilio/status?{query}"


class TwilioSender:
    """Sends SMS, MMS and WhatsApp through twilio's REST client.

    ``api_base_url`` replaces ``https://api.twilio.com`` in every request the twilio
    ``Client`` makes (a proxy, or the local stack's stand-in); by default the
    client talks to Twilio itself.
    """

    provider = PROVIDER

    def __init__(
        self,
        *,
        account_sid: Callable[[], str],
        auth_token: Callable[[], str],
        sms_from: str,
        whatsapp_from: str,
        status_callback_base: str,
        api_base_url: str = TWILIO_API_URL,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self.sms_from = sms_from
        self.whatsapp_from = whatsapp_from
        self.status_callback_base = status_callback_base
        self.api_base_url = api_base_url.rstrip("/")

    def _client(self) -> Any:
        # twilio.rest costs ~70 ms to import: only the dispatcher pays, on first send.
        from twilio.rest import Client

        return Client(
            self._account_sid(), self._auth_token(), http_client=_http_client(self.api_base_url)
        )

    def send(self, message: Message) -> SendResult:
        from twilio.base.exceptions import (
            TwilioException,
            TwilioRestException,
            TwilioServiceException,
        )

        if message.recipient is None:
            raise SendFailed("no_recipient", "the message has no recipient", retryable=False)
        whatsapp = message.channel is Channel.WHATSAPP
        sender = self.whatsapp_from if whatsapp else self.sms_from
        arguments: dict[str, Any] = {
            "to": f"{WHATSAPP_PREFIX}{message.recipient.value}"
            if whatsapp
            else message.recipient.value,
            "status_callback": status_callback_url(
                self.status_callback_base, message.customer_id, message.id
            ),
        }
        if sender.startswith("MG"):
            arguments["messaging_service_sid"] = sender
        else:
            arguments["from_"] = (
                f"{WHATSAPP_PREFIX}{sender}"
                if whatsapp and not sender.startswith(WHATSAPP_PREFIX)
                else sender
            )
        text = message.text
        media = [p.url for p in message.parts if isinstance(p, MediaPart) and p.url]
        if text:
            arguments["body"] = text
        if media:
            arguments["media_url"] = media
        try:
            created = self._client().messages.create(**arguments)
        except TwilioRestException as exc:
            raise _send_failed(exc.status, exc.code, exc.msg) from exc
        except TwilioServiceException as exc:
            # Twilio's newer RFC 9457 error bodies arrive as this exception instead.
            raise _send_failed(exc.status, exc.code, exc.detail or exc.title) from exc
        except (TwilioException, OSError) as exc:
            raise SendFailed(
                "network_error", "Twilio could not be reached", retryable=True
            ) from exc
        return SendResult(provider_message_id=str(created.sid))


def _send_failed(status: int, code: int | None, message: str | None) -> SendFailed:
    """Rate limits and Twilio's own errors are worth retrying; any other refusal is final."""
    return SendFailed(
        str(code or status),
        message or "Twilio refused the message",
        retryable=status == 429 or status >= 500,
    )


def _http_client(api_base_url: str) -> Any:
    from twilio.http.http_client import TwilioHttpClient

    class _RootedHttpClient(TwilioHttpClient):  # type: ignore[misc]
        """Sends every Twilio API request to ``api_base_url`` instead of api.twilio.com."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            target = f"{api_base_url}{parts.path}"
            if parts.query:
                target += f"?{parts.query}"
            return super().request(method, target, *args, **kwargs)

    if api_base_url != TWILIO_API_URL:
        return _RootedHttpClient(timeout=10)
    return TwilioHttpClient(timeout=10)


def sender_from_env() -> TwilioSender:
    """The sender as template.yaml configures it for the dispatcher."""
    from threadline.secrets import get_secret
    from threadline.settings import api_base_url, required_env

    return TwilioSender(
        account_sid=lambda: get_secret("TWILIO_ACCOUNT_SID"),
        auth_token=lambda: get_secret("TWILIO_AUTH_TOKEN"),
        sms_from=required_env("TWILIO_SMS_FROM"),
        whatsapp_from=required_env("TWILIO_WHATSAPP_FROM"),
        status_callback_base=required_env("PUBLIC_BASE_URL"),
        api_base_url=api_base_url("TWILIO_API_BASE_URL", TWILIO_API_URL),
    )
