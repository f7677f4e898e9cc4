"""CRM webhooks inside AWS (moto server): the subscriptions API with the deployed
stack's rules (https only, no private addresses), the history in the table, and
the hops bus -> events queue -> fan-out -> delivery queue -> delivery worker -> a
receiver on 127.0.0.1. The functions are the real handlers; only the queue polling
Lambda does is done here by hand."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import load_handler_module
from tests.integration.conftest import LambdaContext, http_api_event
from threadline.subscriptions import DeliveryAttempt, DeliveryStatus, SubscriptionStore

PUBLIC_URL = "https://93.184.215.14/crm/hooks"  # a literal public address: no DNS lookup


@pytest.fixture
def call_api(api_module):
    def call(
        method: str,
        path: str,
        body: Any = None,
        query: str = "",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        event = http_api_event(method, path, query=query)
        event["headers"].update(headers or {})
        event["routeKey"] = "ANY /v1/{proxy+}"
        if body is not None:
            event["headers"]["content-type"] = "application/json"
            event["body"] = json.dumps(body)
            event["isBase64Encoded"] = False
        response = api_module.lambda_handler(event, LambdaContext())
        text = response.get("body") or ""
        return response["statusCode"], json.loads(text) if text else None

    return call


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/crm/hooks",
        "https://127.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/hooks",
        "https://[fd12:3456::1]/hooks",
        "https://10.0.0.8/hooks",
        "https://localhost/hooks",
    ],
)
def test_the_deployed_stack_refuses_plain_http_and_private_targets(call_api, url):
    status, body = call_api("POST", "/v1/subscriptions", {"url": url})
    assert status == 422, body
    assert body["error"]["code"] == "url_not_allowed"


def test_a_subscription_shows_its_secret_once_and_keeps_it_in_the_table(call_api, aws):
    status, created = call_api(
        "POST",
        "/v1/subscriptions",
        {"url": PUBLIC_URL, "event_types": ["message.received"], "description": "HubSpot"},
    )
    assert status == 201, created
    assert created["secret"].startswith("whsec_")
    sid = created["id"]

    status, listed = call_api("GET", "/v1/subscriptions")
    assert status == 200
    (mine,) = [s for s in listed["items"] if s["id"] == sid]
    assert "secret" not in mine and mine["description"] == "HubSpot"
    status, one = call_api("GET", f"/v1/subscriptions/{sid}")
    assert status == 200 and "secret" not in one
    assert one["event_types"] == ["message.received"]

    item = aws.dynamodb.get_item(
        TableName=aws.table, Key={"pk": {"S": "SUBS"}, "sk": {"S": f"SUB#{sid}"}}
    )["Item"]
    assert item["secret"]["S"] == created["secret"]

    assert call_api("DELETE", f"/v1/subscriptions/{sid}")[0] == 204
    assert call_api("GET", f"/v1/subscriptions/{sid}")[0] == 404
    assert call_api("DELETE", f"/v1/subscriptions/{sid}")[0] == 404


def test_a_subscription_retried_with_its_idempotency_key_is_created_once(call_api):
    body = {"url": PUBLIC_URL, "description": "retried"}
    key = {"idempotency-key": "sub-" + os.urandom(8).hex()}
    first_status, first = call_api("POST", "/v1/subscriptions", body, headers=key)
    again_status, again = call_api("POST", "/v1/subscriptions", body, headers=key)
    assert (first_status, again_status) == (201, 201)
    assert (again["id"], again["secret"]) == (first["id"], first["secret"])
    listed = call_api("GET", "/v1/subscriptions")[1]["items"]
    assert [s["id"] for s in listed if s["description"] == "retried"] == [first["id"]]

    other = {"url": PUBLIC_URL, "description": "another body"}
    status, refused = call_api("POST", "/v1/subscriptions", other, headers=key)
    assert status == 422 and refused["error"]["code"] == "idempotency_key_reused"
    assert call_api("DELETE", f"/v1/subscriptions/{first['id']}")[0] == 204


def test_a_5xx_after_the_write_leaves_no_subscription_whose_secret_nobody_has(call_api, api_module):
    """The answer is lost after DynamoDB took the write (a timeout, a crash): the
    client's retry with the same key gets that subscription and its secret."""
    from threadline.api.dependencies import subscription_store

    client = subscription_store().dynamodb
    lost = {"once": True}

    def lose_the_answer(**_: Any) -> None:
        if lost.pop("once", False):
            raise ConnectionResetError("the answer never came back")

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", lose_the_answer)
    try:
        body = {"url": PUBLIC_URL, "description": "answer lost"}
        key = {"idempotency-key": "lost-" + os.urandom(8).hex()}
        with pytest.raises(ConnectionResetError):
            call_api("POST", "/v1/subscriptions", body, headers=key)
        status, created = call_api("POST", "/v1/subscriptions", body, headers=key)
    finally:
        client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", lose_the_answer)
    assert status == 201, created
    stored = [
        s
        for s in call_api("GET", "/v1/subscriptions")[1]["items"]
        if s["description"] == "answer lost"
    ]
    assert [s["id"] for s in stored] == [created["id"]]
    assert call_api("DELETE", f"/v1/subscriptions/{created['id']}")[0] == 204


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": PUBLIC_URL, "event_types": ["message.recieved"]},
        {"url": PUBLIC_URL, "secret": "whsec_mine"},
        {"url": PUBLIC_URL, "event_types": "message.received"},
    ],
)
def test_malformed_subscription_requests_are_400(call_api, body):
    status, answer = call_api("POST", "/v1/subscriptions", body)
    assert status == 400, answer


