"""One signed provider request per channel, as the provider would send it.

Each channel is a :class:`ChannelSender`: the identity kind its ``--from`` takes and a
function that posts the provider's request(s) to the stack's webhook, signed as the
provider signs: Twilio's ``X-Twilio-Signature`` (twilio's ``RequestValidator``),
Slack's v0 signature (slack_sdk's ``SignatureVerifier``), Meta's
``X-Hub-Signature-256`` (threadline's own ``signature_of``, the HMAC the webhook
checks) and Telegram's secret-token header. E-mail goes through the local stack's
``POST /_dev/email`` as SES inbound and S3 would deliver it.

Adding a channel: a ``send_<name>`` function and one entry in :data:`CHANNELS`.
Web chat is one (:mod:`threadline_cli.webchat`): a session from
``POST /webchat/v1/sessions`` (the server assigns the visitor id), then a ``send``
frame on the WebSocket it names, answered by an ``ack`` (docs/cli.md).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import requests

from threadline_cli.target import CliError, Target, error_text

# The business's own addresses on each provider (any value works locally).
BUSINESS_NUMBER = "+15557654321"
BUSINESS_EMAIL = "support@threadline.localhost"
META_PAGE_ID = "103721942460212"
META_INSTAGRAM_ACCOUNT_ID = "17841405822304914"
META_WABA_ID = "102290129340398"
META_PHONE_NUMBER_ID = "106540352242922"
SLACK_DEFAULT_TEAM = "T0LOCAL01"
SLACK_APP_ID = "A0LOCAL01"


@dataclass(frozen=True)
class Delivery:
    """What the CLI sent and what the stack answered, one line each."""

    description: str
    status: int


@dataclass
class SendRequest:
    target: Target
    value: str  # the sender identity's canonical value (+15551234567, T0123:U0123, ...)
    text: str
    name: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What else happened, one line each (web chat's ack)."""
    message_id: str | None = None
    """The stored message's id, when the channel answers with it (web chat)."""

    def post(self, description: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        response = self.target.request("POST", path_or_url, **kwargs)
        self.deliveries.append(Delivery(description, response.status_code))
        if not response.ok:
            raise CliError(
                f"{description}: the stack answered {response.status_code}: {error_text(response)}"
            )
        return response


@dataclass(frozen=True)
class ChannelSender:
    name: str
    identity_kind: str
    example: str
    send: Callable[[SendRequest], None]
    local_only: bool = False


# ---------------------------------------------------------------------- Twilio


def twilio_signature(target: Target, url: str, params: dict[str, str]) -> str:
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(target.secret("TWILIO_AUTH_TOKEN")).compute_signature(url, params))


def twilio_post(request: SendRequest, description: str, url: str, params: dict[str, str]) -> str:
    """POST ``params`` form-encoded to ``url`` as Twilio does; the answer's body."""
    signature = twilio_signature(request.target, url, params)
    response = request.post(
        description, url, data=params, headers={"X-Twilio-Signature": signature}
    )
    return response.text


def twilio_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def account_sid(target: Target) -> str:
    try:
        return target.secret("TWILIO_ACCOUNT_SID")
    except CliError:
        return twilio_sid("AC")  # only the auth token signs; any SID shape will do


def _twilio_message(request: SendRequest, sender: str, recipient: str) -> dict[str, str]:
    sid = twilio_sid("SM")
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": request.text,
        "To": recipient,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid(request.target),
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def send_sms(request: SendRequest) -> None:
    params = _twilio_message(request, request.value, BUSINESS_NUMBER)
    url = request.target.url("/webhooks/twilio/messaging")
    twilio_post(request, "Twilio SMS webhook", url, params)


def send_whatsapp(request: SendRequest) -> None:
    params = _twilio_message(request, f"whatsapp:{request.value}", f"whatsapp:{BUSINESS_NUMBER}")
    params.update(
        {"ProfileName": request.name or "Local Tester", "WaId": request.value.lstrip("+")}
    )
    url = request.target.url("/webhooks/twilio/messaging")
    twilio_post(request, "Twilio WhatsApp webhook", url, params)


