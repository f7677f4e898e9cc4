"""SNS topics feed functions in the local stack as SNS invokes Lambda: one record per
notification, asynchronous retries (EventInvokeConfig) on a function error, and
``POST /_dev/email/feedback`` publishing SES's notification to the configuration
set's topic. A small template of its own; the handler logs what it gets to a file
and raises for a message starting with ``boom``."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Topic:
    Type: AWS::SNS::Topic
  ConfigurationSet:
    Type: AWS::SES::ConfigurationSet
    Properties:
      Name: devstack-sns-test
  ConfigurationSetFeedback:
    Type: AWS::SES::ConfigurationSetEventDestination
    Properties:
      ConfigurationSetName: !Ref ConfigurationSet
      EventDestination:
        Name: to-sns
        Enabled: true
        MatchingEventTypes: [bounce, delivery]
        SnsDestination:
          TopicARN: !Ref Topic
  SnsFunction:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Timeout: 5
      CodeUri: handlers/
      Handler: app.handler
      Environment:
        Variables:
          CALLS_FILE: "{calls}"
      EventInvokeConfig:
        MaximumRetryAttempts: 1
      Events:
        Feedback:
          Type: SNS
          Properties:
            Topic: !Ref Topic
"""

HANDLER = """
import json, os


def handler(event, context):
    with open(os.environ["CALLS_FILE"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps(event) + "\\n")
    if event["Records"][0]["Sns"]["Message"].startswith("boom"):
        raise RuntimeError("boom")
    return {"ok": True}
"""


class Harness:
    def __init__(self, stack: LocalStack, calls: Path) -> None:
        self.stack = stack
        self.calls_file = calls

    def events(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def messages(self) -> list[str]:
        return [e["Records"][0]["Sns"]["Message"] for e in self.events()]

    def console(self) -> str:
        log = self.stack.log
        assert isinstance(log, io.StringIO)
        return log.getvalue()

    def publish(self, message: str) -> None:
        assert self.stack.aws is not None
        topic = self.stack.resources.physical_id("Topic")
        self.stack.aws.client("sns").publish(TopicArn=topic, Message=message)


def wait_until(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("sns")
    (root / "handlers").mkdir()
    (root / "handlers" / "app.py").write_text(HANDLER, encoding="utf-8")
    calls = root / "calls.jsonl"
    template = root / "template.yaml"
    template.write_text(TEMPLATE.replace("{calls}", str(calls)), encoding="utf-8")
    stack = LocalStack(
        template,
        port=0,
        environ={},
        stack_name="devstack-sns",
        poll_interval=0.05,
        log=io.StringIO(),
    )
    with stack:
        yield Harness(stack, calls)


def test_a_notification_arrives_as_snss_lambda_event(harness):
    harness.publish("hello")
    wait_until(lambda: "hello" in harness.messages(), "notification")
    [event] = [e for e in harness.events() if e["Records"][0]["Sns"]["Message"] == "hello"]
    [record] = event["Records"]
    assert record["EventSource"] == "aws:sns"
    assert record["Sns"]["Type"] == "Notification"
    assert record["Sns"]["TopicArn"] == harness.stack.resources.physical_id("Topic")
    assert record["Sns"]["MessageId"]
    assert record["EventSubscriptionArn"].startswith(record["Sns"]["TopicArn"] + ":")


def test_a_function_error_is_retried_as_configured_then_dropped(harness):
    dropped = "after 2 attempts; the notification is dropped"
    before = harness.console().count(dropped)
    harness.publish("boom-1")
    # MaximumRetryAttempts: 1, so the second failure drops it: no third attempt follows.
    wait_until(lambda: harness.console().count(dropped) > before, "dropped notification")
    assert harness.messages().count("boom-1") == 2


def test_dev_feedback_publishes_ses_events_to_the_destinations_topic(harness):
    url = harness.stack.base_url + "/_dev/email/feedback"
    body = {"type": "Delivery", "message_id": "0100-sim-1", "recipients": ["ana@example.com"]}
    answer = requests.post(url, json=body, timeout=10)
    assert answer.status_code == 202, answer.text
    [published] = answer.json()["published"]
    assert published["topic_arn"] == harness.stack.resources.physical_id("Topic")

    def delivered() -> list[dict[str, Any]]:
        found = []
        for message in harness.messages():
            if message.startswith("{"):
                found.append(json.loads(message))
        return found

    wait_until(delivered, "the SES event")
    [event] = delivered()
    assert event["eventType"] == "Delivery"
    assert event["mail"]["messageId"] == "0100-sim-1"
    assert event["mail"]["tags"] == {"ses:configuration-set": ["devstack-sns-test"]}
    # A type no destination of this template publishes is refused.
    complaint = {**body, "type": "Complaint"}
    assert requests.post(url, json=complaint, timeout=10).status_code == 400
