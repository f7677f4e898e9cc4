"""The message item's stored form: a compressed document and envelope (docs/cost.md:
an inbound SMS under 1 KB), read back as written, and items from before."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from tests.unit import twilio_payloads as tw
from threadline.channels.twilio.messaging import normalize_form
from threadline.item_codec import inline_envelope
from threadline.items import (
    from_stream_image,
    message_from_item,
    message_item,
    to_item,
)
from threadline.schema import (
    Channel,
    Direction,
    Message,
    MessageStatus,
    RawPayloadRef,
    StatusChange,
    TextPart,
)

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def twilio_message() -> tuple[Message, str]:
    """A full Twilio SMS as filed: every form field in channel_data and the envelope."""
    sid = "SM" + "7f3a9c" * 5 + "12"
    form = {**tw.SMS, "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid}
    inbound = normalize_form(form)
    envelope = json.dumps(
        {
            "body": "&".join(f"{k}={v}" for k, v in form.items()),
            "headers": {"x-twilio-signature": "bm90IGEgcmVhbCBzaWduYXR1cmU="},
            "method": "POST",
            "url": "https://hooks.example.com/webhooks/twilio/messaging",
            "received_at": AT.isoformat(),
        }
    )
    message = Message(
        id="01KCMSGQX7ZK3V5A4T9N2M8B6C",
        customer_id="01KCCUSTQX7ZK3V5A4T9N2M8B6",
        conversation_id="01KCCONVQX7ZK3V5A4T9N2M8B6",
        channel=Channel.SMS,
        direction=Direction.INBOUND,
        provider="twilio",
        provider_message_id=sid,
        author_role=inbound.author_role,
        sender=inbound.sender,
        recipient=inbound.recipient,
        received_at=AT,
        parts=inbound.parts,
        status=MessageStatus.RECEIVED,
        status_history=[StatusChange(status=MessageStatus.RECEIVED, at=AT)],
        raw=RawPayloadRef(
            location="inline", content_type="application/json", size=len(envelope), sha256="0" * 64
        ),
        channel_data=inbound.channel_data,
    )
    return message, envelope


def item_bytes(item: dict) -> int:
    """DynamoDB's size of an item of strings and binaries (names + values)."""
    return sum(
        len(name) + len(value.get("S", "").encode() if "S" in value else value.get("B", b""))
        for name, value in to_item(item).items()
    )


def test_a_twilio_sms_item_is_under_one_kb_and_reads_back_whole():
    message, envelope = twilio_message()

    item = message_item(message, raw_inline=envelope)

    assert item_bytes(item) < 1024
    assert message_from_item(item) == message
    assert inline_envelope(item) == envelope.encode()


def test_items_written_before_compression_still_read():
    message, envelope = twilio_message()
    legacy = {
        **message_item(message),
        "message": message.model_dump_json(
            exclude={"status", "status_history", "channel", "recipient", "sender"}
            | {"provider_message_id"}
        ),
        "status_history": [{"status": "received", "at": AT.isoformat()}],
        "raw": envelope,
    }

    assert message_from_item(legacy) == message
    assert inline_envelope(legacy) == envelope.encode()


def test_a_stream_image_carries_binary_values_as_base64_text():
    message, envelope = twilio_message()
    image = to_item(message_item(message, raw_inline=envelope))
    as_lambda_sends = json.loads(
        json.dumps(image, default=lambda data: base64.b64encode(data).decode())
    )

    item = from_stream_image(as_lambda_sends)

    assert message_from_item(item) == message
    assert inline_envelope(item) == envelope.encode()


def test_an_edit_keeps_the_text_it_replaced():
    message, _ = twilio_message()
    edited = message.model_copy(update={"parts": [TextPart(text="changed")]})

    assert message_from_item(message_item(edited)).parts == [TextPart(text="changed")]
