"""The local stack running a small template of its own, over HTTP on 127.0.0.1.

``python -m devstack --template ...`` runs as a subprocess (as `make dev` would),
and once in-process through ``devstack.stack.LocalStack``. The template has a
table with a stream, a bucket, a secret parameter, a layer and two functions whose
handler reports its environment and the event it got, or misbehaves on request.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import boto3
import pytest
import requests

READY = "threadline local stack ready on "
TOKEN = "test-api-token"

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
  DemoSecretParameterName:
    Type: String
    Default: /devstack-test/demo/secret
Globals:
  Function:
    Runtime: python3.12
    MemorySize: 256
    Timeout: 5
    Layers: [!Ref Layer]
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        BUCKET_NAME: !Ref Bucket
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
    Metadata:
      BuildMethod: python3.12
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        EnableIamAuthorizer: true
        DefaultAuthorizer: AWS_IAM
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      StreamSpecification:
        StreamViewType: NEW_AND_OLD_IMAGES
      TimeToLiveSpecification:
        AttributeName: expires_at
        Enabled: true
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      VersioningConfiguration:
        Status: Enabled
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      Environment:
        Variables:
          SECRET_PARAM: !Ref DemoSecretParameterName
          TABLE_ARN: !GetAtt Table.Arn
          GREETING: !Sub "hello-${Stage}"
      Events:
        Webhook:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: POST
            Path: /webhooks/echo
            Auth:
              Authorizer: NONE
        Rest:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: ANY
            Path: /v1/{proxy+}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      Timeout: 1
      Events:
        Slow:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /v1/timeout
"""

