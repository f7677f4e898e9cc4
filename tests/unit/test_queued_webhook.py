"""Requests Twilio sent to the fallback route, as the drain rebuilds and files them."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from tests.unit import twilio_payloads as tw
from tests.unit.webhook_events import API_HOST, AUTH_TOKEN, RecordingStore, sign
from threadline.channels.twilio.messaging import TwilioMessaging
from threadline.errors import SignatureInvalid, StorageUnavailable
from threadline.webhook import process_request, request_from_queue

CHANNEL = TwilioMessaging(auth_token=lambda: AUTH_TOKEN)
FALLBACK_PATH = "/webhooks/twilio/fallback"


def _queued(params: dict[str, str], *, url: str, token: str = AUTH_TOKEN, **extra: str):
    attributes = {"Signature": sign(url, params, token), "Host": API_HOST, **extra}
    return urlencode(params), attributes


def test_the_url_is_rebuilt_from_the_host_twilio_called():
    url = f"https://{API_HOST}{FALLBACK_PATH}"
    body, attributes = _queued(tw.SMS, url=url, ReceivedAt="1795331809000")
    request = request_from_queue(
        body, attributes, FALLBACK_PATH, signature_header="X-Twilio-Signature"
    )
    assert request.url == url
    assert request.headers["x-twilio-signature"] == attributes["Signature"]
    assert request.received_at == datetime.fromtimestamp(1795331809, tz=UTC)
    store = RecordingStore()
    ack = process_request(request, CHANNEL, store)
    assert ack.status == 200
    assert [m.provider_message_id for m in store.ingested] == [tw.SMS["MessageSid"]]


def test_the_public_base_url_wins_over_the_host():
    url = "https://hooks.example.com" + FALLBACK_PATH
    body, attributes = _queued(tw.SMS, url=url)
    request = request_from_queue(
        body,
        attributes,
        FALLBACK_PATH,
        signature_header="X-Twilio-Signature",
        public_base_url="https://hooks.example.com/",
    )
    assert request.url == url
    process_request(request, CHANNEL, RecordingStore())


def test_a_forged_queued_request_is_refused_and_nothing_is_stored():
    url = f"https://{API_HOST}{FALLBACK_PATH}"
    body, attributes = _queued(tw.SMS, url=url, token="f" * 32)
    request = request_from_queue(
        body, attributes, FALLBACK_PATH, signature_header="X-Twilio-Signature"
    )
    store = RecordingStore()
    with pytest.raises(SignatureInvalid):
        process_request(request, CHANNEL, store)
    assert store.calls == []


def test_a_missing_signature_or_a_bad_time_does_not_crash_the_rebuild():
    request = request_from_queue(
        "MessageSid=SM1",
        {"ReceivedAt": "not a number"},
        FALLBACK_PATH,
        signature_header="X-Twilio-Signature",
    )
    assert "x-twilio-signature" not in request.headers
    with pytest.raises(SignatureInvalid):
        process_request(request, CHANNEL, RecordingStore())


def test_storage_failure_propagates_so_the_queue_keeps_the_message():
    url = f"https://{API_HOST}{FALLBACK_PATH}"
    body, attributes = _queued(tw.SMS, url=url)
    request = request_from_queue(
        body, attributes, FALLBACK_PATH, signature_header="X-Twilio-Signature"
    )
    store = RecordingStore(fail_on="ingest", fail_with=StorageUnavailable("table down"))
    with pytest.raises(StorageUnavailable):
        process_request(request, CHANNEL, store)
