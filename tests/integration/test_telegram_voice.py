"""Telegram and Twilio voice handlers against DynamoDB, S3 and SSM in moto server mode,
with Telegram's Bot API played by the provider sandbox on 127.0.0.1."""

# The reply tests reuse test_outbound's fixtures by importing them, which ruff reads
# as redefinitions when the tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import copy
import json
import os
import secrets
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from devstack.sandbox import TELEGRAM_RETRY_AFTER_SECONDS
from tests.conftest import load_handler_module
from tests.integration.conftest import WEBHOOK_HOST, LambdaContext, http_api_event
from tests.integration.test_outbound import api_post, pipeline, timeline  # noqa: F401
from tests.integration.test_twilio_ingest import sms
from tests.unit import telegram_payloads as tg
from tests.unit import twilio_voice_payloads as tv
from threadline.channels.twilio.voice import VoiceSettings
from threadline.outbound import RetryLater


@pytest.fixture(scope="session")
def telegram_module(function_env, aws_env, stack):
    stack.put_secret("TelegramSecretTokenParameterName", tg.SECRET_TOKEN)
    stack.put_secret("TelegramBotTokenParameterName", tg.BOT_TOKEN)
    os.environ.update(function_env("TelegramWebhookFunction"))
    return load_handler_module("functions/telegram_webhook")


@pytest.fixture(scope="session")
def voice_module(function_env, aws_env):
    os.environ.update(function_env("TwilioVoiceFunction"))
    return load_handler_module("functions/twilio_voice")


@pytest.fixture
def telegram_post(telegram_module):
    def post(payload, secret=tg.SECRET_TOKEN):
        event = tg.telegram_event(payload, secret=secret)
        event["headers"]["host"] = WEBHOOK_HOST
        return telegram_module.lambda_handler(event, LambdaContext())

    return post


@pytest.fixture
def voice_post(voice_module, auth_token):
    """POST a form to a voice URL (absolute, as our TwiML names it) signed as Twilio does."""

    def post(url: str, params: dict[str, str]) -> dict:
        parts = urlsplit(url)
        assert parts.netloc == WEBHOOK_HOST, url
        event = http_api_event(
            "POST",
            parts.path,
            query=parts.query,
            body=urlencode(params).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": RequestValidator(auth_token).compute_signature(url, params),
            },
        )
        return voice_module.lambda_handler(event, LambdaContext())

    return post


def new_user_id() -> int:
    return 100_000_000 + secrets.randbelow(10**9)


def telegram_message(user_id: int, message_id: int = 42, **content) -> dict:
    payload = copy.deepcopy(tg.TEXT)
    payload["update_id"] = secrets.randbelow(10**9)
    message = payload["message"]
    message["from"]["id"] = user_id
    message["chat"]["id"] = user_id
    message["message_id"] = message_id
    if content:
        message.pop("text")
        message.pop("entities")
        message.update(content)
    return payload


def customer(api_get, identity: str) -> dict:
    response = api_get("/v1/customers", {"identity": identity})
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def new_number() -> str:
    return f"+1555{secrets.randbelow(10**7):07d}"


# ---------------------------------------------------------------- Telegram inbound


def test_a_telegram_message_is_stored_once_on_the_users_timeline(telegram_post, api_get):
    user = new_user_id()
    payload = telegram_message(user)
    for _ in range(3):  # Telegram retries until it gets a 2xx
        assert telegram_post(payload)["statusCode"] == 200
    found = customer(api_get, f"telegram:{user}")
    assert found["display_name"] == "Ada Lovelace"
    (message,) = timeline(api_get, found["id"])
    assert message["channel"] == "telegram"
    assert message["provider_message_id"] == f"{user}:42"
    assert message["parts"] == [{"type": "text", "text": "/start hello, where is my order?"}]


def test_a_wrong_secret_token_is_refused_and_stores_nothing(telegram_post, api_get):
    user = new_user_id()
    assert telegram_post(telegram_message(user), secret="guess")["statusCode"] == 403
    assert api_get("/v1/customers", {"identity": f"telegram:{user}"})["statusCode"] == 404


def test_an_edited_message_updates_the_stored_one(telegram_post, api_get):
    user = new_user_id()
    telegram_post(telegram_message(user))
    edit = copy.deepcopy(tg.EDITED)
    edit["edited_message"]["from"]["id"] = user
    edit["edited_message"]["chat"]["id"] = user
    assert telegram_post(edit)["statusCode"] == 200
    assert telegram_post(edit)["statusCode"] == 200  # a retried edit changes nothing more
    (message,) = timeline(api_get, customer(api_get, f"telegram:{user}")["id"])
    assert message["parts"] == [{"type": "text", "text": "where is my order #4521?"}]
    assert [r["parts"][0]["text"] for r in message["revisions"]] == [
        "/start hello, where is my order?"
    ]


