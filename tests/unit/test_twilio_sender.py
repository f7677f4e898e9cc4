"""TwilioSender calls Twilio's Messages API as documented, and classifies its refusals.

A fake Twilio listens on 127.0.0.1 and answers like the Message resource
("Create a Message resource": ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
with form parameters To, From or MessagingServiceSid, Body, MediaUrl (repeatable),
StatusCallback, and HTTP basic auth of the Account SID and Auth Token; the answer is
``201`` with the Message's JSON, ``status`` ``queued`` (``accepted`` through a
Messaging Service)). Errors come as Twilio's error JSON ``{"code", "message",
"more_info", "status"}`` (error 21211 "Invalid 'To' Phone Number"). The sender reaches
it through its ``api_base_url``: the sender's HTTP client maps
https://api.twilio.com/<path> to <api_base_url>/<path>.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.unit import twilio_payloads as tw
from threadline.channels.base import SendFailed, SendResult
from threadline.channels.twilio.messaging import TwilioSender, status_callback_url
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    IdentityKind,
    MediaPart,
    Message,
    MessageStatus,
    TextPart,
)

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # fake
CALLBACK_BASE = "https://hooks.example.com"
MESSAGES_PATH = f"/twilio/2010-04-01/Accounts/{tw.ACCOUNT_SID}/Messages.json"
CREATED_SID = "SM" + "5e" * 16
CUSTOMER = Identity(kind=IdentityKind.PHONE, value=tw.CUSTOMER)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    form: list[tuple[str, str]]

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.form if k == key]

    def value(self, key: str) -> str | None:
        found = self.values(key)
        assert len(found) <= 1, f"{key} sent {len(found)} times"
        return found[0] if found else None


@dataclass
class FakeTwilio:
    url: str
    requests: list[Received] = field(default_factory=list)
    answer: tuple[int, dict[str, Any] | None] | None = None
    """(status, JSON body) to answer with; None: a created Message."""


def created_message(form: dict[str, str]) -> dict[str, Any]:
    """The Message resource Twilio returns from create."""
    now = "Mon, 23 Nov 2026 07:16:49 +0000"
    uri = f"/2010-04-01/Accounts/{tw.ACCOUNT_SID}/Messages/{CREATED_SID}"
    return {
        "account_sid": tw.ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": CREATED_SID,
        "status": "accepted" if "MessagingServiceSid" in form else "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form.get("To"),
        "uri": f"{uri}.json",
    }


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake: FakeTwilio

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True)
            fake.requests.append(
                Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, form)
            )
            status, body = fake.answer or (201, created_message(dict(form)))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeTwilio(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sender(root: str, *, sms_from: str = tw.BUSINESS, whatsapp_from: str = tw.BUSINESS):
    return TwilioSender(
        account_sid=lambda: tw.ACCOUNT_SID,
        auth_token=lambda: AUTH_TOKEN,
        sms_from=sms_from,
        whatsapp_from=whatsapp_from,
        status_callback_base=CALLBACK_BASE,
        api_base_url=f"{root}/twilio",
    )


def reply(channel: Channel = Channel.SMS, *parts: Any) -> Message:
    return Message(
        id="01J9Z8X7W6V5T4S3R2Q1P0N9MM",
        customer_id="01J9Z8X7W6V5T4S3R2Q1P0N9MC",
        conversation_id="01J9Z8X7W6V5T4S3R2Q1P0N9CV",
        channel=channel,
        direction=Direction.OUTBOUND,
        provider="twilio",
        author_role=AuthorRole.AGENT,
        recipient=CUSTOMER,
        received_at=datetime(2026, 11, 23, 7, 16, 49, tzinfo=UTC),
        parts=list(parts) or [TextPart(text="Your order ships today")],
        status=MessageStatus.QUEUED,
    )


EXPECTED_CALLBACK = status_callback_url(
    CALLBACK_BASE, "01J9Z8X7W6V5T4S3R2Q1P0N9MC", "01J9Z8X7W6V5T4S3R2Q1P0N9MM"
)


# ------------------------------------------------------------------ the request


def test_sms_is_one_post_to_the_accounts_messages_resource(fake_twilio):
    result = sender(fake_twilio.url).send(reply())
    assert result == SendResult(provider_message_id=CREATED_SID)
    [request] = fake_twilio.requests
    assert request.method == "POST"
    assert request.path == MESSAGES_PATH
    assert request.value("To") == tw.CUSTOMER
    assert request.value("From") == tw.BUSINESS
    assert request.value("Body") == "Your order ships today"
    assert request.value("MessagingServiceSid") is None
    assert request.values("MediaUrl") == []


def test_request_is_basic_auth_with_account_sid_and_token(fake_twilio):
    sender(fake_twilio.url).send(reply())
    [request] = fake_twilio.requests
    scheme, _, credentials = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{tw.ACCOUNT_SID}:{AUTH_TOKEN}"


def test_status_callback_names_the_customer_and_message(fake_twilio):
    sender(fake_twilio.url).send(reply())
    [request] = fake_twilio.requests
    assert request.value("StatusCallback") == EXPECTED_CALLBACK


def test_media_parts_become_media_urls(fake_twilio):
    urls = ["https://cdn.example.com/label.pdf", "https://cdn.example.com/box.jpg"]
    message = reply(
        Channel.SMS,
        TextPart(text="Here is your label"),
        MediaPart(url=urls[0], content_type="application/pdf"),
        MediaPart(url=urls[1], content_type="image/jpeg"),
    )
    sender(fake_twilio.url).send(message)
    [request] = fake_twilio.requests
    assert request.values("MediaUrl") == urls
    assert request.value("Body") == "Here is your label"


def test_media_only_message_sends_no_body(fake_twilio):
    sender(fake_twilio.url).send(reply(Channel.SMS, MediaPart(url="https://cdn.example.com/a.jpg")))
    [request] = fake_twilio.requests
    assert request.value("Body") is None
    assert request.values("MediaUrl") == ["https://cdn.example.com/a.jpg"]


def test_messaging_service_sender_is_sent_as_messaging_service_sid(fake_twilio):
    sender(fake_twilio.url, sms_from=tw.MESSAGING_SERVICE_SID).send(reply())
    [request] = fake_twilio.requests
    assert request.value("MessagingServiceSid") == tw.MESSAGING_SERVICE_SID
    assert request.value("From") is None


def test_whatsapp_prefixes_to_and_from(fake_twilio):
    sender(fake_twilio.url).send(reply(Channel.WHATSAPP))
    [request] = fake_twilio.requests
    assert request.value("To") == f"whatsapp:{tw.CUSTOMER}"
    assert request.value("From") == f"whatsapp:{tw.BUSINESS}"


def test_whatsapp_sender_already_prefixed_is_not_prefixed_twice(fake_twilio):
    sender(fake_twilio.url, whatsapp_from=f"whatsapp:{tw.BUSINESS}").send(reply(Channel.WHATSAPP))
    [request] = fake_twilio.requests
    assert request.value("From") == f"whatsapp:{tw.BUSINESS}"


def test_message_without_recipient_is_a_final_failure_and_calls_nobody(fake_twilio):
    message = reply().model_copy(update={"recipient": None})
    with pytest.raises(SendFailed) as caught:
        sender(fake_twilio.url).send(message)
    assert caught.value.retryable is False
    assert fake_twilio.requests == []


# ------------------------------------------------------------------ Twilio's refusals


def twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def send_against(fake: FakeTwilio, status: int, body: dict[str, Any] | None) -> SendFailed:
    fake.answer = (status, body)
    with pytest.raises(SendFailed) as caught:
        sender(fake.url).send(reply())
    return caught.value


def test_rate_limit_is_retryable(fake_twilio):
    error = send_against(fake_twilio, 429, twilio_error(20429, "Too Many Requests", 429))
    assert error.retryable is True
    assert error.code == "20429"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retryable(fake_twilio, status):
    error = send_against(fake_twilio, status, twilio_error(20500, "Internal Server Error", status))
    assert error.retryable is True


def test_server_error_without_a_json_body_is_retryable(fake_twilio):
    error = send_against(fake_twilio, 503, None)
    assert error.retryable is True


def test_invalid_to_number_is_a_final_failure_with_twilios_code(fake_twilio):
    error = send_against(fake_twilio, 400, twilio_error(21211, "Invalid 'To' Phone Number", 400))
    assert error.retryable is False
    assert error.code == "21211"
    assert "Invalid 'To' Phone Number" in error.message


def test_unreachable_twilio_is_a_retryable_network_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(SendFailed) as caught:
        sender(f"http://127.0.0.1:{closed_port}").send(reply())
    assert caught.value.retryable is True
    assert caught.value.code == "network_error"


def test_rfc9457_client_error_is_a_final_failure(fake_twilio):
    problem = {
        "type": "https://www.twilio.com/docs/errors/21211",
        "title": "Invalid 'To' Phone Number",
        "status": 400,
        "code": 21211,
        "detail": "The 'To' number +1555 is not a valid phone number.",
    }
    error = send_against(fake_twilio, 400, problem)
    assert error.retryable is False
    assert error.code == "21211"
