"""devstack without processes or sockets: template reading, intrinsics, routes, events.

Everything here runs on plain data; the behaviour of the running stack is in
tests/integration/test_devstack_stack.py.
"""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path
from urllib.parse import urlencode

import pytest
from werkzeug.test import Client

from devstack.apigw import (
    HttpRequest,
    InvalidResponse,
    body_is_text,
    build_event,
    map_response,
)
from devstack.aws import physical_name
from devstack.functions import load_functions
from devstack.gateway import Gateway
from devstack.intrinsics import references
from devstack.resources import creation_order
from devstack.routes import Route, RouteMatch, RouteTable, http_routes
from devstack.runtime import RESERVED_VARIABLES, Invocation, function_environment
from devstack.secrets import secret_env_name
from devstack.template import (
    LOCAL_CODE_BUCKET,
    TemplateError,
    load_template,
    parse_template_text,
)
from tests.unit.devstack_fakes import fake_stack

TEMPLATE = """
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedPattern: "^[a-z0-9-]{1,20}$"
  LogLevel:
    Type: String
    Default: INFO
    AllowedValues: [DEBUG, INFO]
  MaxBytes:
    Type: Number
    Default: 8192
    MinValue: 0
    MaxValue: 131072
  DemoSecretParameterName:
    Type: String
    Default: /demo/secret
  PublicBaseUrl:
    Type: String
    Default: ""
Conditions:
  HasPublicBaseUrl: !Not [!Equals [!Ref PublicBaseUrl, ""]]
Mappings:
  Sizes:
    dev: {memory: 256}
Globals:
  Function:
    Runtime: python3.12
    MemorySize: 512
    Timeout: 10
    Layers: [!Ref Layer]
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        STAGE: !Ref Stage
        REDACTION: "on"
  HttpApi:
    Auth:
      EnableIamAuthorizer: true
      DefaultAuthorizer: AWS_IAM
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: shared/
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
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Bucket:
    Type: AWS::S3::Bucket
  BucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Statement:
          - Resource: [!GetAtt Bucket.Arn, !Sub "${Bucket.Arn}/*"]
  Webhook:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/webhook/
      Handler: app.lambda_handler
      MemorySize: !FindInMap [Sizes, !Ref Stage, memory]
      Environment:
        Variables:
          SECRET_PARAM: !Ref DemoSecretParameterName
          MAX_BYTES: !Ref MaxBytes
          BUCKET_ARN: !GetAtt Bucket.Arn
          BASE_URL: !If
            - HasPublicBaseUrl
            - !Ref PublicBaseUrl
            # Not its own API: that API's body names this function (a cycle CloudFormation
            # refuses).
            - !Sub "https://${ServerlessHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
          DROPPED: !Ref AWS::NoValue
      Events:
        Inbound:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: POST
            Path: /webhooks/demo
            Auth:
              Authorizer: NONE
  Rest:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/rest/
      Handler: app.lambda_handler
      Events:
        V1:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: ANY
            Path: /v1/{proxy+}
        Health:
          Type: HttpApi
          Properties:
            Method: GET
            Path: /v1/health
"""


@pytest.fixture
def template(tmp_path: Path):
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    return load_template(path)


class FakeResources:
    """What create_resources would return, without an AWS to create anything in."""

    def __init__(self, template, parameters=None, resources=None):
        defaults = {
            "Layer": ("arn:aws:lambda:us-east-1:123456789012:layer:shared:1", {}),
            "Api": ("zyx987wvut", {}),
            "ServerlessHttpApi": ("abc123defg", {}),
            "Table": ("demo-dev-Table-XYZ", {"Arn": "arn:aws:dynamodb:::table/demo-dev-Table-XYZ"}),
            "Bucket": ("demo-bucket", {"Arn": "arn:aws:s3:::demo-bucket"}),
            "BucketPolicy": ("policy", {}),
            "Webhook": ("demo-dev-Webhook-ABC", {"Arn": "arn:aws:lambda:::function:w"}),
            "Rest": ("demo-dev-Rest-ABC", {"Arn": "arn:aws:lambda:::function:r"}),
        }
        self.stack = fake_stack(template, {**defaults, **(resources or {})}, parameters)


