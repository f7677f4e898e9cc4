"""The rules an outbound reply goes through before any provider is called."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from threadline.events import MessageQueued, put_events_entry
from threadline.outbound import (
    NoIdentityForChannel,
    OptedOut,
    SendMessageRequest,
    backoff_seconds,
    choose_channel,
    job_from_queue_body,
    within_window,
)
from threadline.schema import (
    AuthorRole,
    Channel,
    Customer,
    Direction,
    Identity,
    IdentityKind,
    MediaPart,
    Message,
    MessageStatus,
    TextPart,
)
from threadline.store import Profile

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PHONE = Identity(kind=IdentityKind.PHONE, value="+15555550123")
EMAIL = Identity(kind=IdentityKind.EMAIL, value="jane@example.com")
OPTED_OUT = {"status": "opted_out", "purpose": "all", "at": NOW.isoformat(), "source": "keyword"}
OPTED_IN = {"status": "opted_in", "purpose": "all", "at": NOW.isoformat(), "source": "keyword"}


def profile(
    *identities: Identity,
    last_inbound: dict[Channel, datetime] | None = None,
    consent: dict[str, dict] | None = None,
) -> Profile:
    customer = Customer(
        id="01J9Z8X7W6V5T4S3R2Q1P0N9MC", identities=list(identities), created_at=NOW
    )
    return Profile(customer=customer, last_inbound=last_inbound or {}, consent=consent or {})


# ------------------------------------------------------------ SendMessageRequest


def test_text_alone_is_a_message():
    request = SendMessageRequest(text="Your order shipped")
    assert request.parts() == [TextPart(text="Your order shipped")]
    assert request.channel is None and request.author_role == "agent"


def test_media_alone_is_a_message():
    request = SendMessageRequest(media=[{"url": "https://cdn.example.com/label.pdf"}])
    assert request.parts() == [MediaPart(url="https://cdn.example.com/label.pdf")]


@pytest.mark.parametrize("body", [{}, {"text": None}, {"media": []}, {"text": "", "media": []}])
def test_a_message_needs_text_or_media(body):
    with pytest.raises(ValidationError):
        SendMessageRequest.model_validate(body)


@pytest.mark.parametrize(
    "url", ["http://cdn.example.com/a.jpg", "ftp://cdn.example.com/a.jpg", "cdn.example.com/a.jpg"]
)
def test_media_url_must_be_https(url):
    with pytest.raises(ValidationError):
        SendMessageRequest(media=[{"url": url}])


@pytest.mark.parametrize(
    "body",
    [
        {"text": "hi", "priority": "high"},
        {"text": "hi", "media": [{"url": "https://cdn.example.com/a.jpg", "size": 1}]},
    ],
)
def test_extra_fields_are_refused(body):
    with pytest.raises(ValidationError):
        SendMessageRequest.model_validate(body)


def test_fallback_is_an_ordered_list_of_channels():
    request = SendMessageRequest.model_validate(
        {"text": "hi", "channel": "whatsapp", "fallback": ["sms", "email"]}
    )
    assert request.channel is Channel.WHATSAPP
    assert request.fallback == [Channel.SMS, Channel.EMAIL]


def test_fallback_refuses_an_unknown_channel():
    with pytest.raises(ValidationError):
        SendMessageRequest.model_validate({"text": "hi", "fallback": ["pigeon"]})


def test_author_role_customer_is_refused():
    with pytest.raises(ValidationError):
        SendMessageRequest(text="hi", author_role="customer")


def test_same_request_has_the_same_fingerprint_and_a_different_one_does_not():
    one = SendMessageRequest(text="hi", channel="sms")
    assert one.fingerprint() == SendMessageRequest(text="hi", channel="sms").fingerprint()
    assert one.fingerprint() != SendMessageRequest(text="hi", channel="whatsapp").fingerprint()


# ------------------------------------------------------------ choose_channel


def test_requested_channel_with_a_matching_identity_is_used():
    assert choose_channel(profile(PHONE, EMAIL), Channel.EMAIL) == (Channel.EMAIL, EMAIL)


def test_whatsapp_reaches_the_customer_on_their_phone_identity():
    assert choose_channel(profile(PHONE), Channel.WHATSAPP) == (Channel.WHATSAPP, PHONE)


def test_requested_channel_without_a_matching_identity_is_a_422():
    with pytest.raises(NoIdentityForChannel) as caught:
        choose_channel(profile(PHONE), Channel.EMAIL)
    assert caught.value.status == 422


def test_without_a_requested_channel_the_latest_inbound_channel_is_used():
    last = {
        Channel.SMS: NOW - timedelta(days=2),
        Channel.EMAIL: NOW - timedelta(hours=1),
        Channel.WHATSAPP: NOW - timedelta(hours=5),
    }
    assert choose_channel(profile(PHONE, EMAIL, last_inbound=last), None) == (Channel.EMAIL, EMAIL)


def test_without_a_requested_channel_or_any_inbound_it_is_a_422():
    with pytest.raises(NoIdentityForChannel):
        choose_channel(profile(PHONE), None)


def test_opted_out_identity_is_a_409():
    opted_out = profile(PHONE, consent={str(PHONE): OPTED_OUT})
    with pytest.raises(OptedOut) as caught:
        choose_channel(opted_out, Channel.SMS)
    assert caught.value.status == 409


def test_opt_out_on_one_identity_does_not_block_another():
    customer = profile(PHONE, EMAIL, consent={str(PHONE): OPTED_OUT})
    assert choose_channel(customer, Channel.EMAIL) == (Channel.EMAIL, EMAIL)


def test_opted_back_in_identity_is_reachable():
    customer = profile(PHONE, consent={str(PHONE): OPTED_IN})
    assert choose_channel(customer, Channel.SMS) == (Channel.SMS, PHONE)


# ------------------------------------------------------------ WhatsApp's 24-hour window


def whatsapp_last_written(ago: timedelta) -> Profile:
    return profile(PHONE, last_inbound={Channel.WHATSAPP: NOW - ago})


def test_23h59_after_the_last_whatsapp_message_is_inside_the_window():
    assert within_window(
        whatsapp_last_written(timedelta(hours=23, minutes=59)), Channel.WHATSAPP, NOW
    )


def test_24h01_after_the_last_whatsapp_message_is_outside_the_window():
    assert not within_window(
        whatsapp_last_written(timedelta(hours=24, minutes=1)), Channel.WHATSAPP, NOW
    )


def test_no_whatsapp_message_ever_is_outside_the_window():
    recent_sms = profile(PHONE, last_inbound={Channel.SMS: NOW - timedelta(minutes=1)})
    assert not within_window(recent_sms, Channel.WHATSAPP, NOW)
    assert within_window(recent_sms, Channel.SMS, NOW)  # SMS has no window


# ------------------------------------------------------------ backoff


def test_backoff_doubles_from_one_second():
    assert [backoff_seconds(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]


def test_backoff_is_capped_at_fifteen_minutes():
    assert backoff_seconds(10) == 512
    assert backoff_seconds(11) == 900
    assert backoff_seconds(50) == 900


def test_backoff_honours_the_providers_retry_after():
    assert backoff_seconds(1, retry_after=30) == 30
    assert backoff_seconds(9, retry_after=5) == 5


def test_retry_after_is_kept_between_one_second_and_fifteen_minutes():
    assert backoff_seconds(3, retry_after=0) == 1
    assert backoff_seconds(3, retry_after=86_400) == 900


# ------------------------------------------------------------ dispatch-queue bodies

QUEUED = Message(
    id="01J9Z8X7W6V5T4S3R2Q1P0N9MM",
    customer_id="01J9Z8X7W6V5T4S3R2Q1P0N9MC",
    conversation_id="01J9Z8X7W6V5T4S3R2Q1P0N9CV",
    channel=Channel.SMS,
    direction=Direction.OUTBOUND,
    provider="twilio",
    author_role=AuthorRole.AGENT,
    recipient=PHONE,
    received_at=NOW,
    parts=[TextPart(text="Your order shipped")],
    status=MessageStatus.QUEUED,
)


def eventbridge_to_sqs_body(detail: object) -> str:
    """The SQS message body EventBridge writes for a rule target: the whole event."""
    return json.dumps(
        {
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "message.queued",
            "source": "threadline",
            "account": "123456789012",
            "time": "2026-11-23T12:00:01Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def test_job_is_read_from_an_eventbridge_message_queued_event():
    event = MessageQueued(
        id="3f1c0d2e9b8a7f6e5d4c3b2a1f0e9d8c",
        occurred_at=NOW,
        customer_id=QUEUED.customer_id,
        message=QUEUED,
    )
    detail = json.loads(put_events_entry(event, "threadline")["Detail"])
    assert job_from_queue_body(eventbridge_to_sqs_body(detail)) == (QUEUED.customer_id, QUEUED.id)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "null",
        "[]",
        '"message.queued"',
        json.dumps({"detail-type": "message.queued", "source": "threadline"}),
        eventbridge_to_sqs_body(None),
        eventbridge_to_sqs_body("a string"),
        eventbridge_to_sqs_body({}),
        eventbridge_to_sqs_body({"message": None}),
        eventbridge_to_sqs_body({"message": {"id": QUEUED.id}}),
        eventbridge_to_sqs_body({"message": {"customer_id": QUEUED.customer_id}}),
    ],
)
def test_junk_bodies_are_refused_with_value_error(body):
    with pytest.raises(ValueError, match=r"message\.queued"):
        job_from_queue_body(body)


def test_null_ids_are_refused():
    with pytest.raises(ValueError):
        job_from_queue_body(eventbridge_to_sqs_body({"message": {"customer_id": None, "id": None}}))


def test_deeply_nested_junk_is_refused_with_value_error():
    with pytest.raises(ValueError):
        job_from_queue_body("[" * 100_000)
