"""The local stack's event source mappings, as Lambda's behave: batching, partial batch
failures, retries, bisecting, on-failure destinations, SQS deletes and redrive; and
the /_dev routes (provider sandbox, outbox, event log) beside the HTTP API.

One stack (in-process, ``devstack.stack.LocalStack``) runs a small template of its
own: a table per stream scenario, queues with dead-letter queues, a bus, and
functions whose handler logs every batch it gets to a file and fails on request:
a key or body starting with ``fail`` is reported in ``batchItemFailures``, one
starting with ``boom`` makes the handler raise.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from devstack.pollers import (
    MappingsFound,
    QueueMapping,
    StreamMapping,
    event_source_mappings,
)
from devstack.stack import LocalStack, local_parameter_defaults
from devstack.template import TemplateError, load_template
from tests.unit.devstack_fakes import fake_stack, function_spec

T = TypeVar("T")
DEADLINE_SECONDS = 15.0
STREAM_EVENT = """
          Type: DynamoDB
          Properties:
            Stream: !GetAtt {table}.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 3
            MaximumBatchingWindowInSeconds: 1"""

TEMPLATE = f"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  PublicBaseUrl:
    Type: String
    Default: ""
  TwilioApiBaseUrl:
    Type: String
    Default: https://api.twilio.com
Globals:
  Function:
    Runtime: python3.12
    Timeout: 5
    CodeUri: handlers/
    Handler: app.stream_handler
    Environment:
      Variables:
        CALLS_FILE: "{{calls}}"
Resources:
  BatchingTable: &table
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]
      KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
      StreamSpecification:
        StreamViewType: NEW_AND_OLD_IMAGES
  PartialTable: *table
  BisectTable: *table
  PartialFailures:
    Type: AWS::SQS::Queue
  BisectFailures:
    Type: AWS::SQS::Queue
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetterQueue.Arn
        maxReceiveCount: 2
  DeadLetterQueue:
    Type: AWS::SQS::Queue
  PlainQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt PlainDeadLetterQueue.Arn
        maxReceiveCount: 2
  PlainDeadLetterQueue:
    Type: AWS::SQS::Queue
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: devstack-pollers-test
  BatchingFunction:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          LABEL: batching
          PUBLIC_BASE_URL: !Ref PublicBaseUrl
          TWILIO_API_BASE_URL: !Ref TwilioApiBaseUrl
      Events:
        Stream:{STREAM_EVENT.format(table="BatchingTable")}
  PartialFunction:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          LABEL: partial
      Events:
        Stream:{STREAM_EVENT.format(table="PartialTable")}
            MaximumRetryAttempts: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig:
              OnFailure:
                Type: SQS
                Destination: !GetAtt PartialFailures.Arn
  BisectFunction:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          LABEL: bisect
      Events:
        Stream:{STREAM_EVENT.format(table="BisectTable")}
            MaximumRetryAttempts: 2
            BisectBatchOnFunctionError: true
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig:
              OnFailure:
                Type: SQS
                Destination: !GetAtt BisectFailures.Arn
  QueueFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.queue_handler
      Environment:
        Variables:
          LABEL: queue
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
  PlainQueueFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.queue_handler
      Environment:
        Variables:
          LABEL: plain
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt PlainQueue.Arn
            BatchSize: 5
"""

HANDLER = """
import json, os


def _log(records, keys):
    entry = {"label": os.environ["LABEL"], "keys": keys, "records": records}
    with open(os.environ["CALLS_FILE"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps(entry) + "\\n")


def _answer(identifiers, keys):
    if not keys:
        raise RuntimeError("invoked with an empty batch")
    if any(key.startswith("boom") for key in keys):
        raise RuntimeError("boom")
    return {"batchItemFailures": [
        {"itemIdentifier": identifier}
        for identifier, key in zip(identifiers, keys) if key.startswith("fail")
    ]}


def stream_handler(event, context):
    records = event["Records"]
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in records]
    _log(records, keys)
    return _answer([r["dynamodb"]["SequenceNumber"] for r in records], keys)


def queue_handler(event, context):
    records = event["Records"]
    keys = [r["body"] for r in records]
    _log(records, keys)
    return _answer([r["messageId"] for r in records], keys)
"""