# --- template reading ------------------------------------------------------------------


def test_short_tags_become_the_long_form_and_dates_stay_strings():
    body = parse_template_text(
        textwrap.dedent(
            """
            AWSTemplateFormatVersion: 2010-09-09
            Resources:
              X:
                Type: T
                Properties:
                  A: !Ref Table
                  B: !GetAtt Table.StreamArn
                  C: !GetAtt [Table, Arn]
                  D: !Sub "${Table.Arn}/*"
                  E: !If [Cond, yes, no]
                  F: !Condition Cond
            """
        )
    )
    assert body["AWSTemplateFormatVersion"] == "2010-09-09"
    properties = body["Resources"]["X"]["Properties"]
    assert properties["A"] == {"Ref": "Table"}
    assert properties["B"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert properties["C"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert properties["D"] == {"Fn::Sub": "${Table.Arn}/*"}
    assert properties["E"] == {"Fn::If": ["Cond", True, False]}
    assert properties["F"] == {"Condition": "Cond"}


def test_a_file_without_resources_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("just: text\n")
    with pytest.raises(TemplateError, match="Resources"):
        load_template(path)


def test_parameter_values_use_defaults_and_check_overrides(template):
    assert template.parameter_values() == {
        "Stage": "dev",
        "LogLevel": "INFO",
        "MaxBytes": "8192",
        "DemoSecretParameterName": "/demo/secret",
        "PublicBaseUrl": "",
    }
    assert template.parameter_values({"Stage": "prod"})["Stage"] == "prod"
    with pytest.raises(TemplateError, match="does not match"):
        template.parameter_values({"Stage": "Not Valid"})
    with pytest.raises(TemplateError, match="not one of"):
        template.parameter_values({"LogLevel": "TRACE"})
    with pytest.raises(TemplateError, match="above"):
        template.parameter_values({"MaxBytes": "200000"})
    with pytest.raises(TemplateError, match="unknown parameter"):
        template.parameter_values({"Nope": "x"})


def test_sam_is_translated_with_globals_merged_and_code_kept_local(template):
    assert template.resource_type("Webhook") == "AWS::Lambda::Function"
    properties = template.properties("Webhook")
    assert properties["Timeout"] == 10
    assert properties["Code"] == {"S3Bucket": LOCAL_CODE_BUCKET, "S3Key": "functions/webhook/"}
    [layer] = properties["Layers"]
    assert template.resource_type(layer["Ref"]) == "AWS::Lambda::LayerVersion"
    assert {"TABLE_NAME", "STAGE", "REDACTION", "SECRET_PARAM"} <= set(
        properties["Environment"]["Variables"]
    )


# --- intrinsics --------------------------------------------------------------------------


def test_intrinsics_resolve_against_parameters_pseudo_parameters_and_resources(template):
    stack = FakeResources(template).stack
    resolve = stack.resolve
    assert resolve({"Ref": "Stage"}) == "dev"
    assert resolve({"Ref": "Table"}) == "demo-dev-Table-XYZ"
    assert resolve({"Ref": "AWS::Region"}) == "us-east-1"
    assert resolve({"Fn::GetAtt": ["Bucket", "Arn"]}) == "arn:aws:s3:::demo-bucket"
    assert resolve({"Fn::Sub": "${Bucket.Arn}/*"}) == "arn:aws:s3:::demo-bucket/*"
    assert resolve({"Fn::Sub": "/aws/lambda/${Webhook}-${Stage}"}) == (
        "/aws/lambda/demo-dev-Webhook-ABC-dev"
    )
    assert resolve({"Fn::Sub": "${!Literal}-${AWS::AccountId}"}) == "${Literal}-123456789012"
    assert resolve({"Fn::Sub": ["${a}-${Stage}", {"a": {"Ref": "Table"}}]}) == (
        "demo-dev-Table-XYZ-dev"
    )
    assert resolve({"Fn::Join": ["/", ["a", {"Ref": "Stage"}]]}) == "a/dev"
    assert resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]}) == 256
    assert resolve({"Fn::If": ["HasPublicBaseUrl", "a", "b"]}) == "b"
    assert resolve({"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Ref": "AWS::NoValue"}]}) == {"B": [1]}
    with pytest.raises(TemplateError, match="no such parameter or resource"):
        resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match="not supported"):
        resolve({"Fn::ImportValue": "x"})


