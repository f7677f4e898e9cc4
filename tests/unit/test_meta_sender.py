"""The Graph API senders: request shape, error classification, and the send rules around them.

A fake Graph API listens on 127.0.0.1 and answers as the Cloud API
(``POST /<version>/<phone-number-id>/messages`` -> ``{"messaging_product",
"contacts", "messages": [{"id": "wamid..."}]}``) and the Send API
(``POST /<version>/me/messages`` -> ``{"recipient_id", "message_id"}``) document;
errors are Graph errors ``{"error": {"message", "type", "code", "fbtrace_id"}}``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from threadline.channels.base import SendFailed, SendResult
from threadline.channels.meta.media import WhatsAppMediaClient
from threadline.channels.meta.payload import callback_data
from threadline.channels.meta.senders import MessengerSender, WhatsAppCloudSender
from threadline.channels.twilio.whatsapp import ProviderChoice
from threadline.outbound import (
    SendMessageRequest,
    SendOptionNotSupported,
    meta_send_options,
    provider_for,
    window_closed,
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

TOKEN = "EAAG-fake-token"
VERSION = "v23.0"
PHONE_NUMBER_ID = "106540352242922"
PHONE = Identity(kind=IdentityKind.PHONE, value="+16505551234")
PSID = Identity(kind=IdentityKind.MESSENGER, value="6789012345678901")
IGSID = Identity(kind=IdentityKind.INSTAGRAM, value="5432109876543210")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGraph:
    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)

    def answer(self, status: int, body: Any) -> None:
        self.answers.append((status, body))


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(url="")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.requests.append(
                Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            if fake.answers:
                status, body = fake.answers.pop(0)
            elif self.path.endswith("/me/messages"):
                status, body = 200, {"recipient_id": "1", "message_id": "m_SENT"}
            else:
                status, body = (
                    200,
                    {
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
                        "messages": [{"id": "wamid.SENT"}],
                    },
                )
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = _serve
        do_GET = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield fake
    finally:
        server.shutdown()


def reply(
    channel: Channel = Channel.WHATSAPP,
    recipient: Identity = PHONE,
    parts: list[Any] | None = None,
    **channel_data: Any,
) -> Message:
    return Message(
        id="01JMSG00000000000000000000",
        customer_id="01JCUST0000000000000000000",
        conversation_id="01JCONV0000000000000000000",
        channel=channel,
        direction=Direction.OUTBOUND,
        provider="meta",
        author_role=AuthorRole.AGENT,
        recipient=recipient,
        received_at=NOW,
        parts=parts if parts is not None else [TextPart(text="Your order shipped")],
        status=MessageStatus.QUEUED,
        channel_data=channel_data,
    )


def whatsapp(
    graph: FakeGraph, phone_number_id: str | None = PHONE_NUMBER_ID
) -> WhatsAppCloudSender:
    return WhatsAppCloudSender(
        access_token=lambda: TOKEN,
        phone_number_id=phone_number_id,
        api_base_url=f"{graph.url}/meta",
        version=VERSION,
    )


def messenger(graph: FakeGraph, channel: Channel = Channel.MESSENGER) -> MessengerSender:
    return MessengerSender(
        channel=channel,
        access_token=lambda: TOKEN,
        api_base_url=f"{graph.url}/meta",
        version=VERSION,
    )


# ---------------------------------------------------------------- WhatsApp Cloud API


def test_whatsapp_text_goes_to_the_phone_number_messages_endpoint_with_a_bearer_token(graph):
    result = whatsapp(graph).send(reply())
    assert result == SendResult(provider_message_id="wamid.SENT")
    (request,) = graph.requests
    assert (request.method, request.path) == ("POST", f"/meta/{VERSION}/{PHONE_NUMBER_ID}/messages")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "biz_opaque_callback_data": callback_data(
            "01JCUST0000000000000000000", "01JMSG00000000000000000000"
        ),
        "type": "text",
        "text": {"body": "Your order shipped", "preview_url": False},
    }


def test_whatsapp_answers_from_the_number_the_customer_wrote_to(graph):
    whatsapp(graph, phone_number_id=None).send(
        reply(reply_to={"whatsapp_provider": "meta", "phone_number_id": "999000111"})
    )
    assert graph.requests[0].path == f"/meta/{VERSION}/999000111/messages"


def test_whatsapp_without_any_business_number_fails_finally(graph):
    with pytest.raises(SendFailed) as failed:
        whatsapp(graph, phone_number_id=None).send(reply())
    assert (failed.value.code, failed.value.retryable) == ("whatsapp_not_configured", False)
    assert graph.requests == []


def test_whatsapp_template_is_sent_by_name_and_language(graph):
    template = {
        "name": "order_update",
        "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}],
    }
    whatsapp(graph).send(reply(parts=[], template=template))
    body = graph.requests[0].body
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": template["components"],
    }
    assert "text" not in body


def test_whatsapp_one_image_goes_as_an_image_with_the_text_as_caption(graph):
    parts = [
        TextPart(text="Here it is"),
        MediaPart(url="https://cdn.example.com/a.jpg", content_type="image/jpeg"),
    ]
    whatsapp(graph).send(reply(parts=parts))
    body = graph.requests[0].body
    assert body["type"] == "image"
    assert body["image"] == {"link": "https://cdn.example.com/a.jpg", "caption": "Here it is"}


def test_whatsapp_several_media_fall_back_to_text_with_links(graph):
    parts = [
        TextPart(text="Two files"),
        MediaPart(
            url="https://cdn.example.com/a.pdf", content_type="application/pdf", caption="Invoice"
        ),
        MediaPart(url="https://cdn.example.com/b.jpg", content_type="image/jpeg"),
    ]
    whatsapp(graph).send(reply(parts=parts))
    body = graph.requests[0].body
    assert body["type"] == "text"
    assert (
        body["text"]["body"]
        == "Two files\nInvoice: https://cdn.example.com/a.pdf\nhttps://cdn.example.com/b.jpg"
    )


# ---------------------------------------------------------------- Messenger / Instagram


@pytest.mark.parametrize(
    ("channel", "recipient"), [(Channel.MESSENGER, PSID), (Channel.INSTAGRAM, IGSID)]
)
def test_messenger_and_instagram_reply_through_me_messages_as_a_response(graph, channel, recipient):
    result = messenger(graph, channel).send(reply(channel, recipient))
    assert result == SendResult(provider_message_id="m_SENT")
    (request,) = graph.requests
    assert request.path == f"/meta/{VERSION}/me/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body == {
        "recipient": {"id": recipient.value},
        "messaging_type": "RESPONSE",
        "message": {"text": "Your order shipped"},
    }


def test_message_tag_is_sent_as_message_tag(graph):
    messenger(graph).send(reply(Channel.MESSENGER, PSID, message_tag="HUMAN_AGENT"))
    body = graph.requests[0].body
    assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


def test_messenger_lone_attachment_is_sent_by_url(graph):
    parts = [MediaPart(url="https://cdn.example.com/a.pdf", content_type="application/pdf")]
    messenger(graph).send(reply(Channel.MESSENGER, PSID, parts=parts))
    assert graph.requests[0].body["message"] == {
        "attachment": {
            "type": "file",
            "payload": {"url": "https://cdn.example.com/a.pdf", "is_reusable": False},
        }
    }


def test_messenger_sender_refuses_another_kind_of_recipient(graph):
    with pytest.raises(SendFailed) as failed:
        messenger(graph).send(reply(Channel.MESSENGER, IGSID))
    assert failed.value.code == "no_recipient" and graph.requests == []


# ---------------------------------------------------------------- errors


def graph_error(code: int, message: str = "error") -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Az8"}
    }


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80007, 130429, 131056])
def test_graph_rate_limit_codes_are_retryable_whatever_the_status(graph, code):
    graph.answer(400, graph_error(code, "rate limit"))
    with pytest.raises(SendFailed) as failed:
        whatsapp(graph).send(reply())
    assert (failed.value.code, failed.value.retryable) == (str(code), True)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_http_429_and_5xx_are_retryable(graph, status):
    graph.answer(status, graph_error(2, "Service temporarily unavailable"))
    with pytest.raises(SendFailed) as failed:
        messenger(graph).send(reply(Channel.MESSENGER, PSID))
    assert failed.value.retryable


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 131047), (400, 100), (401, 190), (403, 10), (400, 131026), (400, 551)],
)
def test_other_graph_errors_are_final_with_metas_code(graph, status, code):
    graph.answer(status, graph_error(code, "refused"))
    with pytest.raises(SendFailed) as failed:
        whatsapp(graph).send(reply())
    assert (failed.value.code, failed.value.message, failed.value.retryable) == (
        str(code),
        "refused",
        False,
    )


def test_a_non_json_gateway_error_is_retryable_with_the_http_status(graph):
    graph.answer(502, b"<html>Bad Gateway</html>")
    with pytest.raises(SendFailed) as failed:
        whatsapp(graph).send(reply())
    assert (failed.value.code, failed.value.retryable) == ("502", True)


def test_an_answer_without_a_message_id_is_a_final_failure(graph):
    graph.answer(200, {"messaging_product": "whatsapp", "messages": []})
    with pytest.raises(SendFailed) as failed:
        whatsapp(graph).send(reply())
    assert failed.value.code == "bad_response" and not failed.value.retryable


def test_unreachable_graph_is_a_retryable_network_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = WhatsAppCloudSender(
        access_token=lambda: TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        api_base_url=f"http://127.0.0.1:{port}",
    )
    with pytest.raises(SendFailed) as failed:
        sender.send(reply())
    assert (failed.value.code, failed.value.retryable) == ("network_error", True)


# ---------------------------------------------------------------- media on demand


def test_media_is_fetched_on_demand_by_id_then_url(graph):
    graph.answer(
        200, {"url": f"{graph.url}/media/blob", "mime_type": "image/jpeg", "id": "1003383421387256"}
    )
    graph.answer(200, b"\xff\xd8jpeg-bytes")
    client = WhatsAppMediaClient(
        access_token=lambda: TOKEN, api_base_url=f"{graph.url}/meta", version=VERSION
    )
    data, content_type = client.fetch("1003383421387256")
    assert data == b"\xff\xd8jpeg-bytes"
    assert content_type == "application/json"  # what the fake labels every answer
    assert [r.path for r in graph.requests] == [f"/meta/{VERSION}/1003383421387256", "/media/blob"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in graph.requests)


def test_expired_media_is_a_final_failure(graph):
    graph.answer(404, graph_error(100, "Unsupported get request"))
    client = WhatsAppMediaClient(
        access_token=lambda: TOKEN, api_base_url=f"{graph.url}/meta", version=VERSION
    )
    with pytest.raises(SendFailed) as failed:
        client.fetch("1")
    assert failed.value.code == "100" and not failed.value.retryable


# ---------------------------------------------------------------- send rules


def profile(**last_inbound: timedelta) -> Profile:
    customer = Customer(
        id="01JCUST0000000000000000000", identities=[PHONE, PSID, IGSID], created_at=NOW
    )
    return Profile(
        customer=customer, last_inbound={Channel(k): NOW - v for k, v in last_inbound.items()}
    )


@pytest.mark.parametrize("channel", [Channel.MESSENGER, Channel.INSTAGRAM])
def test_messenger_and_instagram_window_is_24_hours(channel):
    recipient = PSID if channel is Channel.MESSENGER else IGSID
    inside = profile(**{channel.value: timedelta(hours=23, minutes=59)})
    outside = profile(**{channel.value: timedelta(hours=24, minutes=1)})
    assert window_closed(inside, reply(channel, recipient), NOW) is None
    code, _ = window_closed(outside, reply(channel, recipient), NOW) or ("", "")
    assert code == f"{channel.value}_window_closed"
    assert window_closed(profile(), reply(channel, recipient), NOW) is not None


def test_human_agent_tag_stretches_the_window_to_7_days():
    six_days = profile(messenger=timedelta(days=6))
    eight_days = profile(messenger=timedelta(days=8))
    tagged = reply(Channel.MESSENGER, PSID, message_tag="HUMAN_AGENT")
    assert window_closed(six_days, tagged, NOW) is None
    assert window_closed(eight_days, tagged, NOW) is not None


def test_other_messenger_tags_are_not_held_to_a_window():
    tagged = reply(Channel.MESSENGER, PSID, message_tag="POST_PURCHASE_UPDATE")
    assert window_closed(profile(messenger=timedelta(days=30)), tagged, NOW) is None


def test_whatsapp_template_opens_a_closed_window():
    closed = profile(whatsapp=timedelta(days=3))
    assert window_closed(closed, reply(), NOW) is not None
    templated = reply(parts=[], template={"name": "order_update", "language": "en_US"})
    assert window_closed(closed, templated, NOW) is None


def test_channels_without_a_window_are_never_closed():
    assert window_closed(profile(), reply(Channel.SMS), NOW) is None


def test_template_request_is_validated():
    request = SendMessageRequest.model_validate(
        {"template": {"name": "order_update", "language": "en_US"}}
    )
    assert request.parts() == []
    assert meta_send_options(request, Channel.WHATSAPP) == {
        "template": {"name": "order_update", "language": "en_US"}
    }
    with pytest.raises(SendOptionNotSupported):
        meta_send_options(request, Channel.SMS)
    with pytest.raises(ValidationError):
        SendMessageRequest.model_validate(
            {"template": {"name": "Order Update!", "language": "en_US"}}
        )
    with pytest.raises(ValidationError):
        SendMessageRequest.model_validate({})


def test_message_tags_are_checked_against_the_channel():
    human = SendMessageRequest(text="hi", message_tag="HUMAN_AGENT")
    update = SendMessageRequest(text="hi", message_tag="ACCOUNT_UPDATE")
    assert meta_send_options(human, Channel.INSTAGRAM) == {"message_tag": "HUMAN_AGENT"}
    assert meta_send_options(update, Channel.MESSENGER) == {"message_tag": "ACCOUNT_UPDATE"}
    with pytest.raises(SendOptionNotSupported):
        meta_send_options(update, Channel.INSTAGRAM)
    with pytest.raises(SendOptionNotSupported):
        meta_send_options(human, Channel.WHATSAPP)
    with pytest.raises(ValidationError):
        SendMessageRequest.model_validate({"text": "hi", "message_tag": "PROMOTION"})


# ---------------------------------------------------------------- WhatsApp provider choice


@dataclass
class StubSender:
    provider: str
    sent: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        return SendResult(provider_message_id=f"{self.provider}-1")


def test_whatsapp_goes_through_the_provider_the_customer_last_wrote_through():
    twilio, meta = StubSender("twilio"), StubSender("meta")
    choice = ProviderChoice({"twilio": twilio, "meta": meta}, default="twilio")
    assert choice.pick(reply(reply_to={"whatsapp_provider": "meta"})) is meta
    assert choice.pick(reply(reply_to={"whatsapp_provider": "twilio"})) is twilio
    assert choice.pick(reply()) is twilio
    assert choice.pick(reply(reply_to={"whatsapp_provider": "someone-else"})) is twilio


def test_a_template_goes_through_meta_even_for_a_twilio_customer():
    twilio, meta = StubSender("twilio"), StubSender("meta")
    choice = ProviderChoice({"twilio": twilio, "meta": meta}, default="twilio")
    templated = reply(
        reply_to={"whatsapp_provider": "twilio"}, template={"name": "x", "language": "en"}
    )
    assert choice.pick(templated) is meta


def test_provider_choice_needs_a_sender_for_its_default():
    with pytest.raises(ValueError, match="default"):
        ProviderChoice({"meta": StubSender("meta")}, default="twilio")


def test_queued_whatsapp_reply_names_the_expected_provider():
    assert provider_for(Channel.WHATSAPP, {"reply_to": {"whatsapp_provider": "meta"}}) == "meta"
    assert provider_for(Channel.WHATSAPP, {}) == "twilio"
    assert provider_for(Channel.MESSENGER, {"reply_to": {"page_id": "1"}}) == "meta"
