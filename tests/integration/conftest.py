"""Integration fixtures: moto in server mode with the resources of template.yaml.

The handlers run in this process, imported from their CodeUri, with the
environment their template block gives them; every AWS call they make crosses HTTP
to the moto server, as it would to AWS.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import boto3
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import load_handler_module, load_template

WEBHOOK_HOST = "hooks.example.test"
ACCOUNT_SID = "AC" + "5" * 32
TWILIO_PATH = "/webhooks/twilio/messaging"
EMAIL_FROM = "support@threadline.example"


class LambdaContext:
    function_name = "test-function"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


@pytest.fixture(scope="module")
def bare_moto() -> Iterator[Any]:
    """The local stack's embedded moto (its patches applied), with no resources."""
    from devstack.stack import MotoServer

    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bare_moto_client(bare_moto: Any) -> Callable[[str], Any]:
    """A boto3 client factory for :func:`bare_moto`."""

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=bare_moto.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client


@pytest.fixture(scope="session")
def provider_sandbox() -> Iterator[Any]:
    """The local stack's provider sandbox on a loopback port: Twilio's API, recorded."""
    from werkzeug.serving import make_server

    from devstack.sandbox import ProviderSandbox

    sandbox = ProviderSandbox()
    server = make_server("127.0.0.1", 0, sandbox, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sandbox.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    try:
        yield sandbox
    finally:
        server.shutdown()


@pytest.fixture(autouse=True)
def _fresh_sandbox(provider_sandbox: Any) -> None:
    provider_sandbox.clear()


@pytest.fixture(scope="session")
def stack(provider_sandbox: Any) -> Iterator[Any]:
    """moto server plus the template's resources, for the whole session."""
    from devstack.stack import EmbeddedAws, sandbox_parameters

    parameters = {
        "PublicBaseUrl": f"https://{WEBHOOK_HOST}",
        **sandbox_parameters(load_template()["Parameters"], provider_sandbox.url),
        "EmailFromAddress": EMAIL_FROM,
    }
    with EmbeddedAws.start(parameters=parameters) as embedded:
        yield embedded


@pytest.fixture(scope="session")
def auth_token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def function_env(stack: Any, auth_token: str) -> Callable[[str], dict[str, str]]:
    stack.put_secret("TwilioAuthTokenParameterName", auth_token)
    stack.put_secret("TwilioAccountSidParameterName", ACCOUNT_SID)
    return stack.function_environment


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def aws_env(stack: Any) -> Iterator[None]:
    with _environment(stack.client_environment()):
        yield


@pytest.fixture(scope="session")
def twilio_module(function_env: Callable[[str], dict[str, str]], aws_env: None) -> ModuleType:
    os.environ.update(function_env("TwilioMessagingFunction"))
    return load_handler_module("functions/twilio_messaging")


@pytest.fixture(scope="session")
def status_module(function_env: Callable[[str], dict[str, str]], aws_env: None) -> ModuleType:
    os.environ.update(function_env("TwilioStatusFunction"))
    return load_handler_module("functions/twilio_status")


@pytest.fixture(scope="session")
def dispatcher_module(function_env: Callable[[str], dict[str, str]], aws_env: None) -> ModuleType:
    os.environ.update(function_env("DispatcherFunction"))
    return load_handler_module("functions/dispatcher")


@pytest.fixture(scope="session")
def publisher_module(function_env: Callable[[str], dict[str, str]], aws_env: None) -> ModuleType:
    os.environ.update(function_env("PublisherFunction"))
    return load_handler_module("functions/publisher")


@pytest.fixture(scope="session")
def api_module(function_env: Callable[[str], dict[str, str]], aws_env: None) -> ModuleType:
    os.environ.update(function_env("ApiFunction"))
    return load_handler_module("functions/api")


@pytest.fixture(scope="session")
def aws(stack: Any, aws_env: None) -> SimpleNamespace:
    return SimpleNamespace(
        dynamodb=boto3.client("dynamodb"),
        s3=boto3.client("s3"),
        table=stack.physical_id("Table"),
        bucket=stack.physical_id("RawBucket"),
    )


def http_api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event, as API Gateway builds it."""
    all_headers = {"host": WEBHOOK_HOST, "x-forwarded-proto": "https", **(headers or {})}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "domainName": WEBHOOK_HOST,
            "http": {"method": method, "path": path, "sourceIp": "127.0.0.1"},
            "requestId": "test",
            "stage": "$default",
        },
        "isBase64Encoded": body is not None,
    }
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
    return event


@pytest.fixture
def twilio_post(twilio_module: ModuleType, auth_token: str) -> Callable[..., dict[str, Any]]:
    def post(params: dict[str, str], *, signature: str | None = None) -> dict[str, Any]:
        url = f"https://{WEBHOOK_HOST}{TWILIO_PATH}"
        signed = signature or RequestValidator(auth_token).compute_signature(url, params)
        event = http_api_event(
            "POST",
            TWILIO_PATH,
            body=urlencode(params).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": signed,
            },
        )
        result: dict[str, Any] = twilio_module.lambda_handler(event, LambdaContext())
        return result

    return post


@pytest.fixture
def api_get(api_module: ModuleType) -> Callable[..., dict[str, Any]]:
    def get(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        event = http_api_event("GET", path, query=urlencode(query or {}))
        event["routeKey"] = "ANY /v1/{proxy+}"
        result: dict[str, Any] = api_module.lambda_handler(event, LambdaContext())
        return result

    return get


@pytest.fixture
def count_aws_calls(
    twilio_module: ModuleType,
) -> Callable[[], contextlib.AbstractContextManager[list[str]]]:
    """Record every AWS API call the Twilio handler's clients make inside the block."""

    @contextlib.contextmanager
    def counting() -> Iterator[list[str]]:
        calls: list[str] = []

        def record(model: Any, **_: Any) -> None:
            calls.append(f"{model.service_model.service_name}.{model.name}")

        clients = [twilio_module.store.dynamodb, twilio_module.store.s3]
        for client in clients:
            client.meta.events.register("before-call.*.*", record)
        try:
            yield calls
        finally:
            for client in clients:
                client.meta.events.unregister("before-call.*.*", record)

    return counting