def test_the_history_pages_newest_first_and_refuses_foreign_cursors(call_api, aws):
    status, created = call_api("POST", "/v1/subscriptions", {"url": PUBLIC_URL})
    assert status == 201
    sid = created["id"]
    store = SubscriptionStore(aws.table, dynamodb=aws.dynamodb)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for n in range(1, 4):
        at = start + timedelta(seconds=n)
        store.record_attempt(
            DeliveryAttempt(
                id=f"01JHISTORY{n:016d}",
                subscription_id=sid,
                event_id="ev-history",
                event_type="message.received",
                customer_id="C1",
                attempt=n,
                status=DeliveryStatus.RETRYING if n < 3 else DeliveryStatus.DELIVERED,
                response_status=503 if n < 3 else 204,
                duration_ms=12,
                attempted_at=at,
            )
        )
    status, first = call_api("GET", f"/v1/subscriptions/{sid}/deliveries", query="limit=2")
    assert status == 200, first
    assert [d["attempt"] for d in first["items"]] == [3, 2]
    status, second = call_api(
        "GET", f"/v1/subscriptions/{sid}/deliveries", query=f"limit=2&cursor={first['next_cursor']}"
    )
    assert [d["attempt"] for d in second["items"]] == [1]
    status, _ = call_api("GET", f"/v1/subscriptions/{sid}/deliveries", query="cursor=bm90LW91cnM")
    assert status == 400
    # The delivery is final: a redelivered job claims nothing.
    assert store.claim_attempt(sid, "ev-history") is None
    call_api("DELETE", f"/v1/subscriptions/{sid}")


# ------------------------------------------------------------ the delivery path


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks"


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(scope="module")
def fanout_module(function_env, aws_env):
    os.environ.update(function_env("WebhookFanoutFunction"))
    return load_handler_module("functions/webhook_fanout")