def eventually(fetch: Callable[[], T | None], what: str, timeout: float = DEADLINE_SECONDS) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s (last: {value!r})")
        time.sleep(0.05)


class Harness:
    def __init__(self, stack: LocalStack, calls: Path, console: io.StringIO) -> None:
        self.stack = stack
        self.calls_file = calls
        self.console = console

    def client(self, service: str) -> Any:
        assert self.stack.aws is not None
        return self.stack.aws.client(service)

    def calls(self, label: str) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        lines = self.calls_file.read_text(encoding="utf-8").splitlines()
        return [entry for line in lines if (entry := json.loads(line))["label"] == label]

    def batches(self, label: str) -> list[list[str]]:
        return [entry["keys"] for entry in self.calls(label)]

    def put(self, table: str, *keys: str) -> None:
        dynamodb = self.client("dynamodb")
        for key in keys:
            dynamodb.put_item(
                TableName=self.stack.resources.physical_id(table), Item={"pk": {"S": key}}
            )

    def queue_url(self, logical_id: str) -> str:
        return self.stack.resources.physical_id(logical_id)

    def receive_all(self, logical_id: str) -> list[dict[str, Any]]:
        response = self.client("sqs").receive_message(
            QueueUrl=self.queue_url(logical_id), MaxNumberOfMessages=10, AttributeNames=["All"]
        )
        return list(response.get("Messages", []))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("pollers")
    (root / "handlers").mkdir()
    (root / "handlers" / "app.py").write_text(HANDLER, encoding="utf-8")
    calls = root / "calls.jsonl"
    template = root / "template.yaml"
    template.write_text(TEMPLATE.replace("{calls}", str(calls)), encoding="utf-8")
    console = io.StringIO()
    stack = LocalStack(
        template,
        port=0,
        environ={},
        stack_name="devstack-pollers",
        poll_interval=0.05,
        log=console,
    )
    with stack:
        yield Harness(stack, calls, console)
    assert not any(poller.running for poller in stack.pollers), "a poller outlived the stack"


# ------------------------------------------------------------ DynamoDB streams


def test_stream_records_arrive_in_order_in_batches_of_batch_size(harness):
    keys = [f"ok-{index}" for index in range(7)]
    harness.put("BatchingTable", *keys)
    eventually(lambda: sum(map(len, harness.batches("batching"))) == 7, "all seven records")
    assert harness.batches("batching") == [keys[0:3], keys[3:6], keys[6:7]]

    (first, *_) = harness.calls("batching")
    record = first["records"][0]
    stream_arn = harness.client("dynamodb").describe_table(
        TableName=harness.stack.resources.physical_id("BatchingTable")
    )["Table"]["LatestStreamArn"]
    assert record["eventSourceARN"] == stream_arn
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventName"] == "INSERT"
    assert record["awsRegion"] == "us-east-1"
    change = record["dynamodb"]
    assert change["Keys"] == {"pk": {"S": "ok-0"}}
    assert change["NewImage"] == {"pk": {"S": "ok-0"}}
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    # Lambda delivers the stream's JSON: epoch seconds, not a date string.
    assert isinstance(change["ApproximateCreationDateTime"], int)
    assert abs(change["ApproximateCreationDateTime"] - time.time()) < 60
    sequence_numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in first["records"]]
    assert sequence_numbers == sorted(sequence_numbers)


def test_a_lone_record_waits_for_the_batching_window(harness):
    harness.put("BatchingTable", "ok-lone")
    written = time.monotonic()
    eventually(lambda: ["ok-lone"] in harness.batches("batching"), "the lone record")
    # MaximumBatchingWindowInSeconds: 1, and the batch (of 3) never filled up.
    assert time.monotonic() - written >= 0.95