def test_conditions_follow_parameter_overrides(template):
    stack = FakeResources(template, {"PublicBaseUrl": "https://hooks.example.com"}).stack
    assert stack.resolve({"Fn::If": ["HasPublicBaseUrl", {"Ref": "PublicBaseUrl"}, "x"]}) == (
        "https://hooks.example.com"
    )


def test_references_and_creation_order(template):
    assert references({"Fn::Sub": "${Bucket.Arn}/${Stage}/${x}"}) == {"Bucket", "Stage", "x"}
    assert references({"Fn::Sub": ["${x}", {"x": {"Ref": "Table"}}]}) == {"Table"}
    order = creation_order(template)
    assert order.index("Bucket") < order.index("BucketPolicy")
    assert order.index("Table") < order.index("Webhook")
    assert order.index("ServerlessHttpApi") < order.index("Webhook")
    assert order.index("Webhook") < order.index("Api")  # its body names the function


def test_a_reference_cycle_is_reported(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n"
        "  A: {Type: X, Properties: {P: !Ref B}}\n"
        "  B: {Type: X, Properties: {P: !GetAtt A.Arn}}\n"
    )
    with pytest.raises(TemplateError, match="circular"):
        creation_order(load_template(path))


# --- names and secrets -------------------------------------------------------------------


def test_physical_names_look_like_cloudformation_and_are_stable():
    name = physical_name("threadline-dev", "Table")
    assert name.startswith("threadline-dev-Table-")
    assert len(name.rsplit("-", 1)[1]) == 12
    assert name == physical_name("threadline-dev", "Table")
    assert name != physical_name("threadline-prod", "Table")
    bucket = physical_name("threadline-dev", "RawBucket", max_length=63, lowercase=True)
    assert bucket == bucket.lower() and len(bucket) <= 63
    long = physical_name("s" * 80, "VeryLongLogicalIdForAFunction" * 3, max_length=64)
    assert len(long) <= 64


@pytest.mark.parametrize(
    ("parameter", "env_name"),
    [
        ("TwilioAuthTokenParameterName", "TWILIO_AUTH_TOKEN"),
        ("SlackSigningSecretParameterName", "SLACK_SIGNING_SECRET"),
        ("MetaAppSecretParameterName", "META_APP_SECRET"),
        ("TelegramSecretTokenParameterName", "TELEGRAM_SECRET_TOKEN"),
        ("SESApiKeyParameterName", "SES_API_KEY"),
        ("PublicBaseUrl", None),
        ("ParameterName", None),
    ],
)
def test_secret_parameters_map_to_environment_variables(parameter, env_name):
    assert secret_env_name(parameter) == env_name


# --- functions and their environment -----------------------------------------------------


def test_functions_get_globals_resolved_variables_and_layers(template):
    stack = FakeResources(template).stack
    spec = load_functions(stack)["Webhook"]
    assert spec.name == "demo-dev-Webhook-ABC"
    assert spec.memory_mb == 256
    assert spec.timeout_seconds == 10
    assert spec.code_dir == template.root / "functions" / "webhook"
    assert spec.python_path == [
        str(template.root / "functions/webhook"),
        str(template.root / "shared"),
    ]
    assert spec.variables == {
        "TABLE_NAME": "demo-dev-Table-XYZ",
        "STAGE": "dev",
        "REDACTION": "on",
        "SECRET_PARAM": "/demo/secret",
        "MAX_BYTES": "8192",
        "BUCKET_ARN": "arn:aws:s3:::demo-bucket",
        "BASE_URL": "https://abc123defg.execute-api.us-east-1.amazonaws.com",
    }


