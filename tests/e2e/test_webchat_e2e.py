"""Web chat over the local stack: the sessions endpoint, the widget, a real WebSocket."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid

import pytest
import requests
import websockets
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e


def banner_value(stack, pattern: str) -> str:
    for line in stack.output:
        match = re.search(pattern, line)
        if match:
            return match.group(1)
    raise AssertionError(f"the banner has no line matching {pattern}")


def demo_url(stack) -> str:
    return banner_value(stack, r"web chat\s+(http://\S+)")


def api(stack, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.api_token}", **kwargs.pop("headers", {})}
    return requests.request(method, stack.base_url + path, headers=headers, timeout=15, **kwargs)


def new_session(stack, body: dict | None = None, **headers) -> dict:
    answer = requests.post(
        stack.base_url + "/webchat/v1/sessions", json=body or {}, headers=headers, timeout=15
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def socket_url(session: dict) -> str:
    return session["websocket_url"] + "?token=" + session["token"]


def customer_id_of(stack, visitor_id: str) -> str:
    answer = api(stack, "GET", "/v1/customers", params={"identity": f"webchat:{visitor_id}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


async def receive(ws, kind: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if frame["type"] == kind:
            return frame


def test_the_widget_and_the_demo_page_are_served(local_stack):
    widget = requests.get(local_stack.base_url + "/webchat/v1/widget.js", timeout=15)
    assert widget.status_code == 200
    assert widget.headers["Content-Type"].startswith("text/javascript")
    assert len(widget.content) < 20 * 1024
    cached = requests.get(
        local_stack.base_url + "/webchat/v1/widget.js",
        headers={"If-None-Match": widget.headers["ETag"]},
        timeout=15,
    )
    assert cached.status_code == 304
    page = requests.get(demo_url(local_stack), timeout=15)
    assert page.status_code == 200
    assert f'<script src="{local_stack.base_url}/webchat/v1/widget.js"' in page.text


def test_only_allowed_origins_open_sessions(local_stack):
    origin = demo_url(local_stack).rsplit("/webchat/", 1)[0]
    allowed = requests.post(
        local_stack.base_url + "/webchat/v1/sessions",
        json={},
        headers={"Origin": origin},
        timeout=15,
    )
    assert allowed.status_code == 201
    assert allowed.headers["Access-Control-Allow-Origin"] == origin
    preflight = requests.options(
        local_stack.base_url + "/webchat/v1/sessions", headers={"Origin": origin}, timeout=15
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    other = requests.post(
        local_stack.base_url + "/webchat/v1/sessions",
        json={},
        headers={"Origin": "https://evil.example"},
        timeout=15,
    )
    assert other.status_code == 403
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_conversation_over_the_socket(local_stack):
    session = new_session(local_stack, {"name": "Ada"})

    async def chat() -> None:
        async with websockets.connect(socket_url(session)) as ws:
            await ws.send(json.dumps({"action": "history"}))
            assert (await receive(ws, "history"))["messages"] == []
            send = {"action": "send", "client_message_id": "c-1", "text": "Is it in stock?"}
            await ws.send(json.dumps(send))
            ack = await receive(ws, "ack")
            await ws.send(json.dumps(send))  # the widget re-sends after a reconnect
            assert (await receive(ws, "ack"))["message_id"] == ack["message_id"]

            customer_id = customer_id_of(local_stack, session["visitor_id"])
            timeline = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()
            assert [m["id"] for m in timeline["items"]] == [ack["message_id"]]

            posted = time.monotonic()
            reply = api(
                local_stack,
                "POST",
                f"/v1/customers/{customer_id}/messages",
                json={"text": "Yes, 3 left.", "channel": "webchat"},
            )
            assert reply.status_code == 202, reply.text
            pushed = await receive(ws, "message")
            assert time.monotonic() - posted < 10
            assert pushed["message"]["id"] == reply.json()["id"]
            assert pushed["message"]["parts"] == [{"type": "text", "text": "Yes, 3 left."}]
            await ws.send(json.dumps({"action": "read", "message_id": pushed["message"]["id"]}))
            for _ in range(50):
                stored = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()
                if stored["items"][0]["status"] == "read":
                    break
                await asyncio.sleep(0.1)
            assert [c["status"] for c in stored["items"][0]["status_history"]] == [
                "queued",
                "sent",
                "delivered",
                "read",
            ]

    asyncio.run(chat())


def test_bad_input_gets_error_frames_and_leaves_other_sockets_alone(local_stack):
    hostile, bystander = new_session(local_stack), new_session(local_stack)

    async def attack() -> None:
        async with (
            websockets.connect(socket_url(bystander)) as calm,
            websockets.connect(socket_url(hostile), max_size=None) as ws,
        ):
            await ws.send(
                json.dumps({"action": "send", "client_message_id": "c", "text": "x" * 40000})
            )
            assert (await receive(ws, "error"))["code"] == "frame_too_large"
            await ws.send("not json")
            assert (await receive(ws, "error"))["code"] == "malformed_frame"
            # Naming the bystander's messages or visitor id gets nothing of theirs.
            await ws.send(
                json.dumps({"action": "read", "message_id": "01AAAAAAAAAAAAAAAAAAAAAAAA"})
            )
            assert (await receive(ws, "error"))["code"] == "not_found"
            await ws.send(json.dumps({"action": "history", "visitor_id": bystander["visitor_id"]}))
            assert (await receive(ws, "history"))["messages"] == []
            # Both sockets still work.
            await calm.send(json.dumps({"action": "history"}))
            assert (await receive(calm, "history"))["type"] == "history"
            await ws.send(json.dumps({"action": "history"}))
            assert (await receive(ws, "history"))["type"] == "history"

    asyncio.run(attack())


def test_forged_and_stale_tokens_cannot_connect(local_stack):
    session = new_session(local_stack)
    payload, _, signature = session["token"].partition(".")

    async def connect(url: str) -> int:
        try:
            async with websockets.connect(url):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    forged = session["websocket_url"] + "?token=" + payload + "." + signature[::-1]
    assert asyncio.run(connect(forged)) == 403
    assert asyncio.run(connect(session["websocket_url"])) == 403


def test_a_reply_while_offline_is_in_the_history_of_the_next_connect(local_stack):
    session = new_session(local_stack)

    async def first_visit() -> str:
        async with websockets.connect(socket_url(session)) as ws:
            await ws.send(json.dumps({"action": "send", "client_message_id": "c-1", "text": "hi"}))
            return (await receive(ws, "ack"))["message_id"]

    asyncio.run(first_visit())
    customer_id = customer_id_of(local_stack, session["visitor_id"])
    reply = api(
        local_stack, "POST", f"/v1/customers/{customer_id}/messages", json={"text": "later"}
    )
    assert reply.status_code == 202
    for _ in range(100):
        timeline = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()
        if timeline["items"][0]["status"] != "queued":
            break
        time.sleep(0.1)
    assert timeline["items"][0]["status"] == "sent"  # nobody to push to: it waits

    returning = requests.post(
        local_stack.base_url + "/webchat/v1/sessions",
        json={"visitor_id": session["visitor_id"]},
        headers={"Authorization": "Bearer " + session["token"]},
        timeout=15,
    ).json()
    assert returning["visitor_id"] == session["visitor_id"]

    async def second_visit() -> list[str]:
        async with websockets.connect(socket_url(returning)) as ws:
            await ws.send(json.dumps({"action": "history"}))
            return [m["parts"][0]["text"] for m in (await receive(ws, "history"))["messages"]]

    assert asyncio.run(second_visit()) == ["later", "hi"]


def test_a_verified_visitor_shares_the_customer_of_their_email(local_stack):
    secret = banner_value(local_stack, r"WEBCHAT_IDENTITY_SECRET=(\S+)")
    address = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    mail = (
        f"From: Ada <{address}>\r\nTo: support@threadline.localhost\r\n"
        f"Subject: Order\r\nMessage-ID: <{uuid.uuid4().hex}@example.com>\r\n\r\n"
        "Where is my order?\r\n"
    ).encode()
    delivered = requests.post(local_stack.base_url + "/_dev/email", data=mail, timeout=30)
    assert delivered.status_code == 202, delivered.text
    by_email = api(local_stack, "GET", "/v1/customers", params={"identity": f"email:{address}"})
    for _ in range(50):
        if by_email.status_code == 200:
            break
        time.sleep(0.2)
        by_email = api(local_stack, "GET", "/v1/customers", params={"identity": f"email:{address}"})
    customer_id = by_email.json()["id"]

    digest = hmac.new(secret.encode(), address.encode(), hashlib.sha256).hexdigest()
    session = new_session(local_stack, {"email": address, "user_hash": digest})
    assert customer_id_of(local_stack, session["visitor_id"]) == customer_id

    async def chat() -> dict:
        async with websockets.connect(socket_url(session)) as ws:
            await ws.send(json.dumps({"action": "send", "client_message_id": "c", "text": "also"}))
            await receive(ws, "ack")
            for channel in ("email", "webchat"):
                answer = api(
                    local_stack,
                    "POST",
                    f"/v1/customers/{customer_id}/messages",
                    json={"text": f"on {channel}", "channel": channel},
                )
                assert answer.status_code == 202, answer.text
            return await receive(ws, "message")

    pushed = asyncio.run(chat())
    assert pushed["message"]["parts"][0]["text"] == "on webchat"
    timeline = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()
    assert {m["channel"] for m in timeline["items"]} == {"email", "webchat"}
