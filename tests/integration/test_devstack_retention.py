"""What the embedded AWS keeps per message stays bounded over a long session."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack import retention


@pytest.fixture(scope="module")
def moto(bare_moto_client: Callable[[str], Any]) -> Callable[[str], Any]:
    """Clients of the local stack's embedded moto (tests/integration/conftest.py)."""
    return bare_moto_client


def test_an_archive_keeps_its_newest_events(moto, monkeypatch):
    monkeypatch.setattr(retention, "ARCHIVE_KEEP_EVENTS", 30)
    events = moto("events")
    bus_arn = events.create_event_bus(Name="retention-bus")["EventBusArn"]
    events.create_archive(ArchiveName="retention-archive", EventSourceArn=bus_arn)
    for batch in range(5):
        events.put_events(
            Entries=[
                {
                    "EventBusName": "retention-bus",
                    "Source": "threadline.test",
                    "DetailType": "message.received",
                    "Detail": json.dumps({"n": batch * 10 + i}),
                }
                for i in range(10)
            ]
        )
    assert events.describe_archive(ArchiveName="retention-archive")["EventCount"] == 30

    from moto.backends import get_backend

    backend = get_backend("events")["123456789012"]["us-east-1"]
    kept = [event["detail"]["n"] for event in backend.archives["retention-archive"].events]
    assert kept == list(range(20, 50))


def _fastest_send(sqs: Any, queue_url: str, rounds: int = 15) -> float:
    durations = []
    for n in range(rounds):
        started = time.perf_counter()
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"timed {n}")
        durations.append(time.perf_counter() - started)
    return min(durations)


def test_a_send_costs_the_same_on_a_queue_with_a_backlog(moto):
    sqs = moto("sqs")
    empty = sqs.create_queue(QueueName="backlog-empty")["QueueUrl"]
    backlog = sqs.create_queue(QueueName="backlog-full")["QueueUrl"]
    for start in range(0, 3000, 10):
        entries = [{"Id": str(i), "MessageBody": f"waiting {start + i}"} for i in range(10)]
        sqs.send_message_batch(QueueUrl=backlog, Entries=entries)
    # Alternating rounds, so a busy moment of the machine falls on both.
    fastest_empty = min(_fastest_send(sqs, empty, 5) for _ in range(3))
    fastest_backlog = min(_fastest_send(sqs, backlog, 5) for _ in range(3))
    # moto alone: about 20x at 3000 messages (three counts per send, two clock reads
    # through datetime per message per count).
    assert fastest_backlog < 4 * fastest_empty, (
        f"SendMessage: {fastest_empty * 1000:.1f} ms on an empty queue, "
        f"{fastest_backlog * 1000:.1f} ms behind 3000 messages"
    )
    received = sqs.receive_message(QueueUrl=backlog, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 10
    counts = sqs.get_queue_attributes(
        QueueUrl=backlog,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert counts == {
        "ApproximateNumberOfMessages": str(3000 + 15 - 10),
        "ApproximateNumberOfMessagesNotVisible": "10",
    }


def test_an_input_transformer_parses_each_path_once(moto):
    import jsonpath_ng.ext

    events = moto("events")
    sqs = moto("sqs")
    queue_url = sqs.create_queue(QueueName="transformed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.create_event_bus(Name="transform-bus")
    events.put_rule(
        Name="transform",
        EventBusName="transform-bus",
        EventPattern=json.dumps({"source": ["threadline.test"]}),
    )
    events.put_targets(
        Rule="transform",
        EventBusName="transform-bus",
        Targets=[
            {
                "Id": "queue",
                "Arn": queue_arn,
                "InputTransformer": {
                    "InputPathsMap": {"n": "$.detail.n", "kind": "$.detail-type"},
                    "InputTemplate": '{"number": <n>, "kind": "<kind>"}',
                },
            }
        ],
    )

    def send(n: int) -> None:
        events.put_events(
            Entries=[
                {
                    "EventBusName": "transform-bus",
                    "Source": "threadline.test",
                    "DetailType": "message.received",
                    "Detail": json.dumps({"n": n}),
                }
            ]
        )

    send(0)
    parsed_before = jsonpath_ng.ext.parse.cache_info().misses
    for n in range(1, 20):
        send(n)
    assert jsonpath_ng.ext.parse.cache_info().misses == parsed_before
    bodies = []
    while len(bodies) < 20:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        assert messages, f"only {len(bodies)} transformed events arrived"
        bodies += [json.loads(message["Body"]) for message in messages]
    assert sorted(body["number"] for body in bodies) == list(range(20))
    assert {body["kind"] for body in bodies} == {"message.received"}
