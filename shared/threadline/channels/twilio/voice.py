"""Twilio Programmable Voice: answer calls with TwiML, file calls and voicemail on the timeline.

One function serves five routes, each a Twilio-signed form POST checked with the
messaging webhook's validator (:func:`threadline.channels.twilio.messaging.verify_signature`):

* ``/webhooks/twilio/voice`` — a call comes in: answer with TwiML built by twilio's
  ``VoiceResponse``: the greeting, then either a ``<Dial>`` to the configured number
  (ring timeout, ``action`` back to us) or voicemail (``<Record>`` with transcription).
  Nothing is stored: the answer needs no AWS call.
* ``/webhooks/twilio/voice/dial`` — the ``<Dial>`` action: the forwarded call was
  answered (a call with its duration) or not (a missed call, then voicemail).
* ``/webhooks/twilio/voice/status`` — the number's call status callback: a call
  that ended without a ``<Dial>`` having been answered is a missed call.
* ``/webhooks/twilio/voice/recording`` — the ``<Record>`` action and its
  ``recordingStatusCallback``: a voicemail with its recording URL and duration.
* ``/webhooks/twilio/voice/transcription`` — ``transcribeCallback``: the transcript,
  added to the voicemail (an edit of the same entry, not a second message).

Every entry is filed on the caller's ``phone`` identity, the one their SMS and
WhatsApp use, with channel ``voice``. A call makes at most two entries, keyed
``<CallSid>:call`` and ``<CallSid>:voicemail``: whichever callback comes first
creates each one, and retries (or the second callback saying the same thing) meet
the DEDUP item and are stored once. Twilio's recording status callback does not say
who called, so every callback URL we hand Twilio carries ``caller=<E.164>``; Twilio
signs the whole URL, query included, so it is as trustworthy as the form.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    Normalized,
    WebhookRequest,
    build,
)
from threadline.channels.twilio.messaging import EMPTY_TWIML, PROVIDER, parse_form, verify_signature
from threadline.errors import MalformedRequest
from threadline.identity import canonical_phone
from threadline.logs import logger
from threadline.schema import Channel, Identity, IdentityKind, MediaPart, Part, TextPart

VOICE_PATH = "/webhooks/twilio/voice"
CALLER_PARAM = "caller"
# The statuses a call ends in (Twilio's CallStatus values); others are progress.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# DialCallStatus values meaning a person took the forwarded call.
ANSWERED_DIAL_STATUSES = frozenset({"completed", "answered"})
# Twilio serves a recording as WAV unless .mp3 is appended to its URL.
RECORDING_CONTENT_TYPE = "audio/x-wav"
# Parameters an entry carries in its own fields; the rest go to channel_data verbatim.
_MAPPED = frozenset({"CallSid", "From", "To"})
TWIML_CONTENT_TYPE = "text/xml"


class Event:
    """The routes under ``VOICE_PATH``, by their last path segment."""

    INCOMING = ""
    DIAL = "dial"
    STATUS = "status"
    RECORDING = "recording"
    TRANSCRIPTION = "transcription"


@dataclass(frozen=True)
class VoiceSettings:
    """What the TwiML says and does, from template parameters."""

    greeting: str = "Thank you for calling."
    voicemail_prompt: str = "Please leave a message after the tone."
    forward_to: str | None = None
    """E.164 number to ring; None sends every call to voicemail."""
    ring_timeout_seconds: int = 20
    voicemail_max_length_seconds: int = 120

    @classmethod
    def from_env(cls) -> VoiceSettings:
        forward = (os.environ.get("VOICE_FORWARD_TO") or "").strip()
        return cls(
            greeting=os.environ.get("VOICE_GREETING") or cls.greeting,
            voicemail_prompt=os.environ.get("VOICEMAIL_PROMPT") or cls.voicemail_prompt,
            forward_to=canonical_phone(forward) if forward else None,
            ring_timeout_seconds=int(os.environ.get("VOICE_RING_TIMEOUT_SECONDS") or 20),
            voicemail_max_length_seconds=int(os.environ.get("VOICEMAIL_MAX_LENGTH_SECONDS") or 120),
        )


# ---------------------------------------------------------------- TwiML


def callback_url(base_url: str, event: str, caller: str | None) -> str:
    """One of our voice routes, naming the caller for callbacks that do not."""
    url = f"{base_url.rstrip('/')}{VOICE_PATH}/{event}"
    return f"{url}?{urlencode({CALLER_PARAM: caller})}" if caller else url


def _twiml(build_response: Callable[[Any], None]) -> Acknowledgement:
    # twilio.twiml is imported on first use, like the rest of the SDK: handler cold
    # start stays within budget (bench/run.py measures it).
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    build_response(response)
    return Acknowledgement(status=200, content_type=TWIML_CONTENT_TYPE, body=str(response))


def incoming_call_twiml(
    settings: VoiceSettings, base_url: str, caller: str | None
) -> Acknowledgement:
    """The greeting, then the forwarded call or voicemail."""

    def compose(response: Any) -> None:
        response.say(settings.greeting)
        if settings.forward_to:
            response.dial(
                settings.forward_to,
                timeout=settings.ring_timeout_seconds,
                action=callback_url(base_url, Event.DIAL, caller),
                method="POST",
            )
        else:
            _voicemail(response, settings, base_url, caller)

    return _twiml(compose)


def voicemail_twiml(settings: VoiceSettings, base_url: str, caller: str | None) -> Acknowledgement:
    return _twiml(lambda response: _voicemail(response, settings, base_url, caller))


def hangup_twiml() -> Acknowledgement:
    return _twiml(lambda response: response.hangup())


def _voicemail(response: Any, settings: VoiceSettings, base_url: str, caller: str | None) -> None:
    recording = callback_url(base_url, Event.RECORDING, caller)
    response.say(settings.voicemail_prompt)
    # An action is required: without one Twilio fetches the current document again
    # when the recording ends, and the caller would hear the greeting once more.
    response.record(
        action=recording,
        method="POST",
        max_length=settings.voicemail_max_length_seconds,
        play_beep=True,
        recording_status_callback=recording,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed",
        transcribe=True,
        transcribe_callback=callback_url(base_url, Event.TRANSCRIPTION, caller),
    )


# ---------------------------------------------------------------- parameters


def _phone(value: str | None) -> Identity | None:
    if not value:
        return None
    try:
        return Identity(kind=IdentityKind.PHONE, value=canonical_phone(value))
    except ValueError:
        return None  # anonymous, restricted, a SIP or client: address: no phone


def caller_identity(form: Mapping[str, str], query: Mapping[str, str]) -> Identity | None:
    """The caller's phone: ``From``, else the ``caller`` our callback URL carries."""
    return _phone(form.get("From")) or _phone(query.get(CALLER_PARAM))