def test_sharing_ones_own_contact_joins_the_customer_of_that_phone(
    telegram_post, twilio_post, api_get
):
    number = new_number()
    twilio_post(sms("SM" + secrets.token_hex(16), number))
    sms_customer = customer(api_get, f"phone:{number}")
    user = new_user_id()
    contact = {"phone_number": number.lstrip("+"), "first_name": "Ada", "user_id": user}
    assert telegram_post(telegram_message(user, contact=contact))["statusCode"] == 200
    assert customer(api_get, f"telegram:{user}")["id"] == sms_customer["id"]
    channels = [m["channel"] for m in timeline(api_get, sms_customer["id"])]
    assert sorted(channels) == ["sms", "telegram"]


def test_someone_elses_contact_links_nothing(telegram_post, twilio_post, api_get):
    number = new_number()
    twilio_post(sms("SM" + secrets.token_hex(16), number))
    user = new_user_id()
    contact = {"phone_number": number, "first_name": "Bob", "user_id": user + 1}
    telegram_post(telegram_message(user, contact=contact))
    assert customer(api_get, f"telegram:{user}")["id"] != customer(api_get, f"phone:{number}")["id"]


# ---------------------------------------------------------------- Telegram replies


def _reply(api_post, customer_id: str, text: str = "Your parcel left today.") -> dict:
    response = api_post(f"/v1/customers/{customer_id}/messages", {"text": text})
    assert response["statusCode"] == 202, response
    return json.loads(response["body"])


def test_a_reply_reaches_send_message_in_the_users_chat_quoting_their_message(
    telegram_post, api_get, api_post, pipeline, provider_sandbox
):
    user = new_user_id()
    telegram_post(telegram_message(user, message_id=77, text="hello?"))
    found = customer(api_get, f"telegram:{user}")
    queued = _reply(api_post, found["id"])
    assert queued["channel"] == "telegram"

    pipeline.run()
    (sent,) = provider_sandbox.outbox("telegram")
    assert tg.BOT_TOKEN not in sent.path
    assert json.loads(sent.form["chat_id"][0]) == user
    assert sent.form["text"] == ["Your parcel left today."]
    assert json.loads(sent.form["reply_parameters"][0])["message_id"] == 77

    (message,) = [m for m in timeline(api_get, found["id"]) if m["id"] == queued["id"]]
    assert message["status"] == "sent"
    assert message["provider_message_id"].startswith(f"{user}:")
    # The customer's reply to our message names it by the id the dispatcher recorded.
    reply = telegram_message(user, message_id=78, text="thanks!")
    reply["message"]["reply_to_message"] = {
        "message_id": int(message["provider_message_id"].split(":")[1]),
        "chat": reply["message"]["chat"],
        "date": tg.DATE,
    }
    telegram_post(reply)
    latest = timeline(api_get, found["id"])[0]
    assert latest["in_reply_to"] == message["provider_message_id"]


def test_a_telegram_rate_limit_is_retried_after_its_retry_after(
    telegram_post, api_get, api_post, dispatcher_module, provider_sandbox
):
    user = new_user_id()
    telegram_post(telegram_message(user))
    found = customer(api_get, f"telegram:{user}")
    queued = _reply(api_post, found["id"])
    provider_sandbox.program_faults("telegram", [429])
    with pytest.raises(RetryLater) as retry:
        dispatcher_module.dispatcher.dispatch(found["id"], queued["id"], attempt=1)
    assert retry.value.delay == TELEGRAM_RETRY_AFTER_SECONDS
    dispatcher_module.dispatcher.dispatch(found["id"], queued["id"], attempt=2)
    assert [r.status for r in provider_sandbox.outbox("telegram")] == [429, 200]
    (message,) = [m for m in timeline(api_get, found["id"]) if m["id"] == queued["id"]]
    assert message["status"] == "sent"


def test_a_blocked_bot_fails_the_reply_with_telegrams_description(
    telegram_post, api_get, api_post, dispatcher_module, provider_sandbox
):
    user = new_user_id()
    telegram_post(telegram_message(user))
    found = customer(api_get, f"telegram:{user}")
    queued = _reply(api_post, found["id"])
    provider_sandbox.program_faults("telegram", [403])
    dispatcher_module.dispatcher.dispatch(found["id"], queued["id"], attempt=1)
    (message,) = [m for m in timeline(api_get, found["id"]) if m["id"] == queued["id"]]
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "Forbidden: bot was blocked by the user"


# ---------------------------------------------------------------- voice


def voice_url(route: str = "") -> str:
    return f"https://{WEBHOOK_HOST}/webhooks/twilio/voice" + (f"/{route}" if route else "")


def call_params(number: str, call_sid: str, base: dict[str, str]) -> dict[str, str]:
    return {**base, "From": number, "Caller": number, "CallSid": call_sid}


