"""Signed CRM webhooks end to end over HTTP: a real receiver on 127.0.0.1 subscribes
through the API, and the local stack's own pollers carry each event from the table's
stream through the publisher, EventBridge, the FIFO events queue, the fan-out, the
FIFO delivery queue and the delivery worker to it.

The stack is shared by the session: each test uses its own phone numbers
(+1555129xxxx), looks only at its own customers' events, and deletes its
subscriptions when it ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from tests.e2e.conftest import RunningStack
from tests.e2e.test_outbound_e2e import (
    ACCOUNT_SID,
    api,
    customer_of,
    events,
    eventually,
    form_of,
    inbound,
    outbox,
    queue_reply,
    reaches,
    schema_validator,
    signed_post,
)

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """A CRM's webhook endpoint: answers with ``answers`` in turn, then ``default``."""

    def __init__(self, answers: list[int] | None = None, default: int = 200) -> None:
        self.answers = list(answers or [])
        self.default = default
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver.answers.pop(0) if receiver.answers else receiver.default
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/crm/hooks"

    def of_customer(self, customer_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.event.get("customer_id") == customer_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscribe(local_stack: RunningStack) -> Iterator[Any]:
    made: list[tuple[str, Receiver]] = []

    def make(receiver: Receiver, event_types: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"url": receiver.url, "description": "e2e receiver"}
        if event_types is not None:
            body["event_types"] = event_types
        response = api(local_stack, "POST", "/v1/subscriptions", json=body)
        assert response.status_code == 201, response.text
        created = dict(response.json())
        made.append((created["id"], receiver))
        return created

    yield make
    for subscription_id, receiver in made:
        api(local_stack, "DELETE", f"/v1/subscriptions/{subscription_id}")
        receiver.close()


def deliveries(stack: RunningStack, subscription_id: str) -> list[dict[str, Any]]:
    response = api(stack, "GET", f"/v1/subscriptions/{subscription_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def verified(secret: str, received: Received) -> dict[str, Any]:
    payload = Webhook(secret).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == payload["id"]
    assert received.headers["content-type"] == "application/json"
    return dict(payload)


# -------------------------------------------------------------------------- tests


def test_an_sms_a_reply_and_its_status_reach_the_crm_signed_valid_and_in_order(
    local_stack, subscribe
):
    receiver = Receiver()
    subscription = subscribe(receiver)
    secret = subscription["secret"]
    assert secret.startswith("whsec_")

    number = "+15551290001"
    inbound(local_stack, number, "Do you ship to Lisbon?")
    customer_id = customer_of(local_stack, number)
    message_id = queue_reply(local_stack, customer_id, {"text": "We do."})
    sid = reaches(local_stack, customer_id, message_id, "sent")["provider_message_id"]
    callback = form_of(outbox(local_stack, number)[0])["StatusCallback"]
    delivered = {
        "MessageSid": sid,
        "MessageStatus": "delivered",
        "AccountSid": ACCOUNT_SID,
        "To": number,
    }
    assert signed_post(local_stack, callback, delivered).status_code == 200

    def the_delivered_status() -> list[Received] | None:
        got = receiver.of_customer(customer_id)
        done = any(
            r.event["type"] == "message.status_changed"
            and r.event["message"]["status"] == "delivered"
            for r in got
        )
        return got if done else None

    got = eventually(the_delivered_status, "the delivered status at the CRM", WAIT_SECONDS)
    events = [verified(secret, r) for r in got]
    for event in events:
        errors = sorted(schema_validator(event["type"]).iter_errors(event), key=str)
        assert not errors, (event["type"], [e.message for e in errors])
        assert event["customer_id"] == customer_id
    # Each event once: the receiver acknowledged every request.
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    kinds = [
        (e["type"], e["message"]["status"]) if e["type"].startswith("message.") else (e["type"],)
        for e in events
    ]
    order = [
        ("message.received", "received"),
        ("message.queued", "queued"),
        ("message.sent", "sent"),
        ("message.status_changed", "sent"),
        ("message.status_changed", "delivered"),
    ]
    assert [k for k in kinds if k in order] == order
    assert ("customer.created",) in kinds
    # A forged or altered body does not verify.
    forged = Received(got[0].headers, got[0].body.replace(b"Lisbon", b"Lisboa"), 200)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(forged.body, forged.headers)
    history = deliveries(local_stack, subscription["id"])
    assert {d["status"] for d in history if d["customer_id"] == customer_id} == {"delivered"}


def test_a_receiver_that_fails_twice_acknowledges_each_event_once(local_stack, subscribe):
    receiver = Receiver(answers=[500, 500])
    subscription = subscribe(receiver, ["message.received"])
    number = "+15551290002"
    inbound(local_stack, number, "First")
    customer_id = customer_of(local_stack, number)
    inbound(local_stack, number, "Second")

    def both_acknowledged() -> list[Received] | None:
        got = receiver.of_customer(customer_id)
        return got if sum(r.answered == 200 for r in got) >= 2 else None

    eventually(both_acknowledged, "two acknowledged events", WAIT_SECONDS)
    # Deliveries to one subscription go in order: once a third event is acknowledged,
    # anything sent again for the first two would have arrived before it.
    inbound(local_stack, number, "Third")

    def text(received: Received) -> str:
        return str(verified(subscription["secret"], received)["message"]["parts"][0]["text"])

    def third_acknowledged() -> bool:
        return any(
            text(r) == "Third" and r.answered == 200 for r in receiver.of_customer(customer_id)
        )

    eventually(third_acknowledged, "the third event acknowledged", WAIT_SECONDS)
    got = [r for r in receiver.of_customer(customer_id) if text(r) != "Third"]
    first_id = got[0].headers["webhook-id"]
    # The first event: tried three times with the same webhook-id, then accepted once.
    assert [(r.headers["webhook-id"], r.answered) for r in got[:3]] == [
        (first_id, 500),
        (first_id, 500),
        (first_id, 200),
    ]
    acknowledged = [r.headers["webhook-id"] for r in got if r.answered == 200]
    assert len(acknowledged) == len(set(acknowledged)) == 2
    # In order: the second message waited behind the first one's retries.
    assert [text(r) for r in got] == ["First", "First", "First", "Second"]

    history = [d for d in deliveries(local_stack, subscription["id"]) if d["event_id"] == first_id]
    history.sort(key=lambda d: d["attempt"])
    assert [(d["attempt"], d["status"], d["response_status"]) for d in history] == [
        (1, "retrying", 500),
        (2, "retrying", 500),
        (3, "delivered", 200),
    ]
    assert history[0]["next_attempt_at"] is not None
    assert all("body" not in d and "payload" not in d for d in history)


def test_a_receiver_answering_410_is_disabled(local_stack, subscribe):
    receiver = Receiver(default=410)
    subscription = subscribe(receiver, ["message.received"])
    number = "+15551290003"
    inbound(local_stack, number, "Hello?")
    customer_id = customer_of(local_stack, number)

    def disabled() -> dict[str, Any] | None:
        found = api(local_stack, "GET", f"/v1/subscriptions/{subscription['id']}").json()
        return found if found["state"] == "disabled" else None

    found = eventually(disabled, "the subscription disabled", WAIT_SECONDS)
    assert "410" in found["disabled_reason"]
    assert "secret" not in found
    (attempt,) = deliveries(local_stack, subscription["id"])
    assert (attempt["status"], attempt["response_status"]) == ("gone", 410)

    # An active subscription to the same events: once it has the next event, the
    # fan-out has handled it for every subscription.
    active = Receiver()
    subscribe(active, ["message.received"])
    inbound(local_stack, number, "Anyone there?")
    eventually(lambda: active.of_customer(customer_id) or None, "the event", WAIT_SECONDS)
    assert len(receiver.of_customer(customer_id)) == 1
    assert len(deliveries(local_stack, subscription["id"])) == 1


def test_events_queued_while_the_delivery_worker_is_down_arrive_after_its_restart(
    local_stack, subscribe
):
    receiver = Receiver()
    subscription = subscribe(receiver, ["message.received"])
    control = local_stack.base_url + "/_dev/functions/WebhookDeliveryFunction"
    stopped = requests.post(control + "/stop", timeout=10)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped"
    try:
        number = "+15551290004"
        for text in ("one", "two", "three"):
            inbound(local_stack, number, text)
        customer_id = customer_of(local_stack, number)

        def published() -> list[dict[str, Any]] | None:
            found = events(local_stack, type="message.received", customer_id=customer_id)
            return found if len(found) >= 3 else None

        eventually(published, "the three events published", WAIT_SECONDS)
        assert receiver.of_customer(customer_id) == []
    finally:
        started = requests.post(control + "/start", timeout=10)
        assert started.status_code == 200, started.text

    def all_three() -> list[Received] | None:
        got = receiver.of_customer(customer_id)
        return got if len(got) >= 3 else None

    got = eventually(all_three, "the events queued meanwhile", WAIT_SECONDS)
    texts = [verified(subscription["secret"], r)["message"]["parts"][0]["text"] for r in got]
    assert texts == ["one", "two", "three"]


def test_subscriptions_are_listed_read_and_deleted_without_their_secret(local_stack, subscribe):
    receiver = Receiver()
    created = subscribe(receiver, ["message.sent", "message.received"])
    assert created["event_types"] == ["message.received", "message.sent"]
    assert created["state"] == "enabled"

    listed = api(local_stack, "GET", "/v1/subscriptions").json()["items"]
    mine = [s for s in listed if s["id"] == created["id"]]
    assert len(mine) == 1 and "secret" not in mine[0]
    assert api(local_stack, "GET", f"/v1/subscriptions/{created['id']}").json()["url"] == (
        receiver.url
    )

    refused = api(local_stack, "POST", "/v1/subscriptions", json={"url": "ftp://127.0.0.1/x"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "url_not_allowed"
    unknown = api(
        local_stack,
        "POST",
        "/v1/subscriptions",
        json={"url": receiver.url, "event_types": ["message.recieved"]},
    )
    assert unknown.status_code == 400, unknown.text

    assert api(local_stack, "DELETE", f"/v1/subscriptions/{created['id']}").status_code == 204
    assert api(local_stack, "GET", f"/v1/subscriptions/{created['id']}").status_code == 404
    assert api(local_stack, "DELETE", f"/v1/subscriptions/{created['id']}").status_code == 404
    gone = api(local_stack, "GET", f"/v1/subscriptions/{created['id']}/deliveries")
    assert gone.status_code == 404