def _seconds(form: Mapping[str, str], key: str) -> int | None:
    value = form.get(key)
    if value is None or value == "":
        return None
    # isascii: str.isdigit() also accepts digits int() refuses ("²").
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise MalformedRequest(f"{key} is not a number of seconds")
    return int(value)


def _timestamp(form: Mapping[str, str]) -> datetime | None:
    value = form.get("Timestamp")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _call_sid(form: Mapping[str, str]) -> str:
    sid = form.get("CallSid")
    if not sid:
        raise MalformedRequest("CallSid is missing")
    return sid


def _entry(
    form: Mapping[str, str],
    caller: Identity,
    key: str,
    parts: list[Part],
    summary: tuple[str, dict[str, Any]],
) -> InboundMessage:
    channel_data: dict[str, Any] = {k: v for k, v in form.items() if k not in _MAPPED}
    name, details = summary
    channel_data[name] = {k: v for k, v in details.items() if v is not None}
    return build(
        InboundMessage,
        channel=Channel.VOICE,
        provider=PROVIDER,
        provider_message_id=f"{_call_sid(form)}:{key}",
        sender=caller,
        recipient=_phone(form.get("To")),
        sent_at=_timestamp(form),
        parts=parts,
        thread_id=_call_sid(form),
        channel_data=channel_data,
    )


def call_entry(
    form: Mapping[str, str], caller: Identity, *, outcome: str, status: str, duration: int | None
) -> InboundMessage:
    """The call itself: ``answered`` (a person took it) or ``missed``."""
    summary = {"outcome": outcome, "status": status, "duration_seconds": duration}
    return _entry(form, caller, "call", [], ("call", summary))


def _recording_part(form: Mapping[str, str]) -> MediaPart:
    url = form.get("RecordingUrl")
    sid = form.get("RecordingSid")
    if not url and not sid:
        raise MalformedRequest("RecordingUrl and RecordingSid are missing")
    return build(
        MediaPart,
        content_type=RECORDING_CONTENT_TYPE,
        url=url or None,
        provider_media_id=sid or None,
    )


def voicemail_entry(
    form: Mapping[str, str], caller: Identity, transcript: str | None
) -> InboundMessage:
    """The voicemail: its recording, and its transcript once Twilio has one."""
    parts: list[Part] = [_recording_part(form)]
    if transcript:
        parts.append(TextPart(text=transcript))
    summary = {
        "recording_sid": form.get("RecordingSid") or None,
        "duration_seconds": _seconds(form, "RecordingDuration"),
        "transcription_status": form.get("TranscriptionStatus") or None,
    }
    return _entry(form, caller, "voicemail", parts, ("voicemail", summary))


