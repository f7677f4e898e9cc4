"""Agent notes against moto server: the real API, publisher, dispatcher and privacy
worker handlers; the hops Lambda makes (stream and queue polling) done by hand."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from typing import Any

import jsonschema
import requests

from tests.conftest import REPO_ROOT
from tests.integration.conftest import LambdaContext, http_api_event
from tests.integration.test_outbound import customer_for, pipeline, timeline
from tests.integration.test_privacy import api_call, erase, table_items, worker, worker_module
from tests.integration.test_twilio_ingest import sms
from tests.integration.test_webchat import connect, frame, open_session, send, socket
from tests.integration.test_webchat import customer_of as webchat_customer_of
from tests.integration.test_webchat import store as webchat_store
from threadline.events import events_from_stream_record
from threadline.notes import NoteRequest, add_note

__all__ = [
    "api_call",
    "pipeline",
    "webchat_store",
    "worker",
    "worker_module",
]  # fixtures used below


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def post_note(api_module, path: str, body: Any, key: str | None = None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if key:
        headers["idempotency-key"] = key
    event = http_api_event("POST", path, headers=headers)
    event["routeKey"] = "ANY /v1/{proxy+}"
    event["body"], event["isBase64Encoded"] = json.dumps(body), False
    response = api_module.lambda_handler(event, LambdaContext())
    response["json"] = json.loads(response["body"]) if response.get("body") else None
    return response


def test_a_conversation_note_is_on_the_timeline_published_and_never_sent(
    twilio_post, api_get, api_module, pipeline, provider_sandbox
):
    number = "+15551390001"
    twilio_post(sms(new_sid(), sender=number, body="Where is my parcel?"))
    customer_id = customer_for(api_get, number)
    pipeline.run()  # the inbound message's events: out of the way
    conversation_id = timeline(api_get, customer_id)[0]["conversation_id"]

    created = post_note(
        api_module,
        f"/v1/conversations/{conversation_id}/notes",
        {"text": "Carrier says Tuesday", "agent_id": "agent-7"},
        key="note-1",
    )
    assert created["statusCode"] == 201, created
    note = created["json"]
    assert note["direction"] == "internal" and note["author_role"] == "agent"
    assert note["author_id"] == "agent-7" and note["status"] == "received"
    assert note["conversation_id"] == conversation_id and note["channel"] == "sms"

    # Retried with the same key: the same note, written once.
    again = post_note(
        api_module,
        f"/v1/conversations/{conversation_id}/notes",
        {"text": "Carrier says Tuesday", "agent_id": "agent-7"},
        key="note-1",
    )
    assert again["statusCode"] == 201 and again["json"]["id"] == note["id"]
    reused = post_note(
        api_module, f"/v1/conversations/{conversation_id}/notes", {"text": "other"}, key="note-1"
    )
    assert (
        reused["statusCode"] == 422 and reused["json"]["error"]["code"] == "idempotency_key_reused"
    )

    items = timeline(api_get, customer_id)
    assert [m["direction"] for m in items] == ["internal", "inbound"]
    assert items[0]["id"] == note["id"]

    # Published as message.note_added (valid against its schema), never queued.
    records = pipeline.stream_records()
    events = [e for r in records for e in events_from_stream_record(r)]
    assert [e.type for e in events] == ["message.note_added"]
    schema = json.loads((REPO_ROOT / "infra/schemas/event.message.note_added.v1.json").read_text())
    jsonschema.validate(json.loads(events[0].model_dump_json()), schema)
    assert pipeline.publisher.lambda_handler({"Records": records}, LambdaContext()) == {
        "batchItemFailures": []
    }
    assert pipeline.receive(wait=True) == []  # nothing reached the dispatch queue

    # Even a forged dispatch job naming the note sends nothing.
    forged = {"detail": {"message": {"customer_id": customer_id, "id": note["id"]}}}
    job = {
        "messageId": "forged-1",
        "receiptHandle": "r",
        "body": json.dumps(forged),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:dispatch",
        "awsRegion": "us-east-1",
    }
    assert pipeline.dispatch([job]) == {"batchItemFailures": []}
    assert provider_sandbox.outbox("twilio") == []
    assert timeline(api_get, customer_id)[0]["status"] == "received"

    # The conversation's figures are the customer's exchange: a note is not a response.
    conversation = json.loads(api_get(f"/v1/conversations/{conversation_id}")["body"])
    assert conversation["first_response_at"] is None
    assert conversation["metrics"]["messages"]["agent"] == 0


def test_a_customer_note_joins_the_open_conversation_and_unknowns_are_404(
    twilio_post, api_get, api_module
):
    number = "+15551390002"
    twilio_post(sms(new_sid(), sender=number, body="Hello"))
    customer_id = customer_for(api_get, number)

    created = post_note(api_module, f"/v1/customers/{customer_id}/notes", {"text": "VIP"})

    assert created["statusCode"] == 201, created
    assert (
        created["json"]["conversation_id"] == timeline(api_get, customer_id)[1]["conversation_id"]
    )
    assert created["json"]["author_id"] is None
    missing = "/v1/customers/01NOSUCHCUSTOMER00000000000/notes"
    assert post_note(api_module, missing, {"text": "x"})["statusCode"] == 404
    missing = "/v1/conversations/01NOSUCHCONVERSATION000000/notes"
    assert post_note(api_module, missing, {"text": "x"})["statusCode"] == 404
    bad = post_note(api_module, f"/v1/customers/{customer_id}/notes", {"text": ""})
    assert bad["statusCode"] in (400, 422)


def test_notes_are_exported_and_erased_with_the_customer(
    twilio_post, api_get, api_module, api_call, worker, aws
):
    number = "+15551390003"
    twilio_post(sms(new_sid(), sender=number, body="I am Quinn"))
    customer_id = customer_for(api_get, number)
    note = post_note(
        api_module, f"/v1/customers/{customer_id}/notes", {"text": "Quinn prefers calls"}, "q-1"
    )["json"]

    started = api_call("POST", f"/v1/customers/{customer_id}/exports")
    assert started["statusCode"] == 202, started
    worker.run()
    done = api_call("GET", f"/v1/customers/{customer_id}/exports/{started['json']['job_id']}")
    archive = zipfile.ZipFile(
        io.BytesIO(requests.get(done["json"]["download_url"], timeout=10).content)
    )
    exported = json.loads(archive.read(f"messages/{note['id']}.json"))
    assert exported["direction"] == "internal" and exported["parts"] == note["parts"]
    assert json.loads(archive.read("manifest.json"))["counts"]["messages"] == 2

    status = erase(api_call, worker, customer_id)

    assert status["counts"]["messages"] == 2
    items = table_items(aws)
    assert [i["pk"]["S"] for i in items if customer_id in json.dumps(i)] == [
        f"ERASURE#{customer_id}"
    ]
    assert not [i for i in items if "Quinn" in json.dumps(i)]  # the note and its key


def test_a_web_chat_visitor_never_sees_a_note_in_the_history(webchat_store):
    granted = open_session(webchat_store, {"name": "Ada"})
    sock = socket(webchat_store)
    connect(sock, granted.token, "conn-note-1")
    ack = send(sock, "conn-note-1", "c-1", "Is the blue one in stock?")
    customer_id = webchat_customer_of(webchat_store, granted.visitor_id)
    assert customer_id is not None
    note, _ = add_note(webchat_store, customer_id, NoteRequest(text="Ada is a reseller"))
    assert note.channel.value == "webchat"

    history = frame(sock, "conn-note-1", {"action": "history"})

    assert [m["id"] for m in history["messages"]] == [ack["message_id"]]
