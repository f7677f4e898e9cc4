"""Twilio status callbacks move our outbound messages on, and only when Twilio signed them.

Payloads are written from Twilio's documentation of the request it makes to a
message's StatusCallback URL ("Track the Message Status of Outbound Messages",
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status, and
"Outbound Message Status in Status Callbacks",
https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks):
a form POST carrying a subset of the usual message parameters (``MessageSid``/
``SmsSid``, ``AccountSid``, ``From``, ``To``, ``ApiVersion``) plus ``MessageStatus``
(repeated as the legacy ``SmsStatus``) and, for ``failed``/``undelivered``,
``ErrorCode``; WhatsApp adds ``ChannelPrefix``, ``ChannelToAddress``,
``ChannelInstallSid`` and ``ChannelStatusMessage``; SMS delivery receipts may carry
``RawDlrDoneDate``. The possible values of MessageStatus are the Message resource's
status enum (queued, sending, sent, failed, delivered, undelivered, receiving,
received, accepted, scheduled, read, partially_delivered, canceled).
Error codes: 30003 "Unreachable destination handset", 30008 "Unknown error".
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest

from tests.unit import twilio_payloads as tw
from tests.unit.webhook_events import AUTH_TOKEN, http_api_event, sign, signed_event, url_for
from threadline.channels.base import StatusUpdate, WebhookRequest
from threadline.channels.twilio.messaging import (
    TwilioStatusCallback,
    normalize_status_form,
    status_callback_url,
)
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.schema import MessageStatus

STATUS_PATH = "/webhooks/twilio/status"
CUSTOMER_ID = "01J9Z8X7W6V5T4S3R2Q1P0N9MC"
MESSAGE_ID = "01J9Z8X7W6V5T4S3R2Q1P0N9MM"
QUERY = urlencode({"cid": CUSTOMER_ID, "mid": MESSAGE_ID})
OUTBOUND_SID = tw.sid("SM", 0x5E47)


def sms_status(status: str, **extra: str) -> dict[str, str]:
    """An SMS status callback for the message we sent from BUSINESS to CUSTOMER."""
    return {
        "MessageSid": OUTBOUND_SID,
        "SmsSid": OUTBOUND_SID,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": tw.ACCOUNT_SID,
        "From": tw.BUSINESS,
        "To": tw.CUSTOMER,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def whatsapp_status(status: str, **extra: str) -> dict[str, str]:
    return sms_status(
        status,
        From=f"whatsapp:{tw.BUSINESS}",
        To=f"whatsapp:{tw.CUSTOMER}",
        ChannelPrefix="whatsapp",
        ChannelToAddress=tw.CUSTOMER,
        ChannelInstallSid=tw.sid("XE", 1),
        **extra,
    )


QUEUED = sms_status("queued")
SENDING = sms_status("sending")
SENT = sms_status("sent")
DELIVERED = sms_status("delivered", RawDlrDoneDate="2611230716")
UNDELIVERED = sms_status("undelivered", ErrorCode="30003", RawDlrDoneDate="2611230716")
FAILED = sms_status("failed", ErrorCode="30008")
READ = whatsapp_status("read", ChannelStatusMessage="Message read")
CALLBACK_QUERY = {"cid": CUSTOMER_ID, "mid": MESSAGE_ID}


def normalize(form: dict[str, str]) -> StatusUpdate | None:
    return normalize_status_form(form, CALLBACK_QUERY)


# ------------------------------------------------------------------ one per status


def test_queued_callback_keeps_the_message_queued():
    update = normalize(QUEUED)
    assert update is not None
    assert update.status is MessageStatus.QUEUED
    assert update.provider == "twilio"
    assert update.provider_message_id == OUTBOUND_SID
    assert update.error_code is None


def test_sending_callback_keeps_the_message_queued():
    update = normalize(SENDING)
    assert update is not None and update.status is MessageStatus.QUEUED


def test_sent_callback_marks_it_sent():
    update = normalize(SENT)
    assert update is not None
    assert update.status is MessageStatus.SENT
    assert update.error_code is None and update.error_message is None


def test_delivered_callback_marks_it_delivered():
    update = normalize(DELIVERED)
    assert update is not None and update.status is MessageStatus.DELIVERED
    assert update.channel_data["RawDlrDoneDate"] == "2611230716"


def test_undelivered_callback_is_a_failure_with_twilios_error_code():
    update = normalize(UNDELIVERED)
    assert update is not None
    assert update.status is MessageStatus.FAILED
    assert update.error_code == "30003"


def test_failed_callback_is_a_failure_with_twilios_error_code():
    update = normalize(FAILED)
    assert update is not None
    assert update.status is MessageStatus.FAILED
    assert update.error_code == "30008"


def test_whatsapp_read_callback_marks_it_read():
    update = normalize(READ)
    assert update is not None
    assert update.status is MessageStatus.READ
    assert update.channel_data["ChannelPrefix"] == "whatsapp"


# ------------------------------------------------------------------ the mapping


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "scheduled"])
def test_statuses_before_sent_map_to_queued(status):
    update = normalize(sms_status(status))
    assert update is not None and update.status is MessageStatus.QUEUED


@pytest.mark.parametrize(
    ("status", "error_code"), [("undelivered", "30003"), ("failed", "30008"), ("canceled", None)]
)
def test_undelivered_failed_and_canceled_map_to_failed_with_a_reason(status, error_code):
    extra = {"ErrorCode": error_code} if error_code else {}
    update = normalize(sms_status(status, **extra))
    assert update is not None
    assert update.status is MessageStatus.FAILED
    assert update.error_code == (error_code or status)
    assert update.error_message


@pytest.mark.parametrize("status", ["receiving", "received"])
def test_inbound_statuses_update_nothing(status):
    assert normalize(sms_status(status)) is None


def test_status_value_is_read_case_insensitively():
    update = normalize(sms_status("Delivered"))
    assert update is not None and update.status is MessageStatus.DELIVERED


def test_legacy_sms_sid_and_sms_status_are_enough():
    form = {k: v for k, v in DELIVERED.items() if k not in {"MessageSid", "MessageStatus"}}
    update = normalize(form)
    assert update is not None
    assert update.provider_message_id == OUTBOUND_SID
    assert update.status is MessageStatus.DELIVERED


def test_customer_and_message_ids_come_from_the_callback_url_query():
    update = normalize(DELIVERED)
    assert update is not None
    assert (update.customer_id, update.message_id) == (CUSTOMER_ID, MESSAGE_ID)


def test_callback_without_our_query_still_names_the_provider_message():
    update = normalize_status_form(DELIVERED, {})
    assert update is not None
    assert update.customer_id is None and update.message_id is None
    assert update.provider_message_id == OUTBOUND_SID


def test_every_other_parameter_is_kept_in_channel_data():
    update = normalize(UNDELIVERED)
    assert update is not None
    for key in ("AccountSid", "From", "To", "ApiVersion", "ErrorCode", "RawDlrDoneDate"):
        assert update.channel_data[key] == UNDELIVERED[key]


@pytest.mark.parametrize("missing", [("MessageSid", "SmsSid"), ("MessageStatus", "SmsStatus")])
def test_missing_sid_or_status_is_malformed(missing):
    form = {k: v for k, v in DELIVERED.items() if k not in missing}
    with pytest.raises(MalformedRequest):
        normalize(form)


def test_over_long_sid_is_malformed_not_a_crash():
    with pytest.raises(MalformedRequest):
        normalize({**DELIVERED, "MessageSid": "SM" + "0" * 300})


# ------------------------------------------------------------------ the adapter


def adapter(token: str = AUTH_TOKEN) -> TwilioStatusCallback:
    return TwilioStatusCallback(auth_token=lambda: token)


def request_for(event) -> WebhookRequest:
    return WebhookRequest.from_http_api_event(event)


def test_signed_callback_over_a_url_with_a_query_verifies():
    event = signed_event(DELIVERED, path=STATUS_PATH, query=QUERY)
    adapter().verify(request_for(event))


def test_adapter_reads_cid_and_mid_from_the_signed_url():
    event = signed_event(DELIVERED, path=STATUS_PATH, query=QUERY)
    [update] = adapter().normalize(request_for(event))
    assert isinstance(update, StatusUpdate)
    assert (update.customer_id, update.message_id) == (CUSTOMER_ID, MESSAGE_ID)
    assert update.status is MessageStatus.DELIVERED


def test_tampered_query_is_refused():
    signed = signed_event(DELIVERED, path=STATUS_PATH, query=QUERY)
    signature = signed["headers"]["x-twilio-signature"]
    other_message = urlencode({"cid": CUSTOMER_ID, "mid": "01J9Z8X7W6V5T4S3R2Q1P0N9XX"})
    event = http_api_event(
        urlencode(DELIVERED), path=STATUS_PATH, query=other_message, signature=signature
    )
    with pytest.raises(SignatureInvalid):
        adapter().verify(request_for(event))


def test_dropped_query_is_refused():
    signature = sign(url_for(path=STATUS_PATH, query=QUERY), SENT)
    event = http_api_event(urlencode(SENT), path=STATUS_PATH, signature=signature)
    with pytest.raises(SignatureInvalid):
        adapter().verify(request_for(event))


def test_callback_signed_with_another_token_is_refused():
    event = signed_event(DELIVERED, path=STATUS_PATH, query=QUERY, token="f" * 32)
    with pytest.raises(SignatureInvalid):
        adapter().verify(request_for(event))


def test_inbound_status_callback_yields_no_update():
    event = signed_event(sms_status("received"), path=STATUS_PATH, query=QUERY)
    assert adapter().normalize(request_for(event)) == []


def test_adapter_answers_twilio_with_empty_twiml():
    answer = adapter().acknowledge()
    assert answer.status == 200
    assert answer.content_type == "text/xml"
    assert "<Response" in answer.body


# ------------------------------------------------------------------ the callback URL


@pytest.mark.parametrize("base", ["https://hooks.example.com", "https://hooks.example.com/"])
def test_status_callback_url_round_trips_through_the_adapter(base):
    url = status_callback_url(base, CUSTOMER_ID, MESSAGE_ID)
    parts = urlsplit(url)
    assert parts.path == STATUS_PATH
    # Twilio posts to exactly the URL we gave it, and signs that URL.
    event = signed_event(
        FAILED, signed_url=url, host=parts.netloc, path=parts.path, query=parts.query
    )
    request = WebhookRequest.from_http_api_event(event, public_base_url=base)
    assert request.url == url
    adapter().verify(request)
    [update] = adapter().normalize(request)
    assert isinstance(update, StatusUpdate)
    assert (update.customer_id, update.message_id) == (CUSTOMER_ID, MESSAGE_ID)
    assert update.status is MessageStatus.FAILED and update.error_code == "30008"
