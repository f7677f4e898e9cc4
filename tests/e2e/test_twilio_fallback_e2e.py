"""Twilio's fallback URL over HTTP: queued by the gateway, filed later by the drain."""

from __future__ import annotations

import time

import requests

from tests.e2e.conftest import RunningStack
from tests.e2e.test_local_stack import api, signed_twilio_post

FALLBACK_PATH = "/webhooks/twilio/fallback"


def _timeline(stack: RunningStack, number: str, *, wait: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + wait
    while True:
        found = api(stack, "/v1/customers", params={"identity": f"phone:{number}"})
        if found.status_code == 200:
            customer_id = found.json()["id"]
            return api(stack, f"/v1/customers/{customer_id}/timeline").json()["items"]
        if time.monotonic() > deadline:
            return []
        time.sleep(0.25)


def _sms(sid_suffix: str, number: str, body: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "fb0" * 10 + sid_suffix,
        "AccountSid": "AC" + "0" * 32,
        "From": number,
        "To": "+15557650000",
        "Body": body,
        "NumMedia": "0",
        # What Twilio adds when it calls the fallback URL.
        "ErrorCode": "11200",
        "ErrorUrl": "https://example.invalid/webhooks/twilio/messaging",
    }


def _drained(stack: RunningStack, number: str) -> None:
    """Queue one more fallback message from ``number`` and wait until it is filed.

    The drain takes the queue in order, so what was queued before it has been handled.
    """
    marker = _sms(f"d{number[-1]}", number, "drained")
    assert signed_twilio_post(stack, marker, path=FALLBACK_PATH).status_code == 200
    deadline = time.monotonic() + 30
    while not any(item["parts"][0]["text"] == "drained" for item in _timeline(stack, number)):
        assert time.monotonic() < deadline, "the fallback queue was not drained"
        time.sleep(0.25)


def test_a_fallback_request_is_queued_then_filed_through_the_normal_path(local_stack):
    number = "+15551238801"
    response = signed_twilio_post(
        local_stack, _sms("01", number, "sent while the main path was down"), path=FALLBACK_PATH
    )
    # API Gateway answers with SQS's result: the message is safe in the queue.
    assert response.status_code == 200, response.text
    assert response.json()["SendMessageResponse"]["SendMessageResult"]["MessageId"]

    items = _timeline(local_stack, number)
    assert len(items) == 1
    message = items[0]
    assert message["channel"] == "sms"
    assert message["parts"] == [{"type": "text", "text": "sent while the main path was down"}]
    assert message["channel_data"]["ErrorCode"] == "11200"


def test_a_message_that_came_both_ways_is_stored_once(local_stack):
    number = "+15551238802"
    params = _sms("02", number, "twice")
    assert signed_twilio_post(local_stack, params).status_code == 200
    assert signed_twilio_post(local_stack, params, path=FALLBACK_PATH).status_code == 200
    _drained(local_stack, number)
    texts = [item["parts"][0]["text"] for item in _timeline(local_stack, number)]
    assert sorted(texts) == ["drained", "twice"]


def test_a_forged_fallback_request_is_dropped_not_filed(local_stack):
    number = "+15551238803"
    forged = signed_twilio_post(
        local_stack, _sms("03", number, "forged"), path=FALLBACK_PATH, token="not-the-token"
    )
    # Queued (the gateway cannot check Twilio's signature) but never filed.
    assert forged.status_code == 200
    _drained(local_stack, "+15551238804")
    assert _timeline(local_stack, number, wait=0) == []


def test_a_fallback_request_without_a_signature_is_refused_at_the_gateway(local_stack):
    response = requests.post(
        local_stack.base_url + FALLBACK_PATH,
        data="MessageSid=SM1&From=%2B15551238804&Body=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    # SQS refuses the empty Signature attribute with a 400, which the integration
    # hands back: nothing is queued, and the answer says the request was at fault.
    assert response.status_code == 400
    assert response.json()["Error"]["Code"] == "InvalidParameterValue"


def test_a_fallback_body_sqs_cannot_carry_is_a_400(local_stack):
    response = signed_twilio_post(
        local_stack, _sms("05", "+15551238805", "x" * 1_100_000), path=FALLBACK_PATH
    )
    # Over the queue's message size (1 MiB at most): refused by SQS (400), not an
    # integration failure (500).
    assert response.status_code == 400