# ---------------------------------------------------------------- the events


def normalize_voice(
    event: str,
    form: Mapping[str, str],
    query: Mapping[str, str],
    settings: VoiceSettings,
    base_url: str,
) -> list[Normalized]:
    """One voice request as the entries it makes and the answer Twilio needs."""
    _call_sid(form)
    caller = caller_identity(form, query)
    caller_value = caller.value if caller else None
    if event == Event.INCOMING:
        return [incoming_call_twiml(settings, base_url, caller_value)]
    items: list[Normalized] = []
    if event == Event.DIAL:
        dial_status = (form.get("DialCallStatus") or "").lower()
        if not dial_status:
            raise MalformedRequest("DialCallStatus is missing")
        answered = dial_status in ANSWERED_DIAL_STATUSES
        if caller is not None:
            items.append(
                call_entry(
                    form,
                    caller,
                    outcome="answered" if answered else "missed",
                    status=dial_status,
                    duration=_seconds(form, "DialCallDuration"),
                )
            )
        # A caller who hung up while it rang is gone: nothing left to say to them.
        if answered or dial_status == "canceled":
            items.append(hangup_twiml())
        else:
            items.append(voicemail_twiml(settings, base_url, caller_value))
    elif event == Event.STATUS:
        status = (form.get("CallStatus") or "").lower()
        if not status:
            raise MalformedRequest("CallStatus is missing")
        # A call a person answered was filed by the <Dial> action, which Twilio
        # requests before the call ends; an ended call with no entry yet was taken
        # by nobody but the greeting and voicemail (or rang out, was busy, failed).
        if status in FINAL_CALL_STATUSES and caller is not None:
            items.append(
                call_entry(
                    form,
                    caller,
                    outcome="missed",
                    status=status,
                    duration=_seconds(form, "CallDuration"),
                )
            )
    elif event == Event.RECORDING:
        recording_status = (form.get("RecordingStatus") or "completed").lower()
        # The <Record> action has no RecordingStatus; absent or failed recordings
        # have nothing to listen to.
        has_audio = _seconds(form, "RecordingDuration") != 0
        if recording_status == "completed" and has_audio and caller is not None:
            items.append(voicemail_entry(form, caller, None))
        items.append(hangup_twiml())
    elif event == Event.TRANSCRIPTION:
        status = (form.get("TranscriptionStatus") or "").lower()
        if not status:
            raise MalformedRequest("TranscriptionStatus is missing")
        transcript = form.get("TranscriptionText") if status == "completed" else None
        if caller is not None:
            entry = voicemail_entry(form, caller, transcript)
            # Creates the voicemail when the transcript is first to arrive; when the
            # recording callback was, the edit adds the transcript to that entry.
            items.append(entry)
            if transcript:
                items.append(
                    build(
                        MessageEdit,
                        provider=PROVIDER,
                        provider_message_id=entry.provider_message_id,
                        kind="edited",
                        edit_id=form.get("TranscriptionSid") or f"{_call_sid(form)}:transcription",
                        parts=entry.parts,
                        channel_data={"transcription_sid": form.get("TranscriptionSid")},
                    )
                )
    else:
        raise MalformedRequest("not a voice route")
    if caller is None and event != Event.INCOMING:
        # Anonymous or withheld numbers have no identity to file the call on.
        logger.info("voice event without a caller phone not filed", extra={"event": event})
    return items


def route_event(url: str) -> tuple[str, dict[str, str]]:
    """(event, query) from the URL Twilio called."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    prefix = path.find(VOICE_PATH)
    if prefix < 0:
        raise MalformedRequest("not a voice route")
    event = path[prefix + len(VOICE_PATH) :].lstrip("/")
    return event, dict(parse_qsl(parts.query))


class TwilioVoice:
    """The channel adapter for the ``/webhooks/twilio/voice`` routes."""

    provider = PROVIDER

    def __init__(
        self, auth_token: Callable[[], str], settings: VoiceSettings | None = None
    ) -> None:
        self._auth_token = auth_token
        self.settings = settings or VoiceSettings()

    def verify(self, request: WebhookRequest) -> None:
        verify_signature(request, self._auth_token())

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        event, query = route_event(request.url)
        base_url = request.url[: request.url.find(VOICE_PATH)]
        return normalize_voice(event, parse_form(request.body), query, self.settings, base_url)

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type=TWIML_CONTENT_TYPE, body=EMPTY_TWIML)
