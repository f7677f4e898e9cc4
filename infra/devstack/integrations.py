"""HTTP API routes that reach an AWS service directly, with no function in the path.

template.yaml declares them as ``AWS::ApiGatewayV2::Route`` resources whose target is
an ``AWS::ApiGatewayV2::Integration`` of type ``AWS_PROXY`` with an
``IntegrationSubtype``. The local gateway supports ``SQS-SendMessage``, the one
threadline uses (Twilio's fallback route), and evaluates its ``RequestParameters``
the way API Gateway does: ``$request.body`` alone, or ``${request.header.name}``,
``${request.querystring.name}``, ``${context.requestId}`` and
``${context.requestTimeEpoch}`` inside a string. Any other subtype or expression
stops the stack at start-up, rather than answering differently from AWS.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from botocore.exceptions import ClientError

from devstack.apigw import HttpRequest, HttpResponse, joined_headers
from devstack.resources import StackResources
from devstack.routes import Route
from devstack.template import TemplateError

SQS_SEND_MESSAGE = "SQS-SendMessage"
_SQS_PARAMETERS = {
    "QueueUrl",
    "MessageBody",
    "MessageAttributes",
    "DelaySeconds",
    "MessageGroupId",
    "MessageDeduplicationId",
    "Region",
}
_EXPRESSION = re.compile(r"\$\{([^}]*)\}")
_SUPPORTED = re.compile(
    r"^(request\.header\.[A-Za-z0-9_-]+|request\.querystring\.[A-Za-z0-9_.-]+"
    r"|context\.requestId|context\.requestTimeEpoch)$"
)


@dataclass(frozen=True)
class SqsSendMessage:
    """An ``SQS-SendMessage`` integration with its request parameters resolved."""

    logical_id: str
    parameters: Mapping[str, str]

    def __post_init__(self) -> None:
        unknown = set(self.parameters) - _SQS_PARAMETERS
        if unknown:
            raise TemplateError(
                f"{self.logical_id}: SQS-SendMessage has no parameter {', '.join(sorted(unknown))}"
            )
        for name in ("QueueUrl", "MessageBody"):
            if name not in self.parameters:
                raise TemplateError(f"{self.logical_id}: SQS-SendMessage needs {name}")
        for value in self.parameters.values():
            for expression in _EXPRESSION.findall(value):
                if not _SUPPORTED.match(expression):
                    raise TemplateError(
                        f"{self.logical_id}: the local gateway cannot evaluate ${{{expression}}}"
                    )

    def call(self, sqs: Any, request: HttpRequest, request_id: str) -> HttpResponse:
        """Send the message; API Gateway's answer (SQS's result, or a bare 500)."""
        values = {
            name: evaluate(value, request, request_id) for name, value in self.parameters.items()
        }
        arguments: dict[str, Any] = {
            "QueueUrl": values["QueueUrl"],
            "MessageBody": values["MessageBody"],
        }
        try:
            if "MessageAttributes" in values:
                attributes = json.loads(values["MessageAttributes"])
                # SQS refuses an empty attribute value (a mapped header that was not
                # sent) with a 400; moto accepts it, so the refusal is made here.
                empty = [name for name, value in attributes.items() if not value.get("StringValue")]
                if empty:
                    return _sqs_refusal(
                        400,
                        "InvalidParameterValue",
                        f"Message attribute '{empty[0]}' must contain a non-empty value.",
                    )
                arguments["MessageAttributes"] = attributes
            if "DelaySeconds" in values:
                arguments["DelaySeconds"] = int(values["DelaySeconds"])
            for name in ("MessageGroupId", "MessageDeduplicationId"):
                if name in values:
                    arguments[name] = values[name]
            result = sqs.send_message(**arguments)
        except ClientError as error:
            # SQS refused the message itself (too large, a bad attribute): API Gateway
            # hands the service's answer back, a 4xx the caller must not retry as is.
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
            if 400 <= status < 500:
                details = error.response.get("Error", {})
                return _sqs_refusal(
                    status, str(details.get("Code", "")), str(details.get("Message", ""))
                )
            body = json.dumps({"message": "Internal Server Error"}).encode()
            return HttpResponse(500, [("Content-Type", "application/json")], body)
        except Exception:
            # API Gateway answers an integration failure with a bare 500; SQS refuses,
            # for one, a message attribute whose mapped header was missing (empty).
            body = json.dumps({"message": "Internal Server Error"}).encode()
            return HttpResponse(500, [("Content-Type", "application/json")], body)
        document = {
            "SendMessageResponse": {
                "ResponseMetadata": {"RequestId": result["ResponseMetadata"].get("RequestId")},
                "SendMessageResult": {
                    "MD5OfMessageBody": result.get("MD5OfMessageBody"),
                    "MessageId": result.get("MessageId"),
                },
            }
        }
        return HttpResponse(
            200, [("Content-Type", "application/json")], json.dumps(document).encode()
        )


def _sqs_refusal(status: int, code: str, message: str) -> HttpResponse:
    """SQS's own error answer, as the integration returns it."""
    document = {"Error": {"Type": "Sender", "Code": code, "Message": message}}
    return HttpResponse(
        status, [("Content-Type", "application/json")], json.dumps(document).encode()
    )


