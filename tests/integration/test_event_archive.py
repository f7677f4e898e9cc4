"""The bus's archive and EventBridge replay, against moto server, with real events.

Messages go in through the Twilio handler; the publisher (the real handler, fed the
table's stream as Lambda would) puts their events on the bus; a probe rule sends the
conversation events to a queue. The events validate against the committed schemas,
and a replay of the time range from the archive delivers the same events again.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from tests.conftest import REPO_ROOT
from tests.integration.conftest import LambdaContext
from tests.integration.test_outbound import Pipeline
from tests.integration.test_twilio_ingest import sms, whatsapp

SCHEMA_DIR = REPO_ROOT / "infra" / "schemas"


@pytest.fixture
def probe(stack, aws_env) -> Iterator[dict[str, Any]]:
    """A rule on the bus that sends every conversation event to a fresh queue."""
    events, sqs = stack.client("events"), stack.client("sqs")
    bus = stack.physical_id("EventBus")
    name = "probe-" + secrets.token_hex(4)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": ["threadline"], "detail-type": [{"prefix": "conversation."}]}
    rule_arn = events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))[
        "RuleArn"
    ]
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "probe", "Arn": arn}])
    yield {"url": url, "rule_arn": rule_arn, "bus": bus}
    events.remove_targets(Rule=name, EventBusName=bus, Ids=["probe"])
    events.delete_rule(Name=name, EventBusName=bus)
    sqs.delete_queue(QueueUrl=url)


def drain(stack, url: str, customer_id: str, want: int) -> list[dict[str, Any]]:
    """The customer's events that reached the probe queue (others are dropped)."""
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < want and time.monotonic() < deadline:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            event = json.loads(message["Body"])
            if event["detail"]["customer_id"] == customer_id:
                found.append(event)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def publish_all(pipeline: Pipeline) -> None:
    """Publish everything on the stream (Pipeline.publish reads one page per shard)."""
    while records := pipeline.stream_records():
        result = pipeline.publisher.lambda_handler({"Records": records}, LambdaContext())
        assert result["batchItemFailures"] == []


def validate(event: dict[str, Any]) -> None:
    path = SCHEMA_DIR / f"event.{event['detail-type']}.v1.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class(schema, format_checker=validator_class.FORMAT_CHECKER).validate(event["detail"])


def test_conversation_events_are_archived_and_a_replay_sends_them_again(
    stack, publisher_module, dispatcher_module, aws_env, twilio_post, api_get, probe
):
    pipeline = Pipeline(stack, publisher_module, dispatcher_module)
    while pipeline.stream_records():  # skip what earlier tests left on the stream
        pass
    number = "+1555" + str(secrets.randbelow(10**7)).zfill(7)
    start = datetime.now(UTC) - timedelta(seconds=1)
    assert twilio_post(sms("SM" + secrets.token_hex(16), sender=number))["statusCode"] == 200
    assert twilio_post(whatsapp("SM" + secrets.token_hex(16), sender=number))["statusCode"] == 200
    publish_all(pipeline)
    customer = json.loads(api_get("/v1/customers", {"identity": f"phone:{number}"})["body"])

    live = drain(stack, probe["url"], customer["id"], 2)
    assert sorted(e["detail-type"] for e in live) == [
        "conversation.channel_switched",
        "conversation.opened",
    ]
    for event in live:
        validate(event)

    events = stack.client("events")
    archive = events.describe_archive(ArchiveName=stack.physical_id("EventArchive"))
    assert archive["EventSourceArn"].endswith(f"event-bus/{probe['bus']}")
    assert archive["RetentionDays"] == 90
    replay = "replay-" + secrets.token_hex(4)
    events.start_replay(
        ReplayName=replay,
        EventSourceArn=archive["ArchiveArn"],
        EventStartTime=start,
        EventEndTime=datetime.now(UTC) + timedelta(seconds=1),
        Destination={
            "Arn": events.describe_event_bus(Name=probe["bus"])["Arn"],
            "FilterArns": [probe["rule_arn"]],
        },
    )
    replayed = drain(stack, probe["url"], customer["id"], 2)
    assert {e["detail"]["id"] for e in replayed} == {e["detail"]["id"] for e in live}
    assert {e.get("replay-name") for e in replayed} == {replay}
    assert events.describe_replay(ReplayName=replay)["State"] in {"RUNNING", "COMPLETED"}
