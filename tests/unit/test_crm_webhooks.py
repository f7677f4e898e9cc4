"""CRM webhooks: signing, backoff, fan-out matching, and one delivery's outcomes.

The deliverer is exercised against a real HTTP server on 127.0.0.1 (answers
programmed per test) through the real threadline.http client; only the table is
an in-memory stand-in (the moto integration tests cover the real one).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from threadline.crm_webhooks import (
    MAX_RETRY_DELAY_SECONDS,
    Deliverer,
    DeliveryJob,
    DeliverySettings,
    RetryDelivery,
    backoff_seconds,
    event_from_envelope,
    jobs_for,
    signed_headers,
)
from threadline.http import HttpClient
from threadline.subscriptions import (
    DeliveryAttempt,
    DeliveryStatus,
    SigningSecrets,
    Subscription,
    SubscriptionRequest,
    SubscriptionState,
    new_secret,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# --------------------------------------------------------------------- signing


def test_a_new_secret_is_a_standard_webhooks_secret_of_32_random_bytes():
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


@given(
    event_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    payload=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=5),
)
def test_signed_headers_verify_with_the_standardwebhooks_library(event_id, payload):
    secret = new_secret()
    body = json.dumps(payload)
    now = datetime.now(UTC)
    headers = signed_headers(secret, event_id, body, now)
    assert headers["webhook-id"] == event_id
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert Webhook(secret).verify(body, headers) == payload


def test_a_signature_fails_for_another_secret_body_id_or_an_old_timestamp():
    secret = new_secret()
    body = '{"id":"e1","type":"message.received"}'
    now = datetime.now(UTC)
    headers = signed_headers(secret, "e1", body, now)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("e1", "e2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "e2"})
    stale = signed_headers(secret, "e1", body, now - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


# --------------------------------------------------------------------- backoff


def test_the_default_schedule_grows_fourfold_from_five_seconds():
    assert [backoff_seconds(n) for n in range(1, 8)] == [5, 20, 80, 320, 1280, 5120, 20480]


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0.5, max_value=600))
def test_backoff_never_shrinks_and_stays_within_what_sqs_can_hide(attempt, base):
    delay = backoff_seconds(attempt, base=base)
    assert 1 <= delay <= MAX_RETRY_DELAY_SECONDS
    assert backoff_seconds(attempt + 1, base=base) >= delay


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(0.0, 1), (2.5, 3), (120.0, 120), (10**9, 43200)]
)
def test_retry_after_replaces_the_schedule_within_bounds(retry_after, expected):
    assert backoff_seconds(6, retry_after) == expected


# --------------------------------------------------------------------- fan-out


def subscription(sid: str, types: list[str], state: str = "enabled") -> Subscription:
    return Subscription(
        id=sid,
        url="https://crm.example.com/hooks",
        event_types=types,
        state=SubscriptionState(state),
        created_at=NOW,
    )


def envelope(detail: dict[str, Any]) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "7c9f1b2e-0000-4000-8000-000000000001",
            "detail-type": detail["type"],
            "source": "threadline",
            "account": "123456789012",
            "time": "2026-11-23T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def test_each_subscription_that_wants_an_event_gets_its_own_job():
    detail = {"id": "ev1", "type": "message.sent", "customer_id": "C1", "schema_version": "1"}
    detail_type, parsed = event_from_envelope(envelope(detail))
    subs = [
        subscription("S-all", []),
        subscription("S-sent", ["message.sent"]),
        subscription("S-received", ["message.received"]),
        subscription("S-off", [], state="disabled"),
    ]
    jobs = jobs_for(detail_type, parsed, subs)
    assert [job.subscription_id for job in jobs] == ["S-all", "S-sent"]
    assert {job.group_id for job in jobs} == {"S-all:C1", "S-sent:C1"}
    assert {job.deduplication_id for job in jobs} == {"S-all:ev1", "S-sent:ev1"}
    assert json.loads(jobs[0].payload) == detail


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"detail-type": "message.sent"}),
        json.dumps({"detail-type": "message.sent", "detail": "x"}),
        json.dumps({"detail-type": "message.sent", "detail": {"type": "message.sent"}}),
    ],
)
def test_a_body_that_is_not_a_threadline_event_is_refused(body):
    with pytest.raises(ValueError):
        event_from_envelope(body)


def test_a_subscription_request_keeps_known_event_types_sorted_and_unique():
    request = SubscriptionRequest(
        url="https://crm.example.com/hooks",
        event_types=["message.sent", "message.received", "message.sent"],
    )
    assert request.event_types == ["message.received", "message.sent"]
    with pytest.raises(ValueError):
        SubscriptionRequest(url="https://crm.example.com/hooks", event_types=["message.recieved"])


# --------------------------------------------------------------------- delivery


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that answers with programmed statuses."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks"


class MemoryStore:
    """The SubscriptionStore calls the deliverer makes, kept in memory."""

    def __init__(self, sub: Subscription, secret: str) -> None:
        self.subscription = sub
        self.secret = secret
        self.attempts: dict[str, int] = {}
        self.outcomes: dict[str, str] = {}
        self.history: list[DeliveryAttempt] = []
        self.disabled: list[str] = []
        self.reads = 0
        self.previous: str | None = None
        self.previous_until: datetime | None = None
        self.payloads: dict[str, str] = {}

    def get_with_secrets(self, subscription_id: str) -> tuple[Subscription, SigningSecrets] | None:
        self.reads += 1
        if subscription_id != self.subscription.id:
            return None
        return self.subscription, SigningSecrets(self.secret, self.previous, self.previous_until)

    def claim_attempt(self, subscription_id: str, event_id: str, *, now: datetime) -> int | None:
        if event_id in self.outcomes:
            return None
        self.attempts[event_id] = self.attempts.get(event_id, 0) + 1
        return self.attempts[event_id]

    def record_attempt(self, attempt: DeliveryAttempt, *, payload: str | None = None) -> None:
        self.history.append(attempt)
        if payload is not None:
            self.payloads[attempt.event_id] = payload
        if attempt.status is not DeliveryStatus.RETRYING:
            self.outcomes[attempt.event_id] = attempt.status.value

    def disable(self, subscription_id: str, reason: str, *, now: datetime) -> None:
        self.disabled.append(reason)
        self.subscription = self.subscription.model_copy(
            update={"state": SubscriptionState.DISABLED}
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def world(receiver):
    secret = new_secret()
    sub = Subscription(id="S1", url=receiver.url, event_types=[], state="enabled", created_at=NOW)
    store = MemoryStore(sub, secret)
    dead: list[tuple[DeliveryJob, str]] = []
    deliverer = Deliverer(
        store,  # type: ignore[arg-type]
        HttpClient(connect_timeout=1, read_timeout=1),
        DeliverySettings(max_attempts=3, retry_base_seconds=5, allow_private_targets=True),
        dead_letter=lambda job, reason: dead.append((job, reason)),
    )
    return deliverer, store, dead, secret


def job(event_id: str = "ev1") -> DeliveryJob:
    payload = json.dumps({"id": event_id, "type": "message.received", "customer_id": "C1"})
    return DeliveryJob(
        subscription_id="S1",
        event_id=event_id,
        event_type="message.received",
        customer_id="C1",
        payload=payload,
    )


def test_a_2xx_is_delivered_once_and_a_redelivered_job_sends_nothing(world, receiver):
    deliverer, store, dead, secret = world
    assert deliverer.deliver(job()) is DeliveryStatus.DELIVERED
    assert deliverer.deliver(job()) is None
    (request,) = receiver.requests
    headers, body = request
    assert Webhook(secret).verify(body, headers)["id"] == "ev1"
    (attempt,) = store.history
    assert (attempt.attempt, attempt.status, attempt.response_status) == (1, "delivered", 200)
    assert "ev1" not in (attempt.error or "")
    assert dead == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_retryable_answers_back_off_then_dead_letter_after_the_last_attempt(
    world, receiver, status
):
    deliverer, store, dead, _ = world
    receiver.answers = [(status, {})] * 3
    with pytest.raises(RetryDelivery) as first:
        deliverer.deliver(job())
    assert first.value.delay == 5
    with pytest.raises(RetryDelivery) as second:
        deliverer.deliver(job())
    assert second.value.delay == 20
    assert deliverer.deliver(job()) is DeliveryStatus.FAILED
    assert [(a.attempt, a.status.value) for a in store.history] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "failed"),
    ]
    assert store.history[0].next_attempt_at == store.history[0].attempted_at + timedelta(seconds=5)
    assert "gave up after 3 attempts" in (store.history[-1].error or "")
    ((dead_job, reason),) = dead
    assert dead_job.event_id == "ev1" and str(status) in reason
    # Every attempt carried the same webhook-id.
    assert {headers["webhook-id"] for headers, _ in receiver.requests} == {"ev1"}


def test_429_retry_after_is_honoured(world, receiver):
    deliverer, store, _, _ = world
    receiver.answers = [(429, {"Retry-After": "42"})]
    with pytest.raises(RetryDelivery) as retry:
        deliverer.deliver(job())
    assert retry.value.delay == 42
    assert store.history[0].response_status == 429


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 301])
def test_other_client_errors_and_redirects_fail_at_once(world, receiver, status):
    deliverer, store, dead, _ = world
    receiver.answers = [(status, {"Location": "http://127.0.0.1:1/elsewhere"})]
    assert deliverer.deliver(job()) is DeliveryStatus.FAILED
    assert len(receiver.requests) == 1
    (attempt,) = store.history
    assert (attempt.status, attempt.response_status) == ("failed", status)
    assert dead == []  # a final answer from the receiver is history, not an incident


def test_410_disables_the_subscription_and_later_jobs_are_dropped(world, receiver):
    deliverer, store, _, _ = world
    receiver.answers = [(410, {})]
    assert deliverer.deliver(job("ev1")) is DeliveryStatus.GONE
    assert store.subscription.state is SubscriptionState.DISABLED
    assert "410" in store.disabled[0]
    assert deliverer.deliver(job("ev2")) is None
    assert len(receiver.requests) == 1


def test_a_refused_connection_is_retried(world, receiver):
    deliverer, store, _, _ = world
    receiver.server.shutdown()
    receiver.server.server_close()
    with pytest.raises(RetryDelivery):
        deliverer.deliver(job())
    assert store.history[0].response_status is None
    assert "could not connect" in (store.history[0].error or "")


def test_a_private_target_is_refused_at_delivery_time_when_not_allowed(world, receiver):
    deliverer, store, _, _ = world
    deliverer.settings = DeliverySettings(allow_private_targets=False)
    store.subscription = store.subscription.model_copy(
        update={"url": "https://rebound.example.com/hooks"}
    )
    # The name resolved to a public address when subscribed; now it points inside.
    deliverer.resolver = lambda host, port: ["169.254.169.254"]
    assert deliverer.deliver(job()) is DeliveryStatus.FAILED
    assert receiver.requests == []
    assert store.history[0].error is not None and "private" in store.history[0].error


def test_a_deleted_subscription_drops_its_jobs(world, receiver):
    deliverer, store, _, _ = world
    other = job().model_copy(update={"subscription_id": "S-gone"})
    assert deliverer.deliver(other) is None
    assert receiver.requests == [] and store.history == []


def test_a_batch_reads_each_subscription_once_and_the_next_batch_reads_it_again(world, receiver):
    deliverer, store, _, _ = world
    deliverer.start_batch()
    for event_id in ("ev1", "ev2", "ev3"):
        assert deliverer.deliver(job(event_id)) is DeliveryStatus.DELIVERED
    assert store.reads == 1
    # Deleted between batches: the next batch sees it.
    store.subscription = store.subscription.model_copy(update={"id": "S-other"})
    deliverer.start_batch()
    assert deliverer.deliver(job("ev4")) is None
    assert store.reads == 2
    assert len(receiver.requests) == 3


# ------------------------------------------------------------- secret rotation


def test_during_the_overlap_both_secrets_sign_and_each_verifies_alone():
    old, new = new_secret(), new_secret()
    body = json.dumps({"id": "e1"})
    now = datetime.now(UTC)  # the library refuses old timestamps
    secrets = SigningSecrets(new, previous=old, previous_until=now + timedelta(hours=24))
    signing = secrets.at(now)
    headers = signed_headers(signing[0], "e1", body, now, also=signing[1:])
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver that still has the old secret, and one that has the new one.
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_after_the_overlap_only_the_new_secret_signs():
    old, new = new_secret(), new_secret()
    secrets = SigningSecrets(new, previous=old, previous_until=NOW)
    assert secrets.at(NOW) == [new]
    assert secrets.at(NOW - timedelta(seconds=1)) == [new, old]
    assert SigningSecrets(new).at(NOW) == [new]


def test_the_deliverer_signs_with_both_secrets_during_a_rotation(world, receiver):
    deliverer, store, _, secret = world
    store.previous, store.secret = secret, new_secret()
    store.previous_until = datetime.now(UTC) + timedelta(hours=1)
    assert deliverer.deliver(job()) is DeliveryStatus.DELIVERED
    ((headers, body),) = receiver.requests
    assert Webhook(secret).verify(body, headers)["id"] == "ev1"
    assert Webhook(store.secret).verify(body, headers)["id"] == "ev1"


def test_a_final_failure_keeps_the_payload_for_a_redelivery_and_a_success_does_not(world, receiver):
    deliverer, store, _, _ = world
    receiver.answers = [(400, {}), (204, {})]
    assert deliverer.deliver(job("ev-failed")) is DeliveryStatus.FAILED
    assert deliverer.deliver(job("ev-ok")) is DeliveryStatus.DELIVERED
    assert store.payloads == {"ev-failed": job("ev-failed").payload}


def test_a_redelivery_is_a_new_message_for_the_fifo_queue_deduplication():
    first = job()
    again = first.model_copy(update={"redelivery": 1})
    assert first.deduplication_id == "S1:ev1"
    assert again.deduplication_id == "S1:ev1:r1"
    assert again.group_id == first.group_id
