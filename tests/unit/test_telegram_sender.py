"""TelegramSender calls sendMessage as the Bot API documents it, against the sandbox.

The local stack's provider sandbox plays the Bot API on 127.0.0.1: it answers
``POST /telegram/bot<token>/sendMessage`` with ``{"ok": true, "result": Message}``
and programmed faults as Telegram sends them (``{"ok": false, "error_code": 429,
"description": ..., "parameters": {"retry_after": N}}``).
"""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from werkzeug.serving import make_server

from devstack.sandbox import TELEGRAM_RETRY_AFTER_SECONDS, ProviderSandbox
from tests.unit import telegram_payloads as tg
from threadline.channels.base import SendFailed
from threadline.channels.telegram.outbound import TelegramSender
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
from threadline.store import utc_now


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProviderSandbox]:
    sandbox = ProviderSandbox()
    server = make_server("127.0.0.1", 0, sandbox, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sandbox.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield sandbox
    server.shutdown()


@pytest.fixture(autouse=True)
def fresh(sandbox: ProviderSandbox) -> None:
    sandbox.clear()


def sender(sandbox: ProviderSandbox, token: str = tg.BOT_TOKEN) -> TelegramSender:
    return TelegramSender(bot_token=lambda: token, api_base_url=f"{sandbox.url}/telegram")  # type: ignore[attr-defined]


def reply(*parts: Any, reply_to: dict[str, str] | None = None, recipient: Identity | None = None):
    return Message(
        id="01J9Z8X7W6V5T4S3R2Q1P0N9MM",
        customer_id="01J9Z8X7W6V5T4S3R2Q1P0N9CC",
        conversation_id="01J9Z8X7W6V5T4S3R2Q1P0N9VV",
        channel=Channel.TELEGRAM,
        direction=Direction.OUTBOUND,
        provider="telegram",
        author_role=AuthorRole.AGENT,
        recipient=recipient or Identity(kind=IdentityKind.TELEGRAM, value=str(tg.USER_ID)),
        received_at=utc_now(),
        parts=list(parts) or [TextPart(text="Your replacement ships today.")],
        status=MessageStatus.QUEUED,
        channel_data={"reply_to": reply_to} if reply_to else {},
    )


def sent_form(sandbox: ProviderSandbox) -> dict[str, Any]:
    (request,) = sandbox.outbox("telegram")
    return {k: v[0] for k, v in request.form.items()}


def test_a_reply_goes_to_the_customers_chat_quoting_their_last_message(sandbox):
    result = sender(sandbox).send(reply(reply_to={"chat_id": str(tg.GROUP_ID), "message_id": "53"}))
    (request,) = sandbox.outbox("telegram")
    assert request.method == "POST"
    assert request.path == f"/telegram/bot{tg.BOT_ID}:***/sendMessage"
    form = {k: v[0] for k, v in request.form.items()}
    assert json.loads(form["chat_id"]) == tg.GROUP_ID
    assert form["text"] == "Your replacement ships today."
    assert json.loads(form["reply_parameters"]) == {
        "message_id": 53,
        "allow_sending_without_reply": True,
    }
    assert "parse_mode" not in form
    assert result.provider_message_id == f"{tg.GROUP_ID}:1"


def test_without_a_chat_on_record_the_reply_goes_to_the_users_private_chat(sandbox):
    result = sender(sandbox).send(reply())
    form = sent_form(sandbox)
    assert json.loads(form["chat_id"]) == tg.USER_ID
    assert "reply_parameters" not in form
    assert result.provider_message_id.startswith(f"{tg.USER_ID}:")


def test_media_go_as_links_under_the_text(sandbox):
    sender(sandbox).send(
        reply(
            TextPart(text="Here is the label."),
            MediaPart(url="https://cdn.example.com/label.pdf", caption="Return label"),
        )
    )
    assert sent_form(sandbox)["text"] == (
        "Here is the label.\nReturn label: https://cdn.example.com/label.pdf"
    )


def test_429_is_retried_after_telegrams_retry_after(sandbox):
    sandbox.program_faults("telegram", [429])
    with pytest.raises(SendFailed) as failed:
        sender(sandbox).send(reply())
    assert failed.value.retryable
    assert failed.value.retry_after == TELEGRAM_RETRY_AFTER_SECONDS
    # The fault is used up: the retry goes through.
    assert sender(sandbox).send(reply()).provider_message_id


@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_are_retried(sandbox, status):
    sandbox.program_faults("telegram", [status])
    with pytest.raises(SendFailed) as failed:
        sender(sandbox).send(reply())
    assert failed.value.retryable
    assert failed.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "description"),
    [(400, "Bad Request: chat not found"), (403, "Forbidden: bot was blocked by the user")],
)
def test_other_refusals_are_final_with_telegrams_description(sandbox, status, description):
    sandbox.program_faults("telegram", [status])
    with pytest.raises(SendFailed) as failed:
        sender(sandbox).send(reply())
    assert not failed.value.retryable
    assert failed.value.code == description


def test_a_bad_token_is_final_and_the_token_is_nowhere_in_the_error(sandbox):
    token = "not-a-token-SECRETVALUE"
    with pytest.raises(SendFailed) as failed:
        sender(sandbox, token).send(reply())
    assert failed.value.code == "Unauthorized"
    assert not failed.value.retryable
    assert "SECRETVALUE" not in "".join(traceback.format_exception(failed.value))


def test_an_unreachable_api_is_retried_and_the_url_with_its_token_never_shows():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    telegram = TelegramSender(
        bot_token=lambda: tg.BOT_TOKEN, api_base_url=f"http://127.0.0.1:{port}"
    )
    with pytest.raises(SendFailed) as failed:
        telegram.send(reply())
    assert failed.value.code == "network_error"
    assert failed.value.retryable
    text = "".join(traceback.format_exception(failed.value))
    assert tg.BOT_TOKEN.split(":")[1] not in text


def test_a_2xx_that_is_not_json_is_final_not_retried():
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        telegram = TelegramSender(
            bot_token=lambda: tg.BOT_TOKEN, api_base_url=f"http://127.0.0.1:{server.server_port}"
        )
        with pytest.raises(SendFailed) as failed:
            telegram.send(reply())
        # The message may be out: sending again could deliver it twice.
        assert failed.value.code == "invalid_response"
        assert not failed.value.retryable
    finally:
        server.shutdown()


def test_nothing_to_send_or_no_telegram_recipient_is_final(sandbox):
    with pytest.raises(SendFailed) as empty:
        sender(sandbox).send(reply(MediaPart(provider_media_id="x")))
    assert empty.value.code == "empty_message"
    with pytest.raises(SendFailed) as wrong:
        sender(sandbox).send(
            reply(recipient=Identity(kind=IdentityKind.PHONE, value="+15555550123"))
        )
    assert wrong.value.code == "no_recipient"
    assert sandbox.outbox("telegram") == []


def test_the_sandbox_refuses_what_telegram_refuses(sandbox):
    import requests

    base = f"{sandbox.url}/telegram/bot{tg.BOT_TOKEN}/sendMessage"  # type: ignore[attr-defined]
    assert requests.post(base, json={"text": "x"}, timeout=5).json()["description"] == (
        "Bad Request: chat_id is empty"
    )
    assert requests.post(base, json={"chat_id": 1}, timeout=5).status_code == 400
    answer = requests.post(base, data={"chat_id": "5", "text": "form args"}, timeout=5).json()
    assert answer["ok"] is True and answer["result"]["chat"]["id"] == 5
