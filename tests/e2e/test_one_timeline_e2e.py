"""Slack and e-mail from one person on one timeline, replies on both channels, and a
bounce that stops e-mail: over HTTP against the local stack (`make dev`)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from email import message_from_string, policy
from typing import Any, TypeVar

import requests

from tests.e2e.conftest import RunningStack
from tests.unit import email_messages as em
from tests.unit import slack_payloads as sp

T = TypeVar("T")
DEADLINE_SECONDS = 30.0


def eventually(fetch: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        found = fetch()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def api(stack: RunningStack, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    return requests.request(method, stack.base_url + path, headers=headers, timeout=10, **kwargs)


def slack_message(stack: RunningStack, user: str, text: str, thread_ts: str) -> None:
    ts = f"{int(time.time())}.{secrets.randbelow(10**6):06d}"
    payload = sp.variant(
        sp.THREAD_REPLY, user=user, text=text, ts=ts, event_ts=ts, thread_ts=thread_ts
    )
    payload["event_id"] = "Ev" + secrets.token_hex(5).upper()
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        **sp.sign(body, secret=stack.slack_signing_secret),
    }
    answer = requests.post(stack.base_url + sp.PATH, data=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def outbox(stack: RunningStack, provider: str, to: str) -> list[dict[str, Any]]:
    answer = requests.get(
        stack.base_url + "/_dev/outbox", params={"provider": provider, "to": to}, timeout=10
    )
    assert answer.status_code == 200
    return list(answer.json())


def message(stack: RunningStack, customer_id: str, message_id: str) -> dict[str, Any] | None:
    items = api(stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["items"]
    return next((m for m in items if m["id"] == message_id), None)


def reply(stack: RunningStack, customer_id: str, channel: str, text: str) -> requests.Response:
    return api(
        stack,
        "POST",
        f"/v1/customers/{customer_id}/messages",
        json={"text": text, "channel": channel},
    )


def test_slack_and_email_share_a_timeline_and_replies_reach_both(local_stack):
    stack = local_stack
    address = "ana@example.com"
    user = "U" + secrets.token_hex(4).upper()
    added = requests.post(
        stack.base_url + "/_dev/sandbox/slack/users",
        json={"id": user, "email": address, "real_name": "Ana Example", "team_id": sp.TEAM},
        timeout=10,
    )
    assert added.status_code == 204, added.text
    thread = f"{int(time.time()) - 60}.000100"
    slack_message(stack, user, "Is my order on its way?", thread)

    mail_id = f"<{secrets.token_hex(8)}@mail.gmail.com>"
    raw = em.ALTERNATIVE.replace(b"Ada@Example.COM", address.encode()).replace(
        b"<CAH+abc123@mail.gmail.com>", mail_id.encode()
    )
    dropped = requests.post(stack.base_url + "/_dev/email", data=raw, timeout=30)
    assert dropped.status_code == 202 and dropped.json()[0]["result"]["filed"] == 1

    by_email = api(stack, "GET", "/v1/customers", params={"identity": f"email:{address}"})
    by_slack = api(stack, "GET", "/v1/customers", params={"identity": f"slack:{sp.TEAM}:{user}"})
    assert by_email.status_code == by_slack.status_code == 200
    customer_id = by_email.json()["id"]
    assert by_slack.json()["id"] == customer_id
    items = api(stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["items"]
    assert sorted(m["channel"] for m in items) == ["email", "slack"]

    # A reply on Slack goes to the customer's channel, in their thread.
    queued = reply(stack, customer_id, "slack", "It left the warehouse today.")
    assert queued.status_code == 202, queued.text
    [post] = eventually(lambda: outbox(stack, "slack", sp.CHANNEL) or None, "the Slack post")
    assert post["path"].endswith("/slack/api/chat.postMessage")
    assert post["form"]["thread_ts"] == [thread]
    assert post["form"]["text"] == ["It left the warehouse today."]

    # A reply by e-mail reaches the embedded SES, threaded under the customer's mail.
    queued = reply(stack, customer_id, "email", "Tracking number: 42.")
    assert queued.status_code == 202, queued.text
    [mail] = eventually(lambda: outbox(stack, "ses", address) or None, "the e-mail reply")
    mime = message_from_string(mail["form"]["Raw"][0], policy=policy.default)
    assert mime["In-Reply-To"] == mail_id
    assert mime["References"] == mail_id
    assert mime["Subject"] == "Re: My order has not arrived"
    sent = eventually(
        lambda: (
            (m := message(stack, customer_id, queued.json()["id"])) and m["status"] == "sent" and m
        ),
        "the e-mail reply sent",
    )
    assert sent["provider_message_id"] == mail["message_id"]


def test_a_bounce_stops_the_next_email_reply_without_calling_ses(local_stack):
    stack = local_stack
    address = f"bounce.{secrets.token_hex(3)}@example.com"
    raw = em.ALTERNATIVE.replace(b"Ada@Example.COM", address.encode()).replace(
        b"<CAH+abc123@mail.gmail.com>", f"<{secrets.token_hex(8)}@mail.example.com>".encode()
    )
    assert requests.post(stack.base_url + "/_dev/email", data=raw, timeout=30).status_code == 202
    customer_id = api(
        stack, "GET", "/v1/customers", params={"identity": f"email:{address}"}
    ).json()["id"]
    first = reply(stack, customer_id, "email", "We are on it.").json()
    [mail] = eventually(lambda: outbox(stack, "ses", address) or None, "the first reply")

    published = requests.post(
        stack.base_url + "/_dev/email/feedback",
        json={"type": "Bounce", "message_id": mail["message_id"]},
        timeout=10,
    )
    assert published.status_code == 202, published.text
    failed = eventually(
        lambda: (m := message(stack, customer_id, first["id"])) and m["status"] == "failed" and m,
        "the bounced reply failed",
    )
    assert failed["status_history"][-1]["error_code"] == "email_bounced_permanent"

    refused = reply(stack, customer_id, "email", "Hello again?")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "email_undeliverable"
    # Refused before anything was queued: no reply on the timeline, so none to send.
    texts = [
        part.get("text")
        for item in api(stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["items"]
        for part in item["parts"]
    ]
    assert "Hello again?" not in texts
    assert len(outbox(stack, "ses", address)) == 1


def test_feedback_requests_the_stack_cannot_publish_are_refused(local_stack):
    url = local_stack.base_url + "/_dev/email/feedback"
    assert requests.post(url, data=b"not json", timeout=10).status_code == 400
    assert (
        requests.post(url, json={"type": "Open", "message_id": "x"}, timeout=10).status_code == 400
    )
    unknown = requests.post(url, json={"type": "Bounce", "message_id": "nope"}, timeout=10)
    assert unknown.status_code == 400
    assert "recipients" in unknown.json()["message"]
    assert requests.get(url, timeout=10).status_code == 405