def test_function_environment_is_the_template_plus_what_lambda_sets(template, monkeypatch):
    monkeypatch.setenv("ONLY_IN_THE_PARENT", "1")
    stack = FakeResources(template).stack
    spec = load_functions(stack)["Webhook"]
    env = function_environment(spec, stack.aws, path="/usr/bin")
    assert "ONLY_IN_THE_PARENT" not in env
    lambda_set = {
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
        "POWERTOOLS_TRACE_DISABLED",  # no X-Ray daemon locally
    }
    assert set(env) == set(spec.variables) | lambda_set
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["TZ"] == "UTC"
    assert env["PATH"] == "/usr/bin"
    assert env["PYTHONPATH"].split(":") == spec.python_path


def test_a_reserved_variable_in_the_template_is_refused_like_lambda_would(template):
    stack = FakeResources(template).stack
    spec = load_functions(stack)["Webhook"]
    spec = type(spec)(**{**spec.__dict__, "variables": {**spec.variables, "AWS_REGION": "x"}})
    assert "AWS_REGION" in RESERVED_VARIABLES
    with pytest.raises(TemplateError, match="reserved"):
        function_environment(spec, stack.aws)


# --- routes ------------------------------------------------------------------------------


def test_routes_come_from_http_api_events_with_their_effective_auth(template):
    stack = FakeResources(template).stack
    routes = {route.key: route for route in http_routes(stack, load_functions(stack))}
    assert set(routes) == {"POST /webhooks/demo", "ANY /v1/{proxy+}", "GET /v1/health"}
    assert routes["POST /webhooks/demo"].authorizer is None  # Authorizer: NONE
    assert routes["ANY /v1/{proxy+}"].authorizer == "AWS_IAM"  # the Api's default
    assert routes["GET /v1/health"].authorizer == "AWS_IAM"  # Globals.HttpApi, implicit API
    assert routes["GET /v1/health"].api == "ServerlessHttpApi"


def test_the_most_specific_route_wins():
    table = RouteTable(
        [
            Route("ANY", "/v1/{proxy+}", "Proxy"),
            Route("GET", "/v1/health", "Health"),
            Route("ANY", "/v1/customers/{id}", "AnyCustomer"),
            Route("GET", "/v1/customers/{id}", "GetCustomer"),
            Route("GET", "/v1/customers/me", "Me"),
            Route("ANY", "$default", "Default"),
        ]
    )

    def which(method, path):
        match = table.match(method, path)
        return (match.route.function, dict(match.path_parameters)) if match else None

    assert which("GET", "/v1/health") == ("Health", {})
    assert which("POST", "/v1/health") == ("Proxy", {"proxy": "health"})
    assert which("GET", "/v1/customers/me") == ("Me", {})
    assert which("GET", "/v1/customers/c1") == ("GetCustomer", {"id": "c1"})
    assert which("DELETE", "/v1/customers/c1") == ("AnyCustomer", {"id": "c1"})
    assert which("GET", "/v1/customers/c1/timeline") == (
        "Proxy",
        {"proxy": "customers/c1/timeline"},
    )
    assert which("GET", "/v1") == ("Default", {})
    assert which("GET", "/elsewhere") == ("Default", {})


def test_no_route_means_no_match():
    table = RouteTable([Route("POST", "/webhooks/twilio/messaging", "Twilio")])
    assert table.match("GET", "/webhooks/twilio/messaging") is None
    assert table.match("POST", "/webhooks/twilio") is None
    assert table.match("POST", "/webhooks/twilio/messaging/x") is None
    assert table.match("POST", "/webhooks/twilio/messaging").route.key == (
        "POST /webhooks/twilio/messaging"
    )


def test_a_route_defined_twice_is_refused():
    with pytest.raises(TemplateError, match="twice"):
        RouteTable([Route("GET", "/a", "A"), Route("GET", "/a", "B")])


