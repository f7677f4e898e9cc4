"""The local stack's EventBridge schedules: rate expressions, mappings, invoking on time."""

from __future__ import annotations

import pytest

from devstack.aws import AwsTarget
from devstack.runtime import Invocation
from devstack.schedules import (
    ScheduleMapping,
    SchedulePoller,
    rate_seconds,
    schedule_mappings,
)
from devstack.template import TemplateError, parse_template_text
from tests.conftest import load_template
from tests.unit.devstack_fakes import fake_stack, function_spec


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60.0),
        ("rate(5 minutes)", 300.0),
        ("rate(2 hours)", 7200.0),
        ("rate(1 day)", 86400.0),
        ("cron(0 12 * * ? *)", None),
    ],
)
def test_rate_expressions_are_read_as_eventbridge_reads_them(expression, seconds):
    assert rate_seconds(expression, "f") == seconds


@pytest.mark.parametrize(
    "expression", ["rate(5 minute)", "rate(1 minutes)", "rate(0 minutes)", "every 5 minutes", ""]
)
def test_invalid_rate_expressions_are_refused_as_a_deploy_would(expression):
    with pytest.raises(TemplateError):
        rate_seconds(expression, "f")


SWEEPER = """
Transform: AWS::Serverless-2016-10-31
Resources:
  SweeperFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sweeper/
      Handler: app.lambda_handler
      Runtime: python3.12
      Events:
        Sweep: {Type: Schedule, Properties: {Schedule: rate(5 minutes), Description: x}}
        Nightly: {Type: Schedule, Properties: {Schedule: cron(0 3 * * ? *)}}
        Paused: {Type: Schedule, Properties: {Schedule: rate(1 hour), Enabled: false}}
        Queue: {Type: SQS, Properties: {Queue: !GetAtt Queue.Arn}}
  Queue:
    Type: AWS::SQS::Queue
"""


def test_mappings_run_rates_and_list_what_they_do_not_run():
    stack = fake_stack(parse_template_text(SWEEPER))
    mappings, notes = schedule_mappings(
        stack, {"SweeperFunction": function_spec("SweeperFunction")}
    )
    assert mappings == [ScheduleMapping("SweeperFunction", "Sweep", "rate(5 minutes)", 300.0)]
    assert len(notes) == 2
    assert any("cron(0 3 * * ? *)" in note for note in notes)
    assert any("Paused" in note and "disabled" in note for note in notes)


def test_the_template_runs_the_conversation_sweeper_on_a_rate():
    sweeper = load_template()["Resources"]["ConversationSweeperFunction"]["Properties"]
    (event,) = sweeper["Events"].values()
    assert event["Type"] == "Schedule"
    assert rate_seconds(event["Properties"]["Schedule"], "sweeper") == 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_function_is_invoked_once_per_period_with_a_scheduled_event():
    clock = Clock()
    calls: list[tuple[str, dict]] = []

    def invoke(function: str, event: dict) -> Invocation:
        calls.append((function, event))
        return Invocation(function=function, request_id="r", payload={"closed": 0})

    mapping = ScheduleMapping("SweeperFunction", "Sweep", "rate(5 minutes)", 300.0)
    aws = AwsTarget("http://127.0.0.1:1", "eu-west-1", "123456789012")
    poller = SchedulePoller(mapping, aws, invoke, clock=clock)
    assert poller.poll() is False and calls == []  # not before the first period
    clock.now += 299
    poller.poll()
    assert calls == []
    clock.now += 1
    poller.poll()
    poller.poll()  # the same moment again: no second run
    assert len(calls) == 1
    function, event = calls[0]
    assert function == "SweeperFunction"
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["region"] == "eu-west-1"
    assert event["account"] == "123456789012"
    assert event["detail"] == {}
    clock.now += 300
    poller.poll()
    assert len(calls) == 2 and poller.runs == 2
