"""Telegram and Twilio voice over HTTP against the local stack, nothing done by hand.

A person who texted calls: the voice webhook answers TwiML, and the status, recording
and transcription callbacks (posted where that TwiML says, signed as Twilio signs)
land on that person's timeline. A Telegram user writes and gets a reply through the
API; the sandbox's sendMessage records it, and a programmed 429 is retried only
after the retry_after Telegram asked for. Each test uses its own numbers and users.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

import pytest
import requests

from devstack.sandbox import TELEGRAM_RETRY_AFTER_SECONDS
from tests.e2e.conftest import RunningStack
from tests.e2e.test_outbound_e2e import (
    api,
    customer_of,
    eventually,
    inbound,
    queue_reply,
    reaches,
    signed_post,
)
from tests.unit import twilio_voice_payloads as tv

pytestmark = pytest.mark.e2e


def telegram_update(user_id: int, message_id: int, text: str) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": "Grace", "language_code": "en"}
    return {
        "update_id": secrets.randbelow(10**9),
        "message": {
            "message_id": message_id,
            "from": user,
            "chat": {"id": user_id, "first_name": "Grace", "type": "private"},
            "date": 1795331809,
            "text": text,
        },
    }


def post_update(stack: RunningStack, update: dict[str, Any], secret: str | None = None):
    return requests.post(
        stack.base_url + "/webhooks/telegram",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": secret or stack.telegram_secret_token},
        timeout=10,
    )


def telegram_outbox(stack: RunningStack, chat_id: int) -> list[dict[str, Any]]:
    response = requests.get(
        stack.base_url + "/_dev/outbox",
        params={"provider": "telegram", "to": str(chat_id)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def customer_id(stack: RunningStack, identity: str) -> str:
    found = api(stack, "GET", "/v1/customers", params={"identity": identity})
    assert found.status_code == 200, found.text
    return str(found.json()["id"])


def timeline(stack: RunningStack, cid: str) -> list[dict[str, Any]]:
    response = api(stack, "GET", f"/v1/customers/{cid}/timeline", params={"limit": 50})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


# ------------------------------------------------------------------------ voice


def test_a_texter_calls_misses_us_leaves_a_voicemail_and_it_is_one_timeline(local_stack):
    number = f"+1555126{secrets.randbelow(10**4):04d}"
    call_sid = "CA" + secrets.token_hex(16)
    inbound(local_stack, number, "I will call you")
    cid = customer_of(local_stack, number)
    call = {**tv.INCOMING, "CallSid": call_sid, "From": number, "Caller": number}

    answer = signed_post(local_stack, local_stack.base_url + "/webhooks/twilio/voice", call)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/xml")
    twiml = ElementTree.fromstring(answer.text)
    assert [child.tag for child in twiml] == ["Say", "Say", "Record"]
    record = twiml[2].attrib
    assert record["transcribe"] == "true"

    ended = {**call, "CallStatus": "no-answer", "CallDuration": "0"}
    status = signed_post(local_stack, local_stack.base_url + "/webhooks/twilio/voice/status", ended)
    assert status.status_code == 200, status.text
    recording = {**tv.RECORDING_STATUS, "CallSid": call_sid}
    for _ in range(2):  # a retried callback is stored once
        response = signed_post(local_stack, record["recordingStatusCallback"], recording)
        assert response.status_code == 200, response.text
    transcript = {**tv.TRANSCRIPTION, "CallSid": call_sid, "From": number, "Caller": number}
    response = signed_post(local_stack, record["transcribeCallback"], transcript)
    assert response.status_code == 200, response.text

    # A forged callback (not signed by Twilio) is refused.
    forged = requests.post(
        record["transcribeCallback"],
        data=transcript,
        headers={"X-Twilio-Signature": "AAAA"},
        timeout=10,
    )
    assert forged.status_code == 403

    items = timeline(local_stack, cid)
    assert [m["channel"] for m in items] == ["voice", "voice", "sms"]
    by_key = {m["provider_message_id"]: m for m in items}
    missed = by_key[f"{call_sid}:call"]
    assert missed["sender"] == {"kind": "phone", "value": number}
    assert missed["channel_data"]["call"] == {
        "outcome": "missed",
        "status": "no-answer",
        "duration_seconds": 0,
    }
    voicemail = by_key[f"{call_sid}:voicemail"]
    assert voicemail["parts"][0]["url"] == tv.RECORDING_URL
    assert voicemail["parts"][1] == {"type": "text", "text": tv.TRANSCRIPTION["TranscriptionText"]}
    assert voicemail["channel_data"]["voicemail"]["duration_seconds"] == 14


# ------------------------------------------------------------------------ Telegram


def test_a_telegram_user_writes_and_the_reply_reaches_send_message(local_stack):
    user_id = 500_000_000 + secrets.randbelow(10**8)
    assert (
        post_update(local_stack, telegram_update(user_id, 9, "hi"), secret="wrong").status_code
        == 403
    )
    update = telegram_update(user_id, 10, "Is my order on its way?")
    for _ in range(2):
        response = post_update(local_stack, update)
        assert response.status_code == 200, response.text
    cid = customer_id(local_stack, f"telegram:{user_id}")
    assert len(timeline(local_stack, cid)) == 1

    message_id = queue_reply(
        local_stack, cid, {"text": "Yes, it arrives tomorrow.", "channel": "telegram"}
    )
    (request,) = eventually(lambda: telegram_outbox(local_stack, user_id), "a sendMessage")
    assert request["status"] == 200
    assert request["path"].endswith(":***/sendMessage")
    assert local_stack.telegram_bot_token.split(":")[1] not in json.dumps(request)
    form = {k: v[0] for k, v in request["form"].items()}
    assert json.loads(form["chat_id"]) == user_id
    assert form["text"] == "Yes, it arrives tomorrow."
    assert json.loads(form["reply_parameters"]) == {
        "message_id": 10,
        "allow_sending_without_reply": True,
    }
    sent = reaches(local_stack, cid, message_id, "sent")
    assert sent["provider_message_id"].startswith(f"{user_id}:")


def test_a_telegram_429_is_retried_after_its_retry_after(local_stack):
    user_id = 600_000_000 + secrets.randbelow(10**8)
    assert post_update(local_stack, telegram_update(user_id, 3, "hello")).status_code == 200
    cid = customer_id(local_stack, f"telegram:{user_id}")
    response = requests.post(
        local_stack.base_url + "/_dev/sandbox/faults/telegram", json=[429], timeout=10
    )
    assert response.status_code == 204
    message_id = queue_reply(local_stack, cid, {"text": "One moment please."})
    reaches(local_stack, cid, message_id, "sent")
    requests_made = telegram_outbox(local_stack, user_id)
    assert [r["status"] for r in requests_made] == [429, 200]
    first, second = (datetime.fromisoformat(r["at"]) for r in requests_made)
    # The dispatcher's own first backoff is 1 s: a longer gap is Telegram's retry_after.
    assert (second - first).total_seconds() >= TELEGRAM_RETRY_AFTER_SECONDS - 0.05