HANDLER = """
import json, os, sys, time

import layer_helper  # from the layer, found through PYTHONPATH as in Lambda


def handler(event, context):
    path = event["rawPath"]
    if path == "/v1/boom":
        raise ValueError("boom from the handler")
    if path == "/v1/exit":
        os._exit(3)
    if path == "/v1/print":
        print("not json, straight to stdout")
        print("and to stderr", file=sys.stderr)
    if path in ("/v1/slow", "/v1/timeout"):
        time.sleep(0.6 if path == "/v1/slow" else 30)
    body = {
        "env": dict(os.environ),
        "event": event,
        "pid": os.getpid(),
        "layer": layer_helper.NAME,
        "cwd": os.getcwd(),
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "remaining": context.get_remaining_time_in_millis(),
        },
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body)}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_project(root: Path) -> Path:
    (root / "echo").mkdir()
    (root / "echo" / "app.py").write_text(HANDLER, encoding="utf-8")
    (root / "layer").mkdir()
    (root / "layer" / "layer_helper.py").write_text('NAME = "from-the-layer"\n', encoding="utf-8")
    template = root / "template.yaml"
    template.write_text(TEMPLATE, encoding="utf-8")
    return template


def clean_environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "THREADLINE_")) and key != "DEMO_SECRET"
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    base_url: str
    output: list[str]

    def text(self) -> str:
        return "".join(self.output)

    def endpoint(self) -> str:
        match = re.search(r"AWS endpoint\s+(http://127\.0\.0\.1:\d+)", self.text())
        assert match, self.text()
        return match.group(1)

    def client(self, service: str):
        return boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).client(service, endpoint_url=self.endpoint())

    def stop(self, signum: int = signal.SIGINT, timeout: float = 10) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_stack(template: Path, env: dict[str, str]) -> RunningStack:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--template", str(template)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if READY in line:
            return RunningStack(process, line.split(READY, 1)[1].strip(), output)
    process.kill()
    process.wait()
    pytest.fail("the stack did not become ready:\n" + "".join(output))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    template = write_project(tmp_path_factory.mktemp("devstack"))
    env = clean_environment(
        THREADLINE_PORT=str(free_port()),
        THREADLINE_API_TOKEN=TOKEN,
        DEVSTACK_TEST_PARENT_ONLY="must not reach the function",
    )
    running = start_stack(template, env)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


def echo(stack: RunningStack, path: str = "/v1/echo", **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return requests.get(stack.base_url + path, headers=headers, timeout=10, **kwargs)


def test_the_function_sees_exactly_its_template_environment(stack):
    body = echo(stack).json()
    env = body["env"]
    template_variables = {
        "TABLE_NAME",
        "BUCKET_NAME",
        "SECRET_PARAM",
        "TABLE_ARN",
        "GREETING",
    }
    lambda_variables = {
        "PATH",
        "LANG",
        "TZ",
        "PYTHONPATH",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_EC2_METADATA_DISABLED",
        # No X-Ray daemon locally: the runtime turns the Tracer off (runtime.py).
        "POWERTOOLS_TRACE_DISABLED",
    }
    # The interpreter may add LC_CTYPE when it coerces a C locale; nothing else.
    assert set(env) - {"LC_CTYPE"} == template_variables | lambda_variables
    assert "DEVSTACK_TEST_PARENT_ONLY" not in env
    assert "THREADLINE_API_TOKEN" not in env
    assert env["GREETING"] == "hello-dev"
    assert env["SECRET_PARAM"] == "/devstack-test/demo/secret"
    assert env["TABLE_NAME"].startswith("threadline-dev-Table-")
    assert env["TABLE_ARN"].endswith(f":table/{env['TABLE_NAME']}")
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint()
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["TZ"] == "UTC"
    assert body["layer"] == "from-the-layer"
    assert body["cwd"].endswith("echo")
    context = body["context"]
    assert context["function_name"] == env["AWS_LAMBDA_FUNCTION_NAME"]
    assert context["memory_limit_in_mb"] == 256
    assert context["invoked_function_arn"].endswith(f":function:{context['function_name']}")
    assert 0 < context["remaining"] <= 5000


def test_the_event_is_an_http_api_v2_event(stack):
    form = urlencode({"From": "+15551234567", "Body": "hi"})
    response = requests.post(
        stack.base_url + "/webhooks/echo?b=2&a=%2B1%20x&a=3",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Custom": "Yes"},
        cookies={"session": "abc"},
        timeout=10,
    )
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/echo"
    assert event["rawPath"] == "/webhooks/echo"
    assert event["rawQueryString"] == "b=2&a=%2B1%20x&a=3"
    assert event["queryStringParameters"] == {"b": "2", "a": "+1 x,3"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]).decode() == form
    assert event["cookies"] == ["session=abc"]
    assert event["headers"]["x-custom"] == "Yes"
    assert event["headers"]["host"] == stack.base_url.removeprefix("http://")
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["domainName"] == event["headers"]["host"]
    assert event["requestContext"]["stage"] == "$default"

    proxied = echo(stack, "/v1/customers/c1/timeline").json()["event"]
    assert proxied["routeKey"] == "ANY /v1/{proxy+}"
    assert proxied["pathParameters"] == {"proxy": "customers/c1/timeline"}
    assert "body" not in proxied


def test_the_resources_and_the_secret_exist_in_the_embedded_aws(stack):
    env = echo(stack).json()["env"]
    dynamodb = stack.client("dynamodb")
    table = dynamodb.describe_table(TableName=env["TABLE_NAME"])["Table"]
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    streams = stack.client("dynamodbstreams")
    stream = streams.describe_stream(StreamArn=table["LatestStreamArn"])["StreamDescription"]
    assert stream["StreamStatus"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=env["TABLE_NAME"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    s3 = stack.client("s3")
    assert s3.get_bucket_versioning(Bucket=env["BUCKET_NAME"])["Status"] == "Enabled"

    parameter = stack.client("ssm").get_parameter(
        Name="/devstack-test/demo/secret", WithDecryption=True
    )["Parameter"]
    assert parameter["Type"] == "SecureString"
    printed = re.search(r"DEMO_SECRET=([0-9a-f]{32})", stack.text())
    assert printed, "a generated secret is printed so requests can be signed with it"
    assert parameter["Value"] == printed.group(1)


def test_iam_routes_need_the_bearer_token_and_webhooks_do_not(stack):
    unauthenticated = requests.get(stack.base_url + "/v1/echo", timeout=10)
    assert unauthenticated.status_code == 403
    assert unauthenticated.json() == {"message": "Forbidden"}
    wrong = echo(stack, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert echo(stack).status_code == 200
    assert requests.post(stack.base_url + "/webhooks/echo", timeout=10).status_code == 200
    missing = requests.get(stack.base_url + "/nowhere", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}


def test_a_handler_exception_is_a_500_without_a_traceback(stack):
    response = echo(stack, "/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "Traceback" not in response.text
    assert "boom" not in response.text
    deadline = time.monotonic() + 5
    while "boom from the handler" not in stack.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ValueError: boom from the handler" in stack.text()  # on the console instead


def test_what_a_handler_prints_reaches_the_console_not_the_protocol(stack):
    response = echo(stack, "/v1/print")
    assert response.status_code == 200
    assert response.json()["event"]["rawPath"] == "/v1/print"
    deadline = time.monotonic() + 5
    while "and to stderr" not in stack.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "not json, straight to stdout" in stack.text()
    assert "and to stderr" in stack.text()


def test_concurrent_requests_run_in_parallel_workers(stack):
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: echo(stack, "/v1/slow"), range(4)))
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 4
    assert len({r.json()["pid"] for r in responses}) > 1
    assert elapsed < 4 * 0.6, f"4 requests of 0.6 s took {elapsed:.2f} s: not concurrent"


def test_a_dead_worker_is_replaced(stack):
    assert echo(stack, "/v1/exit").status_code == 500
    assert echo(stack).status_code == 200


def test_a_handler_past_its_timeout_is_stopped(stack):
    started = time.monotonic()
    response = echo(stack, "/v1/timeout")
    assert response.status_code == 500
    # Timeout: 1 s, plus any time the machine kept the worker or the stack from a CPU
    # (devstack.runtime), and far from the handler's 30 s.
    assert time.monotonic() - started < 10
    # The console is read by another thread: give it a moment to catch up.
    deadline = time.monotonic() + 5
    while "Task timed out" not in stack.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Task timed out after 1.00 seconds" in stack.text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_everything_with_exit_code_0(tmp_path, signum):
    template = write_project(tmp_path)
    port = free_port()
    running = start_stack(template, clean_environment(THREADLINE_PORT=str(port)))
    worker_pid = requests.post(running.base_url + "/webhooks/echo", timeout=10).json()["pid"]
    started = time.monotonic()
    assert running.stop(signum) == 0
    assert time.monotonic() - started < 5
    assert "threadline local stack stopped" in running.text()
    with pytest.raises(requests.ConnectionError):
        requests.get(running.base_url + "/v1/echo", timeout=2)
    # The worker was stopped too, not left behind.
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


def test_local_stack_runs_in_process(tmp_path, capfd):
    from devstack.stack import LocalStack

    template = write_project(tmp_path)
    environ = {"DEMO_SECRET": "chosen-by-the-developer"}
    with LocalStack(template, port=0, environ=environ, stack_name="devstack-inproc") as local:
        assert local.resources.physical_id("Table").startswith("devstack-inproc-Table-")
        response = requests.post(local.base_url + "/webhooks/echo", timeout=10)
        assert response.status_code == 200
        assert response.json()["env"]["TABLE_NAME"] == local.resources.physical_id("Table")
        ssm = local.aws.client("ssm")
        value = ssm.get_parameter(Name="/devstack-test/demo/secret", WithDecryption=True)
        assert value["Parameter"]["Value"] == "chosen-by-the-developer"
        assert local.aws.secrets[0].source == "environment"
    with pytest.raises(requests.ConnectionError):
        requests.post(local.base_url + "/webhooks/echo", timeout=2)
