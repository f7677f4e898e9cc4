"""Twilio voice: the TwiML a call is answered with, and what each callback files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit import twilio_voice_payloads as tv
from tests.unit.webhook_events import (
    API_HOST,
    AUTH_TOKEN,
    http_api_event,
    sign,
    signed_event,
    url_for,
)
from threadline.channels.base import Acknowledgement, InboundMessage, MessageEdit, WebhookRequest
from threadline.channels.twilio.voice import (
    Event,
    TwilioVoice,
    VoiceSettings,
    normalize_voice,
)
from threadline.errors import MalformedRequest, SignatureInvalid, StorageUnavailable
from threadline.schema import Identity, IdentityKind, MediaPart, RawPayloadRef, TextPart
from threadline.settings import webhook_settings
from threadline.store import IngestResult, KeptRaw, RawPayload
from threadline.webhook import handle_webhook

BASE = f"https://{API_HOST}"
VOICEMAIL = VoiceSettings(greeting="Thanks for calling Acme.", voicemail_prompt="Leave a message.")
FORWARD = VoiceSettings(forward_to="+15555550177", ring_timeout_seconds=25)
CALLER = Identity(kind=IdentityKind.PHONE, value=tv.CALLER)
CALLER_QUERY = urlencode({"caller": tv.CALLER})


@pytest.fixture(autouse=True)
def no_public_base_url(monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    webhook_settings.cache_clear()
    yield
    webhook_settings.cache_clear()


def voice(event: str, form: dict[str, str], settings: VoiceSettings = VOICEMAIL, query=None):
    return normalize_voice(event, form, query or {}, settings, BASE)


def twiml(items: list[Any]) -> ElementTree.Element:
    (answer,) = [i for i in items if isinstance(i, Acknowledgement)]
    assert answer.content_type == "text/xml"
    return ElementTree.fromstring(answer.body)


def entries(items: list[Any]) -> list[InboundMessage]:
    return [i for i in items if isinstance(i, InboundMessage)]


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# ---------------------------------------------------------------- the TwiML


def test_without_a_forward_number_a_call_hears_the_greeting_then_records_a_voicemail():
    items = voice(Event.INCOMING, tv.INCOMING)
    assert entries(items) == []  # answering costs no AWS call
    root = twiml(items)
    assert [child.tag for child in root] == ["Say", "Say", "Record"]
    assert root[0].text == "Thanks for calling Acme."
    assert root[1].text == "Leave a message."
    record = root[2].attrib
    assert record["transcribe"] == "true"
    assert record["maxLength"] == "120"
    assert record["recordingStatusCallback"] == (
        f"{BASE}/webhooks/twilio/voice/recording?{CALLER_QUERY}"
    )
    assert (
        record["transcribeCallback"] == f"{BASE}/webhooks/twilio/voice/transcription?{CALLER_QUERY}"
    )
    # Without an action Twilio would fetch the greeting again after the beep.
    assert record["action"] == f"{BASE}/webhooks/twilio/voice/recording?{CALLER_QUERY}"
    assert query_of(record["action"]) == {"caller": tv.CALLER}


def test_with_a_forward_number_the_call_is_dialled_with_a_timeout_and_an_action():
    root = twiml(voice(Event.INCOMING, tv.INCOMING, FORWARD))
    assert [child.tag for child in root] == ["Say", "Dial"]
    dial = root[1]
    assert dial.text == "+15555550177"
    assert dial.attrib["timeout"] == "25"
    assert dial.attrib["action"] == f"{BASE}/webhooks/twilio/voice/dial?{CALLER_QUERY}"


def test_settings_come_from_the_template_environment(monkeypatch):
    monkeypatch.setenv("VOICE_FORWARD_TO", "+1 (555) 555-0177")
    monkeypatch.setenv("VOICE_GREETING", "Hello from Acme.")
    monkeypatch.setenv("VOICEMAIL_PROMPT", "Speak now.")
    monkeypatch.setenv("VOICE_RING_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("VOICEMAIL_MAX_LENGTH_SECONDS", "60")
    assert VoiceSettings.from_env() == VoiceSettings(
        greeting="Hello from Acme.",
        voicemail_prompt="Speak now.",
        forward_to="+15555550177",
        ring_timeout_seconds=30,
        voicemail_max_length_seconds=60,
    )
    monkeypatch.setenv("VOICE_FORWARD_TO", "")
    assert VoiceSettings.from_env().forward_to is None


def test_an_anonymous_caller_still_gets_the_greeting_and_callbacks_without_caller():
    anonymous = {**tv.INCOMING, "From": "Anonymous", "Caller": "Anonymous"}
    record = twiml(voice(Event.INCOMING, anonymous))[2].attrib
    assert record["recordingStatusCallback"] == f"{BASE}/webhooks/twilio/voice/recording"


# ---------------------------------------------------------------- the Dial action


def test_an_answered_forwarded_call_is_a_call_with_its_duration_then_hangup():
    items = voice(Event.DIAL, tv.DIAL_ANSWERED, FORWARD, {"caller": tv.CALLER})
    (entry,) = entries(items)
    assert entry.channel.value == "voice"
    assert entry.provider == "twilio"
    assert entry.provider_message_id == f"{tv.CALL_SID}:call"
    assert entry.sender == CALLER
    assert entry.recipient == Identity(kind=IdentityKind.PHONE, value=tv.BUSINESS)
    assert entry.parts == []
    assert entry.channel_data["call"] == {
        "outcome": "answered",
        "status": "completed",
        "duration_seconds": 125,
    }
    assert entry.channel_data["DialCallSid"] == tv.DIAL_ANSWERED["DialCallSid"]
    assert [c.tag for c in twiml(items)] == ["Hangup"]


def test_a_forwarded_call_nobody_answers_is_missed_and_goes_to_voicemail():
    items = voice(Event.DIAL, tv.DIAL_NO_ANSWER, FORWARD, {"caller": tv.CALLER})
    (entry,) = entries(items)
    assert entry.channel_data["call"] == {"outcome": "missed", "status": "no-answer"}
    root = twiml(items)
    assert [c.tag for c in root] == ["Say", "Record"]
    assert root[1].attrib["transcribe"] == "true"


def test_a_caller_who_hangs_up_while_it_rings_is_missed_and_hung_up_on():
    items = voice(Event.DIAL, {**tv.DIAL_NO_ANSWER, "DialCallStatus": "canceled"}, FORWARD)
    assert entries(items)[0].channel_data["call"]["outcome"] == "missed"
    assert [c.tag for c in twiml(items)] == ["Hangup"]


# ---------------------------------------------------------------- status callbacks


@pytest.mark.parametrize(
    ("form", "status", "duration"),
    [(tv.STATUS_COMPLETED, "completed", 42), (tv.STATUS_NO_ANSWER, "no-answer", 0)],
)
def test_an_ended_call_nobody_took_is_a_missed_call(form, status, duration):
    (entry,) = entries(voice(Event.STATUS, form))
    assert entry.provider_message_id == f"{tv.CALL_SID}:call"
    assert entry.channel_data["call"] == {
        "outcome": "missed",
        "status": status,
        "duration_seconds": duration,
    }
    assert entry.sent_at is not None and entry.sent_at.isoformat() == "2026-11-23T07:17:31+00:00"


@pytest.mark.parametrize("status", ["queued", "initiated", "ringing", "in-progress"])
def test_progress_callbacks_file_nothing(status):
    assert voice(Event.STATUS, {**tv.STATUS_COMPLETED, "CallStatus": status}) == []


def test_the_dial_action_and_the_status_callback_share_one_dedupe_key():
    answered = entries(voice(Event.DIAL, tv.DIAL_ANSWERED, FORWARD))[0]
    ended = entries(voice(Event.STATUS, tv.STATUS_COMPLETED, FORWARD))[0]
    assert answered.provider_message_id == ended.provider_message_id


# ---------------------------------------------------------------- voicemail


def test_a_recording_callback_names_no_caller_so_our_url_does():
    items = voice(Event.RECORDING, tv.RECORDING_STATUS, query={"caller": tv.CALLER})
    (entry,) = entries(items)
    assert entry.provider_message_id == f"{tv.CALL_SID}:voicemail"
    assert entry.sender == CALLER
    assert entry.recipient is None
    assert entry.parts == [
        MediaPart(
            content_type="audio/x-wav", url=tv.RECORDING_URL, provider_media_id=tv.RECORDING_SID
        )
    ]
    assert entry.channel_data["voicemail"] == {
        "recording_sid": tv.RECORDING_SID,
        "duration_seconds": 14,
    }


def test_the_record_action_files_the_same_voicemail_and_hangs_up():
    items = voice(Event.RECORDING, tv.RECORD_ACTION)
    (entry,) = entries(items)
    assert entry.provider_message_id == f"{tv.CALL_SID}:voicemail"
    assert (
        entry.parts
        == entries(voice(Event.RECORDING, tv.RECORDING_STATUS, query={"caller": tv.CALLER}))[
            0
        ].parts
    )
    assert [c.tag for c in twiml(items)] == ["Hangup"]


@pytest.mark.parametrize(
    "changes",
    [{"RecordingStatus": "absent"}, {"RecordingStatus": "failed"}, {"RecordingDuration": "0"}],
)
def test_recordings_with_nothing_to_hear_file_nothing(changes):
    form = {**tv.RECORDING_STATUS, **changes}
    assert entries(voice(Event.RECORDING, form, query={"caller": tv.CALLER})) == []


def test_a_transcript_is_added_to_the_voicemail_entry():
    items = voice(Event.TRANSCRIPTION, tv.TRANSCRIPTION)
    (entry,) = entries(items)
    (edit,) = [i for i in items if isinstance(i, MessageEdit)]
    text = TextPart(text=tv.TRANSCRIPTION["TranscriptionText"])
    # Created with the transcript if the transcript comes first ...
    assert entry.provider_message_id == f"{tv.CALL_SID}:voicemail"
    assert entry.parts[1] == text
    # ... else an edit of the entry the recording callback made.
    assert edit.provider_message_id == entry.provider_message_id
    assert edit.edit_id == tv.TRANSCRIPTION_SID
    assert edit.parts == entry.parts
    recording = entries(voice(Event.RECORDING, tv.RECORDING_STATUS, query={"caller": tv.CALLER}))[0]
    assert edit.parts[0] == recording.parts[0]


def test_a_failed_transcription_adds_nothing():
    items = voice(Event.TRANSCRIPTION, tv.TRANSCRIPTION_FAILED)
    (entry,) = entries(items)
    assert [type(p) for p in entry.parts] == [MediaPart]
    assert entry.channel_data["voicemail"]["transcription_status"] == "failed"
    assert not [i for i in items if isinstance(i, MessageEdit)]


def test_from_wins_over_the_caller_in_the_url():
    other = {"caller": "+15555550999"}
    (entry,) = entries(voice(Event.TRANSCRIPTION, tv.TRANSCRIPTION, query=other))
    assert entry.sender == CALLER


@pytest.mark.parametrize("event", [Event.DIAL, Event.STATUS, Event.RECORDING, Event.TRANSCRIPTION])
def test_callbacks_of_an_anonymous_caller_file_nothing(event):
    form = {
        **tv.DIAL_ANSWERED,
        **tv.STATUS_COMPLETED,
        **tv.RECORD_ACTION,
        **tv.TRANSCRIPTION,
        "From": "Anonymous",
    }
    assert entries(voice(event, form)) == []


@pytest.mark.parametrize(
    ("event", "form"),
    [
        (Event.INCOMING, {k: v for k, v in tv.INCOMING.items() if k != "CallSid"}),
        (Event.DIAL, {k: v for k, v in tv.DIAL_ANSWERED.items() if k != "DialCallStatus"}),
        (Event.DIAL, {**tv.DIAL_ANSWERED, "DialCallDuration": "12s"}),
        (Event.STATUS, {k: v for k, v in tv.STATUS_COMPLETED.items() if k != "CallStatus"}),
        (Event.STATUS, {**tv.STATUS_COMPLETED, "CallDuration": "-4"}),
        (Event.STATUS, {**tv.STATUS_COMPLETED, "CallDuration": "4²"}),
        (
            Event.RECORDING,
            {k: v for k, v in tv.RECORD_ACTION.items() if not k.startswith("Recording")},
        ),
        (Event.RECORDING, {**tv.RECORD_ACTION, "RecordingDuration": "1e9"}),
        (
            Event.TRANSCRIPTION,
            {k: v for k, v in tv.TRANSCRIPTION.items() if k != "TranscriptionStatus"},
        ),
        ("voicemailbox", tv.INCOMING),
    ],
    ids=[
        "no-callsid",
        "no-dial-status",
        "duration-text",
        "no-call-status",
        "negative-duration",
        "superscript-digit",
        "record-without-recording",
        "duration-exponent",
        "no-transcription-status",
        "unknown-route",
    ],
)
def test_malformed_voice_requests_are_refused(event, form):
    with pytest.raises(MalformedRequest):
        voice(event, form)


FORM_KEYS = sorted(
    {
        *tv.INCOMING,
        *tv.DIAL_ANSWERED,
        *tv.STATUS_COMPLETED,
        *tv.RECORD_ACTION,
        *tv.RECORDING_STATUS,
        *tv.TRANSCRIPTION,
    }
)


@settings(max_examples=300)
@given(
    st.sampled_from(
        [Event.INCOMING, Event.DIAL, Event.STATUS, Event.RECORDING, Event.TRANSCRIPTION]
    ),
    st.dictionaries(st.sampled_from(FORM_KEYS), st.text(max_size=24), max_size=12),
    st.dictionaries(st.just("caller"), st.text(max_size=20)),
    st.booleans(),
)
def test_any_voice_parameters_are_parsed_or_refused_as_malformed(event, form, query, forward):
    try:
        items = voice(event, form, FORWARD if forward else VOICEMAIL, query)
    except MalformedRequest:
        return
    for item in items:
        assert isinstance(item, InboundMessage | MessageEdit | Acknowledgement)
        if isinstance(item, Acknowledgement):
            ElementTree.fromstring(item.body)  # always well-formed TwiML


# ---------------------------------------------------------------- signed requests


CHANNEL = TwilioVoice(auth_token=lambda: AUTH_TOKEN, settings=VOICEMAIL)


def voice_event(form, route="", query="", **kwargs):
    path = tv.VOICE_PATH + (f"/{route}" if route else "")
    return signed_event(form, path=path, query=query, **kwargs)


@pytest.mark.parametrize(
    ("route", "form", "query"),
    [
        ("", tv.INCOMING, ""),
        ("dial", tv.DIAL_NO_ANSWER, CALLER_QUERY),
        ("status", tv.STATUS_COMPLETED, ""),
        ("recording", tv.RECORDING_STATUS, CALLER_QUERY),
        ("transcription", tv.TRANSCRIPTION, CALLER_QUERY),
    ],
)
def test_every_voice_route_checks_twilios_signature(route, form, query):
    CHANNEL.verify(WebhookRequest.from_http_api_event(voice_event(form, route, query)))
    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(
            WebhookRequest.from_http_api_event(voice_event(form, route, query, token="f" * 32))
        )


def test_a_caller_added_to_a_signed_callback_url_is_refused():
    signed = url_for(path=f"{tv.VOICE_PATH}/recording", query=CALLER_QUERY)
    forged_query = urlencode({"caller": "+15555550999"})
    event = http_api_event(
        urlencode(tv.RECORDING_STATUS),
        signature=sign(signed, tv.RECORDING_STATUS),
        path=f"{tv.VOICE_PATH}/recording",
        query=forged_query,
    )
    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(WebhookRequest.from_http_api_event(event))


@dataclass
class Store:
    fail: Exception | None = None
    ingested: list[InboundMessage] = field(default_factory=list)
    edits: list[MessageEdit] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw:
        ref = RawPayloadRef(location="inline", content_type="application/json", size=1, sha256="x")
        return KeptRaw(ref=ref, inline="{}")

    def ingest(self, inbound: InboundMessage, raw: KeptRaw, *, received_at=None) -> IngestResult:
        if self.fail:
            raise self.fail
        duplicate = inbound.provider_message_id in self.keys
        self.keys.add(inbound.provider_message_id)
        if not duplicate:
            self.ingested.append(inbound)
        return IngestResult(message_id="M", customer_id="C", duplicate=duplicate)

    def apply_status(self, update: Any) -> bool:
        return False

    def apply_edit(self, edit: MessageEdit, raw: KeptRaw | None = None) -> bool:
        self.edits.append(edit)
        return True


def test_the_incoming_call_is_answered_with_twiml_and_stores_nothing():
    store = Store()
    response = handle_webhook(voice_event(tv.INCOMING), CHANNEL, store)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/xml"
    assert ElementTree.fromstring(response["body"]).find("Record") is not None
    assert store.ingested == []


def test_a_bad_signature_is_403_and_no_twiml():
    response = handle_webhook(voice_event(tv.INCOMING, token="f" * 32), CHANNEL, Store())
    assert response["statusCode"] == 403
    assert json.loads(response["body"])["error"]["code"] == "invalid_signature"


def test_retried_callbacks_are_stored_once():
    store = Store()
    for _ in range(2):
        event = voice_event(tv.RECORDING_STATUS, "recording", CALLER_QUERY)
        assert handle_webhook(event, CHANNEL, store)["statusCode"] == 200
        event = voice_event(tv.STATUS_COMPLETED, "status")
        assert handle_webhook(event, CHANNEL, store)["statusCode"] == 200
    assert sorted(m.provider_message_id for m in store.ingested) == [
        f"{tv.CALL_SID}:call",
        f"{tv.CALL_SID}:voicemail",
    ]


def test_a_storage_failure_is_5xx_so_twilio_retries():
    store = Store(fail=StorageUnavailable("down"))
    response = handle_webhook(voice_event(tv.STATUS_COMPLETED, "status"), CHANNEL, store)
    assert response["statusCode"] == 503


def test_the_public_base_url_is_where_callbacks_point(monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://hooks.example.com")
    webhook_settings.cache_clear()
    event = voice_event(tv.INCOMING, signed_url="https://hooks.example.com/webhooks/twilio/voice")
    response = handle_webhook(event, CHANNEL, Store())
    assert response["statusCode"] == 200, response
    record = ElementTree.fromstring(response["body"]).find("Record")
    assert record is not None
    assert record.attrib["action"].startswith("https://hooks.example.com/webhooks/twilio/voice/")
