"""The local gateway's AWS service integrations (SQS-SendMessage), without sockets."""

from __future__ import annotations

import json

import pytest

from devstack.apigw import HttpRequest
from devstack.integrations import SqsSendMessage, evaluate
from devstack.template import TemplateError

REQUEST = HttpRequest(
    method="POST",
    path="/webhooks/twilio/fallback",
    raw_query="a=1&b=two",
    headers=[("Host", "api.example.com"), ("X-Twilio-Signature", "c2ln")],
    body=b"MessageSid=SM1&Body=hi",
)


class RecordingSqs:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_message(self, **arguments):
        self.sent.append(arguments)
        return {"MessageId": "m-1", "MD5OfMessageBody": "x", "ResponseMetadata": {}}


def test_the_body_expression_is_the_raw_body():
    assert evaluate("$request.body", REQUEST, "rid") == "MessageSid=SM1&Body=hi"


def test_header_query_and_context_expressions_inside_a_string():
    text = "${request.header.x-twilio-signature}|${request.querystring.b}|${context.requestId}"
    assert evaluate(text, REQUEST, "rid") == "c2ln|two|rid"
    assert int(evaluate("${context.requestTimeEpoch}", REQUEST, "rid")) > 1_700_000_000_000


def test_a_send_carries_the_mapped_attributes():
    integration = SqsSendMessage(
        "Fallback",
        {
            "QueueUrl": "http://127.0.0.1:1/123/q",
            "MessageBody": "$request.body",
            "MessageAttributes": json.dumps(
                {
                    "Signature": {
                        "DataType": "String",
                        "StringValue": "${request.header.x-twilio-signature}",
                    }
                }
            ),
        },
    )
    sqs = RecordingSqs()
    response = integration.call(sqs, REQUEST, "rid")
    assert response.status == 200
    assert (
        json.loads(response.body)["SendMessageResponse"]["SendMessageResult"]["MessageId"] == "m-1"
    )
    assert sqs.sent == [
        {
            "QueueUrl": "http://127.0.0.1:1/123/q",
            "MessageBody": "MessageSid=SM1&Body=hi",
            "MessageAttributes": {"Signature": {"DataType": "String", "StringValue": "c2ln"}},
        }
    ]


def test_a_missing_mapped_header_is_sqs_own_400_and_nothing_is_sent():
    """SQS refuses an empty attribute value; API Gateway hands its 4xx back."""
    integration = SqsSendMessage(
        "Fallback",
        {
            "QueueUrl": "q",
            "MessageBody": "$request.body",
            "MessageAttributes": json.dumps(
                {"Missing": {"DataType": "String", "StringValue": "${request.header.x-absent}"}}
            ),
        },
    )
    sqs = RecordingSqs()
    response = integration.call(sqs, REQUEST, "rid")
    assert response.status == 400
    assert json.loads(response.body)["Error"]["Code"] == "InvalidParameterValue"
    assert sqs.sent == []


@pytest.mark.parametrize(
    "parameters",
    [
        {"MessageBody": "$request.body"},
        {"QueueUrl": "q", "MessageBody": "x", "Unknown": "y"},
        {"QueueUrl": "q", "MessageBody": "${stageVariables.thing}"},
    ],
)
def test_what_the_local_gateway_cannot_do_stops_the_stack(parameters):
    with pytest.raises(TemplateError):
        SqsSendMessage("Fallback", parameters)