# --- request -> event --------------------------------------------------------------------

ROUTE = Route("POST", "/webhooks/twilio/messaging", "Twilio")


def _event(**overrides):
    request = HttpRequest(
        **{
            "method": "POST",
            "path": "/webhooks/twilio/messaging",
            "raw_query": "",
            "headers": [("Host", "127.0.0.1:3000"), ("User-Agent", "TwilioProxy/1.1")],
            "port": 3000,
            **overrides,
        }
    )
    return build_event(
        request,
        RouteMatch(ROUTE, {}),
        api_id="abc123",
        account_id="123456789012",
        request_id="REQ=",
        now=1_700_000_000.123,
    )


def test_raw_query_string_is_passed_byte_for_byte():
    raw = "b=2&a=%2B15551234567&a=x%20y&empty=&plus=a+b"
    event = _event(raw_query=raw)
    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == {
        "b": "2",
        "a": "+15551234567,x y",
        "empty": "",
        "plus": "a b",
    }


def test_form_bodies_arrive_base64_encoded_like_api_gateway_sends_them():
    body = urlencode({"From": "+15551234567", "Body": "Hi there"}).encode()
    event = _event(
        body=body,
        headers=[("Host", "h"), ("Content-Type", "application/x-www-form-urlencoded")],
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body
    assert event["headers"]["content-length"] == str(len(body))


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("text/plain", True),
        ("application/xml", True),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_which_bodies_are_text(content_type, text):
    assert body_is_text(content_type) is text


def test_json_bodies_arrive_as_text_and_empty_bodies_not_at_all():
    event = _event(body=b'{"a": 1}', headers=[("Content-Type", "application/json")])
    assert event["body"] == '{"a": 1}'
    assert event["isBase64Encoded"] is False
    empty = _event()
    assert "body" not in empty
    assert empty["isBase64Encoded"] is False
    assert "queryStringParameters" not in empty
    assert "pathParameters" not in empty


def test_event_shape_matches_payload_v2():
    event = _event(
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("X-Twilio-Signature", "abc="),
            ("Accept", "text/xml"),
            ("accept", "application/json"),
            ("Cookie", "a=1; b=2"),
            ("User-Agent", "TwilioProxy/1.1"),
        ],
        source_ip="10.0.0.7",
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/twilio/messaging"
    assert event["rawPath"] == "/webhooks/twilio/messaging"
    assert event["cookies"] == ["a=1", "b=2"]
    headers = event["headers"]
    assert "cookie" not in headers
    assert headers["x-twilio-signature"] == "abc="
    assert headers["accept"] == "text/xml,application/json"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == "3000"
    assert headers["x-forwarded-for"] == "10.0.0.7"
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/webhooks/twilio/messaging",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.7",
        "userAgent": "TwilioProxy/1.1",
    }
    assert context["domainName"] == "127.0.0.1:3000"
    assert context["stage"] == "$default"
    assert context["routeKey"] == event["routeKey"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "abc123"
    assert context["requestId"] == "REQ="
    assert context["timeEpoch"] == 1_700_000_000_123
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"


def test_path_parameters_are_included():
    route = Route("ANY", "/v1/{proxy+}", "Api")
    request = HttpRequest("GET", "/v1/customers/c1", "", [("Host", "h")])
    event = build_event(
        request,
        RouteMatch(route, {"proxy": "customers/c1"}),
        api_id="a",
        account_id="1",
        request_id="r",
    )
    assert event["routeKey"] == "ANY /v1/{proxy+}"
    assert event["pathParameters"] == {"proxy": "customers/c1"}


# --- result -> response ------------------------------------------------------------------


def test_a_result_without_status_code_is_a_200_json_response():
    response = map_response({"status": "ok"})
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"status": "ok"}
    assert map_response("hello").body == b'"hello"'


