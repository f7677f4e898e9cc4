"""handle_webhook answers Twilio the way its retry rules need, storing exactly once.

The channel is the real TwilioMessaging; only the store is a double.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest

from tests.unit import twilio_payloads as tw
from tests.unit.webhook_events import (
    AUTH_TOKEN,
    PATH,
    RecordingStore,
    http_api_event,
    sign,
    signed_event,
    url_for,
)
from threadline.channels.twilio.messaging import TwilioMessaging
from threadline.errors import StorageUnavailable
from threadline.logs import logger
from threadline.settings import webhook_settings
from threadline.webhook import MAX_BODY_BYTES, handle_webhook

CHANNEL = TwilioMessaging(auth_token=lambda: AUTH_TOKEN)


@pytest.fixture(autouse=True)
def no_public_base_url(monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    webhook_settings.cache_clear()
    yield
    webhook_settings.cache_clear()


@pytest.fixture
def store():
    return RecordingStore()


def _error(response):
    assert response["headers"]["Content-Type"] == "application/json"
    return json.loads(response["body"])["error"]


# ---------------------------------------------------------------- 200 after storing


def test_signed_sms_is_answered_200_with_empty_twiml(store):
    response = handle_webhook(signed_event(tw.SMS), CHANNEL, store)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/xml"
    root = ElementTree.fromstring(response["body"])
    assert root.tag == "Response"
    assert len(root) == 0


def test_signed_sms_is_kept_raw_then_ingested_once(store):
    handle_webhook(signed_event(tw.SMS), CHANNEL, store)
    assert [name for name, _ in store.calls] == ["keep_raw", "ingest"]
    assert [m.provider_message_id for m in store.ingested] == [tw.SMS_SID]


def test_ingest_gets_the_kept_raw_payload_and_the_receive_time(store):
    handle_webhook(signed_event(tw.SMS), CHANNEL, store)
    (_, (_, kept, received_at)) = store.calls[1]
    assert kept.ref.sha256 == store.raws[0].body_sha256
    assert received_at is not None


def test_raw_payload_is_the_request_as_signed(store):
    event = signed_event(tw.SMS)
    handle_webhook(event, CHANNEL, store)
    raw = store.raws[0]
    body = base64.b64decode(event["body"])
    assert raw.provider == "twilio"
    assert raw.body_sha256 == hashlib.sha256(body).hexdigest()
    envelope = json.loads(raw.envelope)
    assert envelope["body"] == body.decode("utf-8")
    assert envelope["url"] == url_for()
    assert envelope["headers"]["x-twilio-signature"] == event["headers"]["x-twilio-signature"]


@pytest.mark.parametrize("name", sorted(tw.ALL))
def test_every_documented_payload_is_stored_and_acknowledged(store, name):
    response = handle_webhook(signed_event(tw.ALL[name]), CHANNEL, store)
    assert response["statusCode"] == 200
    assert len(store.ingested) == 1


def test_body_not_base64_encoded_is_accepted_too(store):
    body = urlencode(tw.SMS)
    event = http_api_event(body, signature=sign(url_for(), tw.SMS), base64_encoded=False)
    assert handle_webhook(event, CHANNEL, store)["statusCode"] == 200


def test_public_base_url_from_environment_is_the_signed_url(store, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://hooks.example.com")
    webhook_settings.cache_clear()
    event = signed_event(tw.SMS, signed_url="https://hooks.example.com" + PATH)
    assert handle_webhook(event, CHANNEL, store)["statusCode"] == 200


def test_public_base_url_from_environment_refuses_the_gateway_host_signature(store, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://hooks.example.com")
    webhook_settings.cache_clear()
    assert handle_webhook(signed_event(tw.SMS), CHANNEL, store)["statusCode"] == 403


# ---------------------------------------------------------------- 403


def test_bad_signature_is_403_and_nothing_stored(store):
    response = handle_webhook(signed_event(tw.SMS, token="f" * 32), CHANNEL, store)
    assert response["statusCode"] == 403
    assert _error(response)["code"] == "invalid_signature"
    assert store.calls == []


def test_missing_signature_is_403_and_nothing_stored(store):
    response = handle_webhook(http_api_event(urlencode(tw.SMS)), CHANNEL, store)
    assert response["statusCode"] == 403
    assert store.calls == []


# ---------------------------------------------------------------- 400


@pytest.mark.parametrize(
    "body",
    [
        b"just some text",
        b'{"MessageSid": "SM00000000000000000000000000000001"}',
        b"Body=caf\xe9",
        b"\xff\xfe\x00",
        b"Body=one&Body=two",
    ],
    ids=["not-a-form", "json", "latin-1", "binary", "repeated-key"],
)
def test_malformed_body_is_400_and_nothing_stored(store, body):
    response = handle_webhook(http_api_event(body, signature="c2lnbmF0dXJl"), CHANNEL, store)
    assert response["statusCode"] == 400
    assert _error(response)["code"] == "malformed_request"
    assert store.calls == []


def test_bad_base64_body_is_400_and_nothing_stored(store):
    event = signed_event(tw.SMS)
    event["body"] = "not base64!!"
    response = handle_webhook(event, CHANNEL, store)
    assert response["statusCode"] == 400
    assert store.calls == []


def test_signed_form_with_overlong_message_sid_is_400_not_500(store):
    form = {**tw.SMS, "MessageSid": "SM" + "0" * 300}
    assert handle_webhook(signed_event(form), CHANNEL, store)["statusCode"] == 400


def test_signed_form_without_from_is_400_and_nothing_stored(store):
    form = {k: v for k, v in tw.SMS.items() if k != "From"}
    response = handle_webhook(signed_event(form), CHANNEL, store)
    assert response["statusCode"] == 400
    assert store.calls == []


# ---------------------------------------------------------------- 413


def test_body_over_one_mib_is_413_and_nothing_stored(store):
    body = urlencode({**tw.SMS, "Body": "x" * MAX_BODY_BYTES})
    response = handle_webhook(http_api_event(body, signature="x"), CHANNEL, store)
    assert response["statusCode"] == 413
    assert _error(response)["code"] == "payload_too_large"
    assert store.calls == []


def test_body_of_exactly_one_mib_is_not_refused_for_size(store):
    body = b"a=" + b"x" * (MAX_BODY_BYTES - 2)
    response = handle_webhook(http_api_event(body, signature="x"), CHANNEL, store)
    assert response["statusCode"] == 403


# ---------------------------------------------------------------- 5xx


@pytest.mark.parametrize("fail_on", ["keep_raw", "ingest"])
def test_storage_unavailable_is_503_so_twilio_retries(fail_on):
    store = RecordingStore(fail_on=fail_on, fail_with=StorageUnavailable("dynamodb throttled"))
    response = handle_webhook(signed_event(tw.SMS), CHANNEL, store)
    assert response["statusCode"] == 503
    assert _error(response)["code"] == "storage_unavailable"


def test_unexpected_store_error_is_a_generic_500():
    secret = "boom: table threadline-prod arn:aws:dynamodb:us-east-1:123456789012"
    store = RecordingStore(fail_on="ingest", fail_with=RuntimeError(secret))
    response = handle_webhook(signed_event(tw.SMS), CHANNEL, store)
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {
        "error": {"code": "internal_error", "message": "internal error"}
    }


def test_500_body_carries_no_traceback_or_exception_text():
    store = RecordingStore(fail_on="keep_raw", fail_with=KeyError("secret-key-name"))
    body = handle_webhook(signed_event(tw.SMS), CHANNEL, store)["body"]
    assert "Traceback" not in body
    assert "secret-key-name" not in body
    assert "KeyError" not in body


def test_no_answer_is_2xx_when_nothing_was_stored():
    store = RecordingStore(fail_on="keep_raw", fail_with=StorageUnavailable("s3 down"))
    response = handle_webhook(signed_event(tw.MMS), CHANNEL, store)
    assert not 200 <= response["statusCode"] < 300
    assert store.ingested == []


@pytest.fixture
def log_output():
    """What threadline's logger writes, through its own (redacting) formatter."""
    if not logger.registered_formatter.enabled:
        pytest.skip("log redaction is switched off (THREADLINE_LOG_REDACTION=off)")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std_logger = logging.getLogger(logger.name)
    std_logger.addHandler(handler)
    yield stream
    std_logger.removeHandler(handler)


def _fail_with_identities():
    error = RuntimeError(f"could not file message from {tw.CUSTOMER} <jane.doe@example.com>")
    store = RecordingStore(fail_on="ingest", fail_with=error)
    handle_webhook(signed_event(tw.SMS), CHANNEL, store)


def test_failure_log_traceback_masks_phone_numbers_and_emails(log_output):
    _fail_with_identities()
    record = json.loads(log_output.getvalue().splitlines()[-1])
    assert record["message"] == "webhook failed"
    assert "could not file message" in record["exception"]
    assert tw.CUSTOMER not in record["exception"]
    assert "jane.doe@example.com" not in record["exception"]


def test_failure_log_line_has_no_phone_number_or_email_anywhere(log_output):
    _fail_with_identities()
    line = log_output.getvalue().splitlines()[-1]
    assert tw.CUSTOMER not in line
    assert "jane.doe@example.com" not in line