def test_a_customer_who_texted_calls_leaves_a_voicemail_and_it_all_lands_on_one_timeline(
    twilio_post, voice_post, api_get
):
    number = new_number()
    twilio_post(sms("SM" + secrets.token_hex(16), number))
    sms_customer = customer(api_get, f"phone:{number}")
    call_sid = "CA" + secrets.token_hex(16)

    answer = voice_post(voice_url(), call_params(number, call_sid, tv.INCOMING))
    assert answer["statusCode"] == 200
    record = ElementTree.fromstring(answer["body"]).find("Record")
    assert record is not None

    # Twilio follows our TwiML: the recording's callbacks go where it said.
    recording = {**tv.RECORDING_STATUS, "CallSid": call_sid}
    assert voice_post(record.attrib["recordingStatusCallback"], recording)["statusCode"] == 200
    ended = call_params(number, call_sid, tv.STATUS_COMPLETED)
    assert voice_post(voice_url("status"), ended)["statusCode"] == 200
    transcript = call_params(number, call_sid, tv.TRANSCRIPTION)
    assert voice_post(record.attrib["transcribeCallback"], transcript)["statusCode"] == 200
    # Retries of every callback are stored once.
    voice_post(record.attrib["recordingStatusCallback"], recording)
    voice_post(voice_url("status"), ended)
    voice_post(record.attrib["transcribeCallback"], transcript)

    items = timeline(api_get, sms_customer["id"])
    by_key = {m["provider_message_id"]: m for m in items if m["channel"] == "voice"}
    assert sorted(by_key) == [f"{call_sid}:call", f"{call_sid}:voicemail"]
    call = by_key[f"{call_sid}:call"]
    assert call["channel_data"]["call"] == {
        "outcome": "missed",
        "status": "completed",
        "duration_seconds": 42,
    }
    voicemail = by_key[f"{call_sid}:voicemail"]
    assert voicemail["sender"] == {"kind": "phone", "value": number}
    assert voicemail["parts"] == [
        {
            "type": "media",
            "content_type": "audio/x-wav",
            "size": None,
            "url": tv.RECORDING_URL,
            "s3_key": None,
            "filename": None,
            "caption": None,
            "provider_media_id": tv.RECORDING_SID,
            "sha256": None,
        },
        {"type": "text", "text": tv.TRANSCRIPTION["TranscriptionText"]},
    ]
    assert voicemail["edited_at"] is not None
    assert len(items) == 3  # the SMS, the call, the voicemail


def test_a_transcript_that_comes_before_the_recording_callback_is_kept(voice_post, api_get):
    number = new_number()
    call_sid = "CA" + secrets.token_hex(16)
    query = urlencode({"caller": number})
    transcript = call_params(number, call_sid, tv.TRANSCRIPTION)
    voice_post(f"{voice_url('transcription')}?{query}", transcript)
    recording = {**tv.RECORDING_STATUS, "CallSid": call_sid}
    voice_post(f"{voice_url('recording')}?{query}", recording)
    (voicemail,) = timeline(api_get, customer(api_get, f"phone:{number}")["id"])
    assert [p["type"] for p in voicemail["parts"]] == ["media", "text"]


def test_a_forwarded_call_nobody_answers_is_missed_then_goes_to_voicemail(
    voice_module, voice_post, api_get
):
    saved = voice_module.channel.settings
    voice_module.channel.settings = VoiceSettings(forward_to="+15555550177")
    try:
        number = new_number()
        call_sid = "CA" + secrets.token_hex(16)
        answer = voice_post(voice_url(), call_params(number, call_sid, tv.INCOMING))
        dial = ElementTree.fromstring(answer["body"]).find("Dial")
        assert dial is not None and dial.text == "+15555550177"
        missed = voice_post(dial.attrib["action"], call_params(number, call_sid, tv.DIAL_NO_ANSWER))
        assert ElementTree.fromstring(missed["body"]).find("Record") is not None
        # The call's end changes nothing: the Dial action filed the call first.
        voice_post(voice_url("status"), call_params(number, call_sid, tv.STATUS_COMPLETED))
    finally:
        voice_module.channel.settings = saved
    (call,) = timeline(api_get, customer(api_get, f"phone:{number}")["id"])
    assert call["channel_data"]["call"] == {"outcome": "missed", "status": "no-answer"}


def test_a_reply_to_a_caller_goes_out_by_sms(
    voice_post, api_get, api_post, pipeline, provider_sandbox
):
    number = new_number()
    call_sid = "CA" + secrets.token_hex(16)
    voice_post(voice_url("status"), call_params(number, call_sid, tv.STATUS_NO_ANSWER))
    found = customer(api_get, f"phone:{number}")
    queued = _reply(api_post, found["id"], "Sorry we missed your call.")
    assert queued["channel"] == "sms"
    pipeline.run()
    (sent,) = provider_sandbox.outbox("twilio", to=number)
    assert sent.form["Body"] == ["Sorry we missed your call."]