def send_voice(request: SendRequest) -> None:
    """A missed call, and a voicemail whose transcript is the text (none if empty).

    The call goes to the voice webhook; its TwiML answer names the recording and
    transcription callbacks, which are then called as Twilio would after the
    caller spoke.
    """
    call = {
        "AccountSid": account_sid(request.target),
        "ApiVersion": "2010-04-01",
        "CallSid": twilio_sid("CA"),
        "CallStatus": "ringing",
        "Called": BUSINESS_NUMBER,
        "Caller": request.value,
        "Direction": "inbound",
        "From": request.value,
        "To": BUSINESS_NUMBER,
    }
    twiml = twilio_post(
        request, "Twilio voice webhook", request.target.url("/webhooks/twilio/voice"), call
    )
    record = _record_verb(twiml)
    ended = {**call, "CallStatus": "no-answer", "CallDuration": "0"}
    status_url = request.target.url("/webhooks/twilio/voice/status")
    twilio_post(request, "Twilio call status (no-answer)", status_url, ended)
    if record is None or not request.text:
        return
    recording_sid = twilio_sid("RE")
    recording_url = f"https://api.twilio.com/2010-04-01/Accounts/{call['AccountSid']}/Recordings/{recording_sid}"
    if record.get("recordingStatusCallback"):
        recording = {
            "AccountSid": call["AccountSid"],
            "CallSid": call["CallSid"],
            "RecordingSid": recording_sid,
            "RecordingUrl": recording_url,
            "RecordingStatus": "completed",
            "RecordingDuration": "9",
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
        }
        twilio_post(
            request, "Twilio recording status", record["recordingStatusCallback"], recording
        )
    if record.get("transcribeCallback"):
        transcription_sid = twilio_sid("TR")
        transcript = {
            **call,
            "CallStatus": "completed",
            "TranscriptionSid": transcription_sid,
            "TranscriptionText": request.text,
            "TranscriptionStatus": "completed",
            "TranscriptionUrl": f"{recording_url}/Transcriptions/{transcription_sid}",
            "TranscriptionType": "fast",
            "RecordingSid": recording_sid,
            "RecordingUrl": recording_url,
        }
        twilio_post(request, "Twilio transcription", record["transcribeCallback"], transcript)


def _record_verb(twiml: str) -> dict[str, str] | None:
    """The attributes of the TwiML answer's ``<Record>``; None when it forwards instead."""
    try:
        root = ElementTree.fromstring(twiml)  # noqa: S314 - the stack's own TwiML
    except ElementTree.ParseError:
        raise CliError("the voice webhook did not answer TwiML") from None
    verb = root.find("Record")
    return dict(verb.attrib) if verb is not None else None


# ----------------------------------------------------------------------- Slack


def slack_signed_headers(target: Target, body: str, timestamp: int | None = None) -> dict[str, str]:
    from slack_sdk.signature import SignatureVerifier

    at = str(int(time.time()) if timestamp is None else timestamp)
    verifier = SignatureVerifier(target.secret("SLACK_SIGNING_SECRET"))
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": at,
        "X-Slack-Signature": str(verifier.generate_signature(timestamp=at, body=body)),
    }


def send_slack(request: SendRequest) -> None:
    team, _, user = request.value.partition(":")
    ts = f"{time.time():.6f}"
    channel = "D" + secrets.token_hex(4).upper()
    event = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": request.text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": "im",
        "team": team,
        "client_msg_id": secrets.token_hex(16),
    }
    envelope = {
        "token": "local",
        "team_id": team,
        "api_app_id": SLACK_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": "Ev" + secrets.token_hex(5).upper(),
        "event_time": int(time.time()),
    }
    body = json.dumps(envelope)
    request.post(
        "Slack Events API webhook",
        "/webhooks/slack/events",
        data=body.encode(),
        headers=slack_signed_headers(request.target, body),
    )


# ------------------------------------------------------------------------ Meta


def meta_signature(target: Target, body: bytes) -> str:
    from threadline.channels.meta.webhook import signature_of

    return signature_of(body, target.secret("META_APP_SECRET"))


def _meta_post(request: SendRequest, description: str, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(request.target, body),
    }
    request.post(description, "/webhooks/meta", data=body, headers=headers)


def _messaging_entry(sender: str, recipient: str, text: str, mid: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    event = {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": now,
        "message": {"mid": mid, "text": text},
    }
    return {"id": recipient, "time": now, "messaging": [event]}


def send_messenger(request: SendRequest) -> None:
    entry = _messaging_entry(
        request.value, META_PAGE_ID, request.text, "m_" + secrets.token_hex(16)
    )
    _meta_post(request, "Meta webhook (Messenger)", {"object": "page", "entry": [entry]})


def send_instagram(request: SendRequest) -> None:
    entry = _messaging_entry(
        request.value, META_INSTAGRAM_ACCOUNT_ID, request.text, "aWdf" + secrets.token_hex(24)
    )
    _meta_post(request, "Meta webhook (Instagram)", {"object": "instagram", "entry": [entry]})


def send_whatsapp_cloud(request: SendRequest) -> None:
    wa_id = request.value.lstrip("+")
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": BUSINESS_NUMBER.lstrip("+"),
            "phone_number_id": META_PHONE_NUMBER_ID,
        },
        "contacts": [{"profile": {"name": request.name or "Local Tester"}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": "wamid." + secrets.token_urlsafe(32),
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": request.text},
            }
        ],
    }
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": META_WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }
    _meta_post(request, "Meta webhook (WhatsApp Cloud API)", document)


# -------------------------------------------------------------------- Telegram