def evaluate(expression: str, request: HttpRequest, request_id: str) -> str:
    """A request parameter's value for ``request``."""
    if expression == "$request.body":
        return request.body.decode("utf-8", errors="replace")
    headers = joined_headers(request.headers)
    query = dict(parse_qsl(request.raw_query, keep_blank_values=True))

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("request.header."):
            return headers.get(name.removeprefix("request.header.").lower(), "")
        if name.startswith("request.querystring."):
            return query.get(name.removeprefix("request.querystring."), "")
        if name == "context.requestId":
            return request_id
        return str(int(time.time() * 1000))  # context.requestTimeEpoch

    return _EXPRESSION.sub(value, expression)


def service_routes(stack: StackResources) -> list[Route]:
    """The routes of ``AWS::ApiGatewayV2::Route`` resources, with their integrations."""
    found: list[Route] = []
    for logical_id in stack:
        resource = stack[logical_id]
        if resource.type != "AWS::ApiGatewayV2::Route":
            continue
        properties = stack.template.properties(logical_id)
        api_ref = properties.get("ApiId")
        if isinstance(api_ref, Mapping) and _is_websocket_api(stack, api_ref.get("Ref")):
            continue  # served by devstack.websocket
        integration_id = _target_integration(logical_id, properties.get("Target"))
        integration = stack.template.properties(integration_id)
        subtype = integration.get("IntegrationSubtype")
        if integration.get("IntegrationType") != "AWS_PROXY" or subtype != SQS_SEND_MESSAGE:
            raise TemplateError(
                f"{logical_id}: the local gateway serves AWS_PROXY {SQS_SEND_MESSAGE} "
                f"integrations only, not {integration.get('IntegrationType')} {subtype}"
            )
        parameters = {
            str(name): str(stack.resolve(value))
            for name, value in (integration.get("RequestParameters") or {}).items()
        }
        api = properties.get("ApiId")
        api_id = str(api["Ref"]) if isinstance(api, Mapping) and "Ref" in api else str(api)
        authorization = str(properties.get("AuthorizationType") or "NONE")
        method, _, path = str(properties.get("RouteKey")).partition(" ")
        found.append(
            Route(
                method.upper(),
                path or method,
                integration_id,
                None if authorization == "NONE" else authorization,
                api_id,
                integration=SqsSendMessage(integration_id, parameters),
            )
        )
    return found


def _is_websocket_api(stack: StackResources, logical_id: Any) -> bool:
    if not isinstance(logical_id, str) or logical_id not in stack:
        return False
    protocol = stack.template.properties(logical_id).get("ProtocolType")
    return str(protocol).upper() == "WEBSOCKET"


def _target_integration(route: str, target: Any) -> str:
    """The integration's logical id from ``!Sub integrations/${Integration}``."""
    text = target.get("Fn::Sub") if isinstance(target, Mapping) else target
    if isinstance(text, str):
        match = re.fullmatch(r"integrations/\$\{([A-Za-z0-9]+)\}", text)
        if match:
            return match.group(1)
    raise TemplateError(f"{route}: Target must be !Sub integrations/${{<Integration>}}")