def test_a_reported_failure_retries_from_it_then_goes_to_the_on_failure_queue(harness):
    harness.put("PartialTable", "ok-1", "fail-2", "ok-3")
    descriptions = eventually(lambda: harness.receive_all("PartialFailures"), "failure record")
    # Everything before the failed record is done; from it on, the batch is retried
    # (MaximumRetryAttempts: 2), then described on the OnFailure queue.
    assert harness.batches("partial") == [
        ["ok-1", "fail-2", "ok-3"],
        ["fail-2", "ok-3"],
        ["fail-2", "ok-3"],
    ]
    (message,) = descriptions
    failure = json.loads(message["Body"])
    first_call = harness.calls("partial")[0]["records"]
    info = failure["DDBStreamBatchInfo"]
    assert info["shardId"]
    assert info["startSequenceNumber"] == first_call[1]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == first_call[2]["dynamodb"]["SequenceNumber"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == first_call[0]["eventSourceARN"]
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    context = failure["requestContext"]
    assert context["condition"] == "RetryAttemptsExhausted"
    assert context["approximateInvokeCount"] == 3
    assert context["functionArn"] == harness.stack.aws.functions["PartialFunction"].arn
    assert "functionError" not in failure["responseContext"]
    assert failure["version"] == "1.0"

    # The shard moves on: later records are delivered as usual.
    harness.put("PartialTable", "ok-4")
    eventually(lambda: ["ok-4"] in harness.batches("partial"), "the next record")
    assert "retry 1 of 2" in harness.console.getvalue()


def test_a_function_error_bisects_the_batch_until_the_bad_record_is_alone(harness):
    harness.put("BisectTable", "ok-a", "boom-b", "ok-c")
    descriptions = eventually(lambda: harness.receive_all("BisectFailures"), "failure record")
    eventually(lambda: ["ok-c"] in harness.batches("bisect"), "the record after the bad one")
    assert harness.batches("bisect") == [
        ["ok-a", "boom-b", "ok-c"],
        ["ok-a"],
        ["boom-b", "ok-c"],
        ["boom-b"],
        ["ok-c"],
    ]
    (message,) = descriptions
    failure = json.loads(message["Body"])
    info = failure["DDBStreamBatchInfo"]
    bad = harness.calls("bisect")[3]["records"][0]["dynamodb"]["SequenceNumber"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == bad
    assert info["batchSize"] == 1
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["requestContext"]["approximateInvokeCount"] == 3


# ------------------------------------------------------------------------- SQS


def test_sqs_deletes_what_succeeded_and_leaves_reported_failures_to_the_redrive(harness):
    sqs = harness.client("sqs")
    sqs.send_message_batch(
        QueueUrl=harness.queue_url("Queue"),
        Entries=[
            {
                "Id": key,
                "MessageBody": key,
                "MessageAttributes": {
                    "kind": {"DataType": "String", "StringValue": "test"},
                    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                },
            }
            for key in ("ok-1", "fail-2", "ok-3")
        ],
    )
    dead = eventually(lambda: harness.receive_all("DeadLetterQueue"), "dead-lettered message")
    assert [m["Body"] for m in dead] == ["fail-2"]
    # Delivered twice (maxReceiveCount: 2, back after its 1 s visibility timeout);
    # the others once, in the first batch, and deleted then.
    assert harness.batches("queue") == [["ok-1", "fail-2", "ok-3"], ["fail-2"]]
    first, second = harness.calls("queue")
    record = first["records"][0]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=harness.queue_url("Queue"), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["receiptHandle"] and record["md5OfBody"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "test",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert base64.b64decode(record["messageAttributes"]["blob"]["binaryValue"]) == b"\x00\x01"
    assert second["records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert sqs.receive_message(QueueUrl=harness.queue_url("Queue")).get("Messages") is None


def test_sqs_function_error_deletes_nothing_and_failures_are_ignored_unless_reported(harness):
    sqs = harness.client("sqs")
    url = harness.queue_url("PlainQueue")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": k, "MessageBody": k} for k in ("fail-1", "ok-2")]
    )
    # Without ReportBatchItemFailures a batchItemFailures answer means nothing: all
    # succeeded, all are deleted.
    eventually(lambda: harness.batches("plain") == [["fail-1", "ok-2"]], "the first batch")
    sqs.send_message(QueueUrl=url, MessageBody="boom-3")
    dead = eventually(lambda: harness.receive_all("PlainDeadLetterQueue"), "dead-lettered")
    assert [m["Body"] for m in dead] == ["boom-3"]
    assert harness.batches("plain") == [["fail-1", "ok-2"], ["boom-3"], ["boom-3"]]
    assert "function error RuntimeError: boom" in harness.console.getvalue()


def test_no_function_is_ever_invoked_with_an_empty_batch(harness):
    labels = ("batching", "partial", "bisect", "queue", "plain")
    assert all(keys for label in labels for keys in harness.batches(label))
    assert "empty batch" not in harness.console.getvalue()


# --------------------------------------------------------------- /_dev routes


def test_events_put_on_the_bus_are_listed_as_eventbridge_delivered_them(harness):
    events = harness.client("events")
    for detail_type, number in (("thing.happened", 1), ("thing.other", 2)):
        events.put_events(
            Entries=[
                {
                    "Source": "devstack.test",
                    "DetailType": detail_type,
                    "Detail": json.dumps({"number": number, "customer_id": "c1"}),
                    "EventBusName": "devstack-pollers-test",
                }
            ]
        )
    url = harness.stack.base_url + "/_dev/events"
    listed = eventually(lambda: len(requests.get(url, timeout=5).json()) >= 2 or None, "events")
    assert listed
    (event,) = requests.get(url, params={"type": "thing.happened"}, timeout=5).json()
    assert event["source"] == "devstack.test"
    assert event["detail-type"] == "thing.happened"
    assert event["detail"] == {"number": 1, "customer_id": "c1"}
    # moto leaves out "account", which EventBridge sends; the log shows what arrived.
    assert {"id", "time", "region", "version", "resources"} <= set(event)
    assert len(requests.get(url, params={"customer_id": "c1"}, timeout=5).json()) == 2
    assert requests.delete(url, timeout=5).status_code == 204
    assert requests.get(url, timeout=5).json() == []
    # The catch-all rule and its queue live in the embedded AWS, not in the template.
    rules = events.list_rules(EventBusName="devstack-pollers-test")["Rules"]
    assert "devstack-all-events" in {rule["Name"] for rule in rules}
    assert "devstack-all-events" not in harness.stack.template.resources


def test_the_sandbox_and_outbox_are_served_under_dev(harness):
    base = harness.stack.base_url
    path = f"/_dev/sandbox/twilio/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    form = {"To": "+15551259901", "From": "+15005550006", "Body": "hello"}
    unauthenticated = requests.post(base + path, data=form, timeout=5)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == 20003
    auth = ("AC" + "1" * 32, "token")
    missing_to = requests.post(base + path, data={"Body": "x", "From": "+1"}, auth=auth, timeout=5)
    assert missing_to.json()["code"] == 21604
    sent = requests.post(base + path, data=form, auth=auth, timeout=5)
    assert sent.status_code == 201
    sid = sent.json()["sid"]
    fetched = requests.get(base + path.replace(".json", f"/{sid}.json"), auth=auth, timeout=5)
    assert fetched.json()["body"] == "hello"

    outbox = requests.get(base + "/_dev/outbox", params={"to": "+15551259901"}, timeout=5).json()
    assert [entry["status"] for entry in outbox] == [401, 201]  # refusals are recorded too
    assert outbox[1]["form"]["Body"] == ["hello"]
    assert "headers" not in outbox[0]  # they hold the account's credentials

    faults = requests.post(base + "/_dev/sandbox/faults/twilio", json=[503], timeout=5)
    assert faults.status_code == 204
    assert requests.post(base + path, data=form, auth=auth, timeout=5).status_code == 503
    assert requests.delete(base + "/_dev/outbox", timeout=5).status_code == 204
    assert requests.get(base + "/_dev/outbox", timeout=5).json() == []
    assert requests.get(base + "/_dev/elsewhere", timeout=5).status_code == 404
    assert requests.get(base + "/not-a-route", timeout=5).json() == {"message": "Not Found"}


def test_url_parameters_default_to_the_local_stack(harness):
    stack = harness.stack
    assert stack.parameter_defaults == {
        "PublicBaseUrl": stack.base_url,
        "TwilioApiBaseUrl": stack.base_url + "/_dev/sandbox/twilio",
    }
    environment = stack.aws.function_environment("BatchingFunction")
    assert environment["PUBLIC_BASE_URL"] == stack.base_url
    assert environment["TWILIO_API_BASE_URL"] == stack.base_url + "/_dev/sandbox/twilio"


def test_a_parameter_the_user_sets_is_not_replaced(tmp_path):
    template_file = tmp_path / "template.yaml"
    template_file.write_text(TEMPLATE.replace("{calls}", "x"), encoding="utf-8")
    template = load_template(template_file)
    chosen = {"PublicBaseUrl": "https://hooks.example.com"}
    assert local_parameter_defaults(template, "http://127.0.0.1:1", chosen) == {
        "TwilioApiBaseUrl": "http://127.0.0.1:1/_dev/sandbox/twilio"
    }


# ------------------------------------------------------- mapping configuration


def _mappings(*sources: dict[str, Any]) -> MappingsFound:
    """The mappings of ``AWS::Lambda::EventSourceMapping``s of function Fn, as SAM writes them."""
    resources: dict[str, Any] = {"Fn": {"Type": "AWS::Lambda::Function", "Properties": {}}}
    for index, properties in enumerate(sources):
        resources[f"FnSource{index or ''}"] = {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {"FunctionName": {"Ref": "Fn"}, **properties},
        }
    stack = fake_stack({"Resources": resources})
    return event_source_mappings(stack, {"Fn": function_spec("Fn")})


STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024-01-01T00:00:00.000"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:q"


def test_mappings_get_lambdas_defaults():
    found = _mappings(
        {"EventSourceArn": STREAM_ARN, "StartingPosition": "LATEST"},
        {"EventSourceArn": QUEUE_ARN, "ScalingConfig": {"MaximumConcurrency": 2}},
    )
    stream, queue = found.mappings
    assert isinstance(stream, StreamMapping) and isinstance(queue, QueueMapping)
    assert (stream.batch_size, stream.batching_window, stream.max_retries) == (100, 0, -1)
    assert (stream.bisect, stream.report_item_failures, stream.on_failure) == (False, False, None)
    assert (queue.batch_size, queue.batching_window, queue.report_item_failures) == (10, 0, False)
    assert found.notes == ["Fn event Source1: not applied locally: ScalingConfig"]


@pytest.mark.parametrize(
    ("properties", "complaint"),
    [
        ({"EventSourceArn": STREAM_ARN}, "StartingPosition"),
        ({"EventSourceArn": STREAM_ARN, "StartingPosition": "AT_TIMESTAMP"}, "LATEST"),
        ({"EventSourceArn": STREAM_ARN, "StartingPosition": "LATEST", "BatchSize": 0}, "BatchSize"),
        ({"EventSourceArn": QUEUE_ARN, "BatchSize": 50}, "MaximumBatchingWindowInSeconds"),
    ],
)
def test_a_mapping_lambda_would_refuse_fails_locally_too(properties, complaint):
    with pytest.raises(TemplateError, match=complaint):
        _mappings(properties)


def test_an_event_source_the_stack_cannot_poll_is_listed_not_run():
    found = _mappings({"EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s"})
    assert found.mappings == []
    assert "not fed locally" in found.notes[0]


def test_a_disabled_mapping_is_not_polled():
    found = _mappings({"EventSourceArn": QUEUE_ARN, "Enabled": False})
    assert found.mappings == []
    assert "Enabled is false" in found.notes[0]
