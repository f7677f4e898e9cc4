"""The satisfaction survey (docs/analytics.md "CSAT") against moto: a resolved close
queues the question, the customer's answer is a rating, not a new conversation."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.conftest import load_handler_module
from tests.integration.conftest import LambdaContext, http_api_event
from tests.integration.test_conversations import (
    body,
    conversations_of,
    customer_id_of,
    new_number,
    new_sid,
)
from tests.integration.test_outbound import Pipeline
from tests.integration.test_twilio_ingest import sms
from threadline.events import events_from_stream_record
from threadline.outcomes import SURVEY_QUESTION


@pytest.fixture
def survey_on(monkeypatch):
    monkeypatch.setenv("CSAT_SURVEY", "on")


@pytest.fixture
def api_post(api_module):
    """POST (or another method) a JSON body to the API function."""

    def call(path: str, payload: Any = None, method: str = "POST") -> dict[str, Any]:
        event = http_api_event(method, path, headers={"content-type": "application/json"})
        event.update(isBase64Encoded=False, routeKey="ANY /v1/{proxy+}")
        event["body"] = json.dumps(payload) if payload is not None else ""
        return api_module.lambda_handler(event, LambdaContext())

    return call


@pytest.fixture
def pipeline(stack, publisher_module, dispatcher_module, aws_env) -> Pipeline:
    pipe = Pipeline(stack, publisher_module, dispatcher_module)
    while pipe.stream_records():  # skip what earlier tests left
        pass
    return pipe


def item(aws, pk: str, sk: str) -> dict[str, Any]:
    return aws.dynamodb.get_item(
        TableName=aws.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    ).get("Item", {})


def timeline(api_get, customer_id: str) -> list[dict[str, Any]]:
    response = api_get(f"/v1/customers/{customer_id}/timeline")
    assert response["statusCode"] == 200, response
    return list(body(response)["items"])


def answered_and_closed(twilio_post, api_get, api_post, number: str) -> tuple[str, str]:
    """A customer wrote by SMS, an agent answered, the agent closed it resolved."""
    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    customer_id = customer_id_of(api_get, f"phone:{number}")
    reply = api_post(f"/v1/customers/{customer_id}/messages", {"text": "Sent again"})
    assert reply["statusCode"] == 202, reply
    (opened,) = conversations_of(api_get, customer_id)["items"]
    closed = api_post(f"/v1/conversations/{opened['id']}/close", {"resolution": "resolved"})
    assert closed["statusCode"] == 200, closed
    return customer_id, str(opened["id"])


def test_a_resolved_close_asks_and_the_answer_is_a_rating_not_a_conversation(
    survey_on, twilio_post, api_get, api_post, aws, pipeline
):
    number = new_number()
    customer_id, conversation_id = answered_and_closed(twilio_post, api_get, api_post, number)
    conv = item(aws, f"CUST#{customer_id}", f"CONV#{conversation_id}")
    assert "csat_requested_at" in conv
    question_id = conv["csat_question_message_id"]["S"]
    question = next(m for m in timeline(api_get, customer_id) if m["id"] == question_id)
    assert question["parts"][0]["text"] == SURVEY_QUESTION
    assert (question["channel"], question["status"]) == ("sms", "queued")
    assert question["channel_data"]["purpose"] == "survey"
    assert question["author_role"] == "system"
    # Closing again (idempotent) asks nothing more.
    api_post(f"/v1/conversations/{conversation_id}/close")
    questions = [m for m in timeline(api_get, customer_id) if m["author_role"] == "system"]
    assert len(questions) == 1
    pipeline.stream_records()  # the question's own changes, published elsewhere

    assert twilio_post(sms(new_sid(), sender=number, body="5"))["statusCode"] == 200
    (rated,) = conversations_of(api_get, customer_id)["items"]  # no new conversation
    assert rated["id"] == conversation_id and rated["state"] == "closed"
    assert rated["rating"]["score"] == 5 and rated["rating"]["channel"] == "sms"
    assert rated["repeat_conversation_id"] is None  # not a repeat contact
    profile = item(aws, f"CUST#{customer_id}", "PROFILE")
    assert profile["last_csat"]["M"]["score"]["N"] == "5"
    assert "open_conversation_id" not in profile
    assert "csat_pending" not in item(aws, f"IDENT#phone#{number}", "IDENT")
    answer = timeline(api_get, customer_id)[0]
    assert answer["conversation_id"] == conversation_id and answer["parts"][0]["text"] == "5"

    events = [e for r in pipeline.stream_records() for e in events_from_stream_record(r)]
    (event,) = [e for e in events if e.type == "conversation.rated"]
    assert event.model_dump(mode="json")["rating"]["score"] == 5
    assert "conversation.opened" not in {e.type for e in events}

    # The question is answered: a later "4" is an ordinary message again.
    assert twilio_post(sms(new_sid(), sender=number, body="4"))["statusCode"] == 200
    newer, older = conversations_of(api_get, customer_id)["items"]
    assert newer["state"] == "open" and older["rating"]["score"] == 5


def test_a_score_with_no_question_pending_is_an_ordinary_message(
    twilio_post, api_get, api_post, aws
):
    number = new_number()  # CSAT_SURVEY is off (the template's default)
    customer_id, conversation_id = answered_and_closed(twilio_post, api_get, api_post, number)
    assert "csat_requested_at" not in item(aws, f"CUST#{customer_id}", f"CONV#{conversation_id}")
    assert twilio_post(sms(new_sid(), sender=number, body="5"))["statusCode"] == 200
    newer, older = conversations_of(api_get, customer_id)["items"]
    assert newer["state"] == "open" and older["rating"] is None
    assert newer["previous_conversation_id"] == conversation_id  # a repeat contact


def test_a_customer_who_refused_surveys_is_not_asked(
    survey_on, twilio_post, api_get, api_post, aws
):
    number = new_number()
    assert twilio_post(sms(new_sid(), sender=number))["statusCode"] == 200
    customer_id = customer_id_of(api_get, f"phone:{number}")
    refusal = {"identity": f"phone:{number}", "purpose": "survey", "state": "withdrawn"}
    consent = api_post(f"/v1/customers/{customer_id}/consent", refusal, method="PUT")
    assert consent["statusCode"] == 200, consent
    api_post(f"/v1/customers/{customer_id}/messages", {"text": "Sent again"})
    (opened,) = conversations_of(api_get, customer_id)["items"]
    assert api_post(f"/v1/conversations/{opened['id']}/close")["statusCode"] == 200

    assert not [m for m in timeline(api_get, customer_id) if m["author_role"] == "system"]
    assert "csat_pending" not in item(aws, f"IDENT#phone#{number}", "IDENT")


def test_the_sweeper_asks_after_a_quiet_resolved_close(
    twilio_module, api_module, api_get, aws, function_env, monkeypatch
):
    from datetime import timedelta

    from tests.integration.test_conversations import RAW
    from threadline.channels.twilio.messaging import normalize_form
    from threadline.outbound import SendMessageRequest
    from threadline.schema import utc_now

    for name, value in function_env("ConversationSweeperFunction").items():
        monkeypatch.setenv(name, value)
    assert os.environ["CSAT_SURVEY"] == "off"  # the template's default
    monkeypatch.setenv("CSAT_SURVEY", "on")
    sweeper = load_handler_module("functions/conversation_sweeper")
    number = new_number()
    earlier = utc_now() - timedelta(hours=25)
    first = twilio_module.store.ingest(
        normalize_form(sms(new_sid(), sender=number)), RAW, received_at=earlier
    )
    api_module.store.queue_message(
        first.customer_id, SendMessageRequest(text="Done!"), now=earlier + timedelta(minutes=1)
    )
    assert sweeper.lambda_handler({}, LambdaContext())["closed"] >= 1
    (closed,) = conversations_of(api_get, first.customer_id)["items"]
    assert (closed["state"], closed["resolution"]) == ("closed", "resolved")
    pending = item(aws, f"IDENT#phone#{number}", "IDENT")["csat_pending"]["M"]
    assert pending["conversation_id"]["S"] == closed["id"]