def test_a_full_v2_response_maps_to_http():
    response = map_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/xml", "X-Count": 3, "Content-Length": "999"},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "cookies": ["s=1; HttpOnly", "t=2"],
            "body": "<Response></Response>",
        }
    )
    assert response.status == 201
    assert response.header("content-type") == "text/xml"
    assert response.header("Content-Length") is None  # the gateway computes it
    assert ("X-Count", "3") in response.headers
    assert [v for k, v in response.headers if k == "X-Multi"] == ["a", "b"]
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["s=1; HttpOnly", "t=2"]
    assert response.body == b"<Response></Response>"


def test_base64_bodies_are_decoded_and_missing_ones_are_empty():
    png = b"\x89PNG\r\n"
    response = map_response(
        {"statusCode": 200, "body": base64.b64encode(png).decode(), "isBase64Encoded": True}
    )
    assert response.body == png
    assert response.header("Content-Type") == "application/json"
    assert map_response({"statusCode": 204}).body == b""


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "200"},
        {"statusCode": 700},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "headers": {"x": {"nested": 1}}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "cookies": "a=1"},
    ],
)
def test_invalid_results_are_refused(result):
    with pytest.raises(InvalidResponse):
        map_response(result)


# --- the gateway, with a fake runtime ----------------------------------------------------


class FakeRuntime:
    def __init__(self, result=None, error=None):
        self.events = []
        self.result = result if result is not None else {"statusCode": 200, "body": "ok"}
        self.error = error

    def invoke(self, function, event):
        self.events.append((function, event))
        if self.error:
            return Invocation(function, "r", error_type="ValueError", error_message=self.error)
        return Invocation(function, "r", payload=self.result)


def _client(runtime, token=None):
    routes = RouteTable(
        [
            Route("POST", "/webhooks/demo", "Webhook"),
            Route("ANY", "/v1/{proxy+}", "Api", authorizer="AWS_IAM"),
        ]
    )
    gateway = Gateway(
        routes, runtime.invoke, api_ids={}, account_id="123456789012", api_token=token
    )
    return Client(gateway)


def test_gateway_routes_and_passes_the_query_untouched():
    runtime = FakeRuntime()
    response = _client(runtime).post(
        "/webhooks/demo?z=1&a=%2B1%20x",
        data=b"Body=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.get_data() == b"ok"
    assert response.headers["apigw-requestid"]
    function, event = runtime.events[0]
    assert function == "Webhook"
    assert event["rawQueryString"] == "z=1&a=%2B1%20x"
    assert base64.b64decode(event["body"]) == b"Body=hi"


def test_gateway_answers_404_like_api_gateway():
    response = _client(FakeRuntime()).get("/nowhere")
    assert response.status_code == 404
    assert response.get_json() == {"message": "Not Found"}


def test_iam_routes_need_the_bearer_token_only_when_one_is_set():
    assert _client(FakeRuntime()).get("/v1/health").status_code == 200
    guarded = _client(FakeRuntime(), token="s3cret")
    refused = guarded.get("/v1/health")
    assert refused.status_code == 403
    assert refused.get_json() == {"message": "Forbidden"}
    assert guarded.get("/v1/health", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert guarded.get("/v1/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # Webhooks (Authorizer: NONE) are never behind the token.
    assert guarded.post("/webhooks/demo").status_code == 200


def test_a_failed_invocation_is_a_bare_500():
    response = _client(FakeRuntime(error="boom at line 3")).get("/v1/x")
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal Server Error"}
    assert b"boom" not in response.get_data()


def test_an_invalid_handler_result_is_a_bare_500():
    response = _client(FakeRuntime(result={"statusCode": "nope"})).get("/v1/x")
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal Server Error"}


def test_bodies_over_ten_megabytes_are_refused_with_413():
    runtime = FakeRuntime()
    big = b"a" * (10 * 1024 * 1024 + 1)
    response = _client(runtime).post("/webhooks/demo", data=big)
    assert response.status_code == 413
    assert runtime.events == []
    ok = _client(runtime).post("/webhooks/demo", data=b"a" * (10 * 1024 * 1024))
    assert ok.status_code == 200