def send_telegram(request: SendRequest) -> None:
    user_id = int(request.value)
    person = {"first_name": request.name or "Local", "language_code": "en"}
    update = {
        "update_id": secrets.randbelow(10**9),
        "message": {
            "message_id": secrets.randbelow(10**6) + 1,
            "from": {"id": user_id, "is_bot": False, **person},
            "chat": {"id": user_id, "type": "private", "first_name": person["first_name"]},
            "date": int(time.time()),
            "text": request.text,
        },
    }
    request.post(
        "Telegram webhook",
        "/webhooks/telegram",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": request.target.secret("TELEGRAM_SECRET_TOKEN")},
    )


# ---------------------------------------------------------------------- e-mail


def build_email(sender: str, text: str, *, name: str | None = None) -> bytes:
    """A plain-text mail from ``sender`` to the support address, as a raw .eml."""
    from email.message import EmailMessage
    from email.utils import format_datetime, formataddr, make_msgid

    mail = EmailMessage()
    mail["From"] = formataddr((name or "", sender))
    mail["To"] = BUSINESS_EMAIL
    first_line = text.strip().splitlines()[0] if text.strip() else "(no subject)"
    mail["Subject"] = first_line[:78]
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    mail.set_content(text)
    return bytes(mail)


def send_email(request: SendRequest) -> None:
    raw = build_email(request.value, request.text, name=request.name)
    response = request.post(
        "mail drop (SES inbound + S3)",
        "/_dev/email",
        data=raw,
        headers={"Content-Type": "message/rfc822"},
    )
    failed = [
        delivery
        for delivery in response.json()
        if not delivery.get("ok") or (delivery.get("result") or {}).get("filed") == 0
    ]
    if failed:
        first = failed[0]
        raise CliError(
            f"{first.get('function')} did not file the mail: "
            f"{first.get('error') or first.get('result')}"
        )


# ---------------------------------------------------------------------- web chat


def send_webchat(request: SendRequest) -> None:
    from threadline_cli.webchat import send_webchat as send

    send(request)


CHANNELS: dict[str, ChannelSender] = {
    sender.name: sender
    for sender in (
        ChannelSender("sms", "phone", "+15551234567", send_sms),
        ChannelSender("whatsapp", "phone", "+15551234567", send_whatsapp),
        ChannelSender("voice", "phone", "+15551234567", send_voice),
        ChannelSender("whatsapp-cloud", "phone", "+15551234567", send_whatsapp_cloud),
        ChannelSender("slack", "slack", "T0LOCAL01:U0123ABCD", send_slack),
        ChannelSender("messenger", "messenger", "6789012345678901", send_messenger),
        ChannelSender("instagram", "instagram", "5432109876543210", send_instagram),
        ChannelSender("telegram", "telegram", "123456789", send_telegram),
        ChannelSender("email", "email", "ada@example.com", send_email, local_only=True),
        ChannelSender("webchat", "webchat", "new", send_webchat),
    )
}


def canonical_identity(channel: ChannelSender, given: str) -> tuple[str, str]:
    """``(kind:value, value)`` for ``--from``; a :class:`CliError` when it does not fit.

    ``given`` is ``kind:value`` or a bare value of the channel's kind; a Slack user
    without a team (``U0123ABCD``) is in :data:`SLACK_DEFAULT_TEAM`.
    """
    from pydantic import ValidationError

    from threadline.schema import Identity, IdentityKind

    if channel.identity_kind == "webchat" and given.removeprefix("webchat:") == "new":
        return "webchat:new", "new"  # the stack assigns the visitor id
    kind, separator, value = given.partition(":")
    if not separator or kind not in {k.value for k in IdentityKind}:
        kind, value = channel.identity_kind, given
    if kind != channel.identity_kind:
        raise CliError(
            f"{channel.name} wants a {channel.identity_kind} identity "
            f"(e.g. {channel.identity_kind}:{channel.example}), not {given!r}"
        )
    if kind == "slack" and ":" not in value:
        value = f"{SLACK_DEFAULT_TEAM}:{value}"
    try:
        identity = Identity(kind=IdentityKind(kind), value=value)
    except (ValidationError, ValueError):
        raise CliError(
            f"{given!r} is not a {kind} identity (e.g. {channel.identity_kind}:{channel.example})"
        ) from None
    problem = _shape_problem(kind, identity.value)
    if problem:
        raise CliError(f"{given!r} is not a {kind} identity: {problem}")
    return str(identity), identity.value


def _shape_problem(kind: str, value: str) -> str | None:
    """What the provider would never send as this kind of id, if anything."""
    if kind in {"messenger", "instagram", "telegram"} and not value.isdigit():
        return "the provider's ids are numbers"
    if kind == "slack":
        team, _, user = value.partition(":")
        if not (team[:1] in {"T", "E"} and user[:1] in {"U", "W"}):
            return "Slack ids look like T0123ABCD:U0123ABCD (team:user)"
    return None