@pytest.fixture(scope="module")
def delivery_module(function_env, aws_env):
    # As a stack deployed with AllowPrivateWebhookTargets=true: the receivers are local.
    os.environ.update(function_env("WebhookDeliveryFunction"))
    os.environ["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
    return load_handler_module("functions/webhook_delivery")


class DeliveryContext(LambdaContext):
    """The delivery function's timeout is 60 s (template.yaml)."""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 59_000


def lambda_records(sqs, queue_url: str, queue_arn: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]


def test_one_failing_subscriber_does_not_hold_back_another(
    stack, aws, fanout_module, delivery_module, receivers
):
    sqs = stack.client("sqs")
    store = SubscriptionStore(aws.table, dynamodb=aws.dynamodb)
    from threadline.subscriptions import SubscriptionRequest

    # Other tests of the session put events on the bus too: start from empty queues.
    for queue in ("WebhookEventsQueue", "WebhookDeliveryQueue"):
        sqs.purge_queue(QueueUrl=stack.physical_id(queue))

    healthy, broken = Receiver(204), Receiver(503)
    receivers += [healthy, broken]
    good = store.create(SubscriptionRequest(url=healthy.url, event_types=["message.received"]))
    bad = store.create(SubscriptionRequest(url=broken.url, event_types=["message.received"]))
    other = store.create(SubscriptionRequest(url=healthy.url, event_types=["customer.created"]))

    detail = {
        "schema_version": "1",
        "id": "ev-integration-1",
        "type": "message.received",
        "occurred_at": "2026-11-23T12:00:00Z",
        "customer_id": "C-integration",
    }
    bus = stack.physical_id("EventBus")
    stack.client("events").put_events(
        Entries=[
            {
                "Source": "threadline",
                "DetailType": "message.received",
                "Detail": json.dumps(detail),
                "EventBusName": bus,
            }
        ]
    )
    events_queue = stack.physical_id("WebhookEventsQueue")
    events_arn = stack.resources["WebhookEventsQueue"].arn
    records = lambda_records(sqs, events_queue, events_arn)
    (record,) = records
    assert record["attributes"]["MessageGroupId"] == "threadline-events"
    assert fanout_module.lambda_handler({"Records": records}, LambdaContext()) == {
        "batchItemFailures": []
    }

    delivery_queue = stack.physical_id("WebhookDeliveryQueue")
    delivery_arn = stack.resources["WebhookDeliveryQueue"].arn
    jobs = lambda_records(sqs, delivery_queue, delivery_arn)
    groups = {r["attributes"]["MessageGroupId"]: r for r in jobs}
    assert set(groups) == {f"{good.id}:C-integration", f"{bad.id}:C-integration"}
    answer = delivery_module.lambda_handler({"Records": jobs}, DeliveryContext())
    failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    assert failed == {groups[f"{bad.id}:C-integration"]["messageId"]}

    (request,) = healthy.requests
    assert Webhook(good.secret).verify(request[1], request[0]) == detail
    assert len(broken.requests) == 1
    assert store.deliveries(good.id).items[0].status is DeliveryStatus.DELIVERED
    (retrying,) = store.deliveries(bad.id).items
    assert (retrying.status, retrying.response_status) == ("retrying", 503)
    assert store.deliveries(other.id).items == []

    # Near its timeout the worker starts no POST: the job comes straight back, untried.
    sqs.change_message_visibility(
        QueueUrl=delivery_queue,
        ReceiptHandle=groups[f"{bad.id}:C-integration"]["receiptHandle"],
        VisibilityTimeout=0,
    )
    (again,) = lambda_records(sqs, delivery_queue, delivery_arn)
    answer = delivery_module.lambda_handler({"Records": [again]}, LambdaContext())
    assert [item["itemIdentifier"] for item in answer["batchItemFailures"]] == [again["messageId"]]
    assert len(broken.requests) == 1
    assert len(store.deliveries(bad.id).items) == 1
    (back,) = lambda_records(sqs, delivery_queue, delivery_arn)
    assert back["messageId"] == again["messageId"]
    sqs.delete_message(QueueUrl=delivery_queue, ReceiptHandle=back["receiptHandle"])
    for subscription in (good, bad, other):
        store.delete(subscription.id)


def test_bodies_that_are_not_events_or_jobs_never_block_a_queue(
    stack, fanout_module, delivery_module
):
    sqs = stack.client("sqs")
    dead_letters = stack.physical_id("WebhookDeliveryDeadLetterQueue")
    sqs.purge_queue(QueueUrl=dead_letters)
    record = {
        "messageId": "m-malformed",
        "receiptHandle": "r",
        "body": '{"detail-type": "message.received"}',
        "attributes": {"MessageGroupId": "S1:C1", "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }
    # Skipped by the fan-out (logged), so later events are not held back.
    assert fanout_module.lambda_handler({"Records": [record]}, LambdaContext()) == {
        "batchItemFailures": []
    }
    # Parked in the dead-letter queue by the delivery worker, not retried for hours.
    answer = delivery_module.lambda_handler({"Records": [record]}, DeliveryContext())
    assert answer == {"batchItemFailures": []}
    (parked,) = sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(parked["Body"]) == {"body": record["body"], "reason": "not a delivery job"}


# ------------------------------------------------- operators: rotation, redelivery


def test_a_rotated_secret_signs_next_to_the_old_one_until_the_overlap_ends(
    call_api, aws, stack, delivery_module, receivers
):
    sqs = stack.client("sqs")
    receiver = Receiver(204)
    receivers.append(receiver)
    store = SubscriptionStore(aws.table, dynamodb=aws.dynamodb)
    from threadline.subscriptions import SubscriptionRequest

    created = store.create(SubscriptionRequest(url=receiver.url))
    status, rotated = call_api(
        "POST", f"/v1/subscriptions/{created.id}/rotate-secret", query="overlap_hours=2"
    )
    assert status == 200, rotated
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created.secret
    until = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert timedelta(hours=1, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=2)

    delivery_queue = stack.physical_id("WebhookDeliveryQueue")
    drain(sqs, delivery_queue)
    job = delivery_job(created.id, "ev-rotation-1")
    sqs.send_message(
        QueueUrl=delivery_queue,
        MessageBody=job.model_dump_json(),
        MessageGroupId=job.group_id,
        MessageDeduplicationId=job.deduplication_id,
    )
    records = lambda_records(sqs, delivery_queue, stack.resources["WebhookDeliveryQueue"].arn)
    assert delivery_module.lambda_handler({"Records": records}, DeliveryContext()) == {
        "batchItemFailures": []
    }
    for record in records:
        sqs.delete_message(QueueUrl=delivery_queue, ReceiptHandle=record["receiptHandle"])
    ((headers, body),) = receiver.requests
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (created.secret, rotated["secret"]):
        assert Webhook(secret).verify(body, headers)["id"] == "ev-rotation-1"

    # Rotating with no overlap: the old secret stops signing at once.
    status, again = call_api(
        "POST", f"/v1/subscriptions/{created.id}/rotate-secret", query="overlap_hours=0"
    )
    assert status == 200 and again["previous_secret_expires_at"] is None
    found = store.get_with_secrets(created.id)
    assert found is not None
    assert found[1].at(datetime.now(UTC)) == [again["secret"]]
    assert call_api("POST", "/v1/subscriptions/nope/rotate-secret")[0] == 404
    store.delete(created.id)


def drain(sqs: Any, queue_url: str) -> None:
    """Delete what earlier tests left visible (PurgeQueue: once a minute only)."""
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def delivery_job(subscription_id: str, event_id: str) -> Any:
    from threadline.crm_webhooks import DeliveryJob

    detail = {"id": event_id, "type": "message.received", "customer_id": "C-redeliver"}
    return DeliveryJob(
        subscription_id=subscription_id,
        event_id=event_id,
        event_type="message.received",
        customer_id="C-redeliver",
        payload=json.dumps(detail),
    )


def test_failed_deliveries_are_redelivered_once_through_the_delivery_queue(
    call_api, aws, stack, delivery_module, receivers
):
    sqs = stack.client("sqs")
    delivery_queue = stack.physical_id("WebhookDeliveryQueue")
    delivery_arn = stack.resources["WebhookDeliveryQueue"].arn
    drain(sqs, delivery_queue)
    receiver = Receiver(400)  # a final failure at once
    receivers.append(receiver)
    store = SubscriptionStore(aws.table, dynamodb=aws.dynamodb)
    from threadline.subscriptions import SubscriptionRequest

    created = store.create(SubscriptionRequest(url=receiver.url))
    started = datetime.now(UTC)

    def deliver_queued() -> None:
        records = lambda_records(sqs, delivery_queue, delivery_arn)
        assert records, "nothing on the delivery queue"
        answer = delivery_module.lambda_handler({"Records": records}, DeliveryContext())
        assert answer == {"batchItemFailures": []}
        # As Lambda does with a batch that succeeded (else the FIFO group stays held).
        for record in records:
            sqs.delete_message(QueueUrl=delivery_queue, ReceiptHandle=record["receiptHandle"])

    for event_id in ("ev-redeliver-1", "ev-redeliver-2"):
        job = delivery_job(created.id, event_id)
        sqs.send_message(
            QueueUrl=delivery_queue,
            MessageBody=job.model_dump_json(),
            MessageGroupId=job.group_id,
            MessageDeduplicationId=job.deduplication_id,
        )
    deliver_queued()
    assert len(receiver.requests) == 2
    history = store.deliveries(created.id).items
    assert {d.status for d in history} == {DeliveryStatus.FAILED}
    first = next(d for d in history if d.event_id == "ev-redeliver-1")

    # The receiver is fixed; the operator redelivers one delivery, twice.
    receiver.status = 204
    path = f"/v1/subscriptions/{created.id}/deliveries/{first.id}/redeliver"
    assert call_api("POST", path) == (202, {"queued": 1})
    assert call_api("POST", path) == (202, {"queued": 0})
    deliver_queued()
    ((headers, body),) = receiver.requests[2:]
    assert Webhook(created.secret).verify(body, headers)["id"] == "ev-redeliver-1"
    assert headers["webhook-id"] == "ev-redeliver-1"
    assert store.claim_attempt(created.id, "ev-redeliver-1") is None  # delivered: final
    assert call_api("POST", path) == (202, {"queued": 0})

    # Every failure since a time: only the one still failed; then nothing.
    since = started.isoformat().replace("+00:00", "Z")
    every = f"/v1/subscriptions/{created.id}/redeliver"
    assert call_api("POST", every, query=f"since={since}") == (202, {"queued": 1})
    assert call_api("POST", every, query=f"since={since}") == (202, {"queued": 0})
    deliver_queued()
    assert [h["webhook-id"] for h, _ in receiver.requests[3:]] == ["ev-redeliver-2"]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert call_api("POST", every, query=f"since={later}") == (202, {"queued": 0})

    status, naive = call_api("POST", every, query="since=2026-12-01T00:00:00")
    assert status == 400, naive
    assert call_api("POST", f"/v1/subscriptions/{created.id}/deliveries/nope/redeliver")[0] == 404
    assert call_api("POST", "/v1/subscriptions/nope/redeliver", query=f"since={since}")[0] == 404
    store.delete(created.id)
