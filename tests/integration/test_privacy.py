"""Consent, export and erasure against moto server: the real API, worker, publisher and
dispatcher handlers; the hops Lambda makes (queue and stream polling) done by hand."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
import requests

from tests.conftest import REPO_ROOT, load_handler_module
from tests.integration.conftest import LambdaContext, http_api_event
from tests.integration.test_email_inbound import deliver, mail_from
from tests.integration.test_outbound import Pipeline, customer_for, timeline
from tests.integration.test_twilio_ingest import sms
from threadline.events import events_from_stream_record
from threadline.item_codec import stored_bytes

PNG_PREFIX = b"\x89PNG"
SAMPLE_PNG_BASE64 = (
    b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    b"YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def new_sid() -> str:
    """A Twilio message SID of our own: a fixed one can be another module's (test_meta
    used SMe1e1...), and the second delivery of a SID is a duplicate, stored nowhere."""
    return "SM" + secrets.token_hex(16)


def mail_with_file(sender: str, payload: bytes) -> bytes:
    """A mail from ``sender`` whose attachment is ``payload`` (unique to this test)."""
    raw = mail_from(sender, f"<{secrets.token_hex(6)}@x.example>")
    assert SAMPLE_PNG_BASE64 in raw
    return raw.replace(SAMPLE_PNG_BASE64, base64.b64encode(payload))


@pytest.fixture(scope="module")
def email_module(function_env, aws_env):
    from threadline.settings import store_settings

    store_settings.cache_clear()
    os.environ.update(function_env("EmailInboundFunction"))
    module = load_handler_module("functions/email_inbound")
    store_settings.cache_clear()
    return module


@pytest.fixture(scope="module")
def worker_module(function_env, aws_env):
    os.environ.update(function_env("PrivacyWorkerFunction"))
    return load_handler_module("functions/privacy_worker")


@pytest.fixture
def api_call(api_module, function_env):
    os.environ.update(function_env("ApiFunction"))

    def call(method: str, path: str, body: Any = None, query: str = "") -> dict[str, Any]:
        event = http_api_event(method, path, query=query)
        event["routeKey"] = "ANY /v1/{proxy+}"
        if body is not None:
            event["headers"]["content-type"] = "application/json"
            event["body"] = json.dumps(body)
            event["isBase64Encoded"] = False
        response = api_module.lambda_handler(event, LambdaContext())
        response["json"] = json.loads(response["body"]) if response.get("body") else None
        return response

    return call


class Worker:
    """Lambda's SQS integration for the privacy queue, by hand."""

    def __init__(self, stack, module) -> None:
        self.module = module
        self.sqs = stack.client("sqs")
        self.queue_url = stack.function_environment("PrivacyWorkerFunction")["PRIVACY_QUEUE_URL"]

    def run(self) -> int:
        handled = 0
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=1, AttributeNames=["All"]
            )
            messages = response.get("Messages", [])
            if not messages:
                return handled
            records = [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m["Attributes"],
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:privacy",
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
            result = self.module.lambda_handler({"Records": records}, LambdaContext())
            assert result["batchItemFailures"] == [], result
            for m in messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            handled += len(messages)


@pytest.fixture
def worker(stack, worker_module) -> Worker:
    return Worker(stack, worker_module)


@pytest.fixture
def pipeline(stack, publisher_module, dispatcher_module, aws_env) -> Pipeline:
    pipe = Pipeline(stack, publisher_module, dispatcher_module)
    # Skip what earlier tests left: every page (moto pages 1000 records at a time, and
    # the merge and conversation tests leave more than one), as test_outbound does.
    while pipe.stream_records():
        pass
    while records := pipe.receive(wait=False):
        pipe.delete(records)
    return pipe


def consent_of(api_call, customer_id: str) -> dict[tuple[str, str], dict]:
    response = api_call("GET", f"/v1/customers/{customer_id}/consent")
    assert response["statusCode"] == 200, response
    return {(e["identity"], e["purpose"]): e for e in response["json"]["consent"]}


# ------------------------------------------------------------------------------ consent


def test_stop_withdraws_every_purpose_with_the_message_as_evidence(twilio_post, api_get, api_call):
    number = "+15551250001"
    twilio_post(sms(new_sid(), sender=number))
    customer_id = customer_for(api_get, number)
    identity = f"phone:{number}"

    before = consent_of(api_call, customer_id)
    assert before[(identity, "transactional")]["allowed"] is True
    assert before[(identity, "transactional")]["state"] is None
    # Marketing needs an explicit grant; the satisfaction survey does not.
    assert before[(identity, "marketing")]["allowed"] is False
    assert before[(identity, "survey")]["allowed"] is True
    path = f"/v1/customers/{customer_id}/messages"
    refused = api_call("POST", path, {"text": "20% off", "purpose": "marketing"})
    assert (refused["statusCode"], refused["json"]["error"]["code"]) == (409, "consent_required")

    grant = {
        "identity": identity,
        "purpose": "marketing",
        "state": "granted",
        "evidence": "web-form-8841",
    }
    assert api_call("PUT", f"/v1/customers/{customer_id}/consent", grant)["statusCode"] == 200
    granted = consent_of(api_call, customer_id)[(identity, "marketing")]
    assert granted["allowed"] is True
    assert (granted["source"], granted["evidence"]) == ("api", "web-form-8841")
    assert api_call("POST", path, {"text": "20% off", "purpose": "marketing"})["statusCode"] == 202

    twilio_post(sms(new_sid(), sender=number, body="STOP"))
    stop_id = next(
        m["id"] for m in timeline(api_get, customer_id) if m["parts"][0]["text"] == "STOP"
    )
    after = consent_of(api_call, customer_id)
    for purpose in ("transactional", "marketing", "survey"):
        entry = after[(identity, purpose)]
        assert entry["state"] == "withdrawn" and entry["allowed"] is False
        assert (entry["source"], entry["evidence"], entry["channel"]) == ("keyword", stop_id, "sms")
    for purpose in ("transactional", "marketing"):
        refused = api_call("POST", path, {"text": "x", "purpose": purpose})
        assert (refused["statusCode"], refused["json"]["error"]["code"]) == (409, "opted_out")

    # START re-opens replies only: a keyword is not consent to marketing.
    twilio_post(sms(new_sid(), sender=number, body="Start"))
    assert api_call("POST", path, {"text": "welcome back"})["statusCode"] == 202
    refused = api_call("POST", path, {"text": "20% off", "purpose": "marketing"})
    assert refused["statusCode"] == 409


def test_consent_api_refuses_identities_of_others_and_bad_bodies(twilio_post, api_get, api_call):
    number = "+15551250002"
    twilio_post(sms(new_sid(), sender=number))
    customer_id = customer_for(api_get, number)
    path = f"/v1/customers/{customer_id}/consent"
    cases = [
        ({"identity": "phone:+15551259999", "purpose": "marketing", "state": "granted"}, 422),
        ({"identity": "phone:nonsense", "purpose": "marketing", "state": "granted"}, 400),
        ({"identity": f"phone:{number}", "purpose": "spam", "state": "granted"}, 400),
        ({"identity": f"phone:{number}", "purpose": "marketing", "state": "maybe"}, 400),
    ]
    for body, status in cases:
        assert api_call("PUT", path, body)["statusCode"] == status, body
    missing = api_call("GET", "/v1/customers/01NOSUCHCUSTOMER00000000000/consent")
    assert missing["statusCode"] == 404


def test_consent_withdrawn_after_queueing_fails_the_send_without_calling_the_provider(
    twilio_post, api_get, api_call, pipeline, provider_sandbox
):
    number = "+15551250003"
    twilio_post(sms(new_sid(), sender=number))
    customer_id = customer_for(api_get, number)
    identity = f"phone:{number}"
    consent_path = f"/v1/customers/{customer_id}/consent"
    grant = {"identity": identity, "purpose": "marketing", "state": "granted"}
    api_call("PUT", consent_path, grant)
    queued = api_call(
        "POST", f"/v1/customers/{customer_id}/messages", {"text": "sale", "purpose": "marketing"}
    )["json"]
    assert queued["channel_data"]["purpose"] == "marketing"
    api_call("PUT", consent_path, {**grant, "state": "withdrawn", "evidence": "call 4471"})

    pipeline.run()
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "opted_out"
    assert provider_sandbox.outbox("twilio") == []
    # Transactional replies were never withdrawn: they still go out.
    api_call("POST", f"/v1/customers/{customer_id}/messages", {"text": "your order"})
    pipeline.run()
    assert len(provider_sandbox.outbox("twilio")) == 1


# ------------------------------------------------------------------------------- export


def test_export_archive_holds_everything_about_the_customer(
    email_module, stack, aws, api_call, worker
):
    mail_bucket = stack.physical_id("InboundMailBucket")
    address = f"grace.{secrets.token_hex(3)}@example.com"
    mails = []
    for _ in range(2):
        raw = mail_from(address, f"<{secrets.token_hex(6)}@mail.example.com>")
        key = "mail/" + secrets.token_hex(6)
        deliver(email_module, mail_bucket, raw, key)
        mails.append((key, raw))
    customer_id = _customer_of(api_call, f"email:{address}")

    started = api_call("POST", f"/v1/customers/{customer_id}/exports")
    assert started["statusCode"] == 202, started
    job = started["json"]
    assert job["state"] == "queued" and job["kind"] == "export"
    status_path = f"/v1/customers/{customer_id}/exports/{job['job_id']}"
    assert started["headers"]["Location"] == status_path
    assert api_call("GET", status_path)["json"]["download_url"] is None

    assert worker.run() == 1
    done = api_call("GET", status_path)["json"]
    assert done["state"] == "done"
    assert done["items_done"] == done["items_total"] == 2 + 2 * 2  # messages + raw + attachment
    archive = zipfile.ZipFile(io.BytesIO(requests.get(done["download_url"], timeout=10).content))
    names = set(archive.namelist())

    messages = timeline_of(api_call, customer_id)
    assert len(messages) == 2
    for message in messages:
        exported = json.loads(archive.read(f"messages/{message['id']}.json"))
        assert exported == message
        raw_key = message["raw"]["key"]
        expected_raw = dict(mails)[raw_key]
        assert archive.read(f"raw/{message['id']}/{raw_key.rsplit('/', 1)[-1]}") == expected_raw
        media = message["parts"][1]
        attachment = archive.read(f"attachments/{message['id']}/{media['s3_key'].rsplit('/')[-1]}")
        assert attachment.startswith(PNG_PREFIX)
    customer = json.loads(archive.read("customer.json"))
    assert customer["customer_id"] == customer_id
    assert customer["identities"] == [f"email:{address}"]
    identities = json.loads(archive.read("identities.json"))
    assert [i["identity"] for i in identities] == [f"email:{address}"]
    consent = json.loads(archive.read("consent.json"))
    assert {(e["identity"], e["purpose"]) for e in consent["consent"]} == {
        (f"email:{address}", "transactional"),
        (f"email:{address}", "marketing"),
        (f"email:{address}", "survey"),
    }
    assert len(json.loads(archive.read("conversations.json"))) == 1
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["counts"] == {
        "messages": 2,
        "raw_payloads": 2,
        "attachments": 2,
        "conversations": 1,
    }
    assert {"customer.json", "identities.json", "consent.json", "manifest.json"} <= names


def test_export_of_an_unknown_customer_or_job_is_404(api_call):
    assert (
        api_call("POST", "/v1/customers/01NOSUCHCUSTOMER00000000000/exports")["statusCode"] == 404
    )
    assert api_call("GET", "/v1/customers/01NOSUCH/exports/01NOSUCHJOB")["statusCode"] == 404


def _customer_of(api_call, identity: str) -> str:
    from urllib.parse import urlencode

    response = api_call("GET", "/v1/customers", query=urlencode({"identity": identity}))
    assert response["statusCode"] == 200, response
    return response["json"]["id"]


def timeline_of(api_call, customer_id: str) -> list[dict]:
    return api_call("GET", f"/v1/customers/{customer_id}/timeline")["json"]["items"]


# ------------------------------------------------------------------------------ erasure


def table_items(aws) -> list[dict]:
    """Every item, its compressed attributes (a message's document and envelope) read
    back as text, so a search of the items sees what they really hold."""
    # A scan is fine in a test: it proves what is (and is not) left in the table.
    items, kwargs = [], {"TableName": aws.table}
    while True:
        page = aws.dynamodb.scan(**kwargs)
        items += [_readable(item) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _readable(item: dict) -> dict:
    return {
        name: {"S": stored_bytes(value["B"]).decode()} if "B" in value else value
        for name, value in item.items()
    }


def bucket_versions(bucket: str) -> list[tuple[str, str]]:
    s3 = boto3.client("s3")
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append((entry["Key"], entry["VersionId"]))
    return found


def erase(api_call, worker, customer_id: str) -> dict:
    response = api_call("DELETE", f"/v1/customers/{customer_id}")
    assert response["statusCode"] == 202, response
    assert response["headers"]["Location"] == f"/v1/customers/{customer_id}/erasure"
    assert worker.run() >= 1
    status = api_call("GET", f"/v1/customers/{customer_id}/erasure")["json"]
    assert status["state"] == "done", status
    return status


def test_erasure_leaves_nothing_of_the_customer_and_releases_the_identities(
    email_module, twilio_post, api_get, api_call, worker, stack, aws, pipeline
):
    mail_bucket = stack.physical_id("InboundMailBucket")
    export_bucket = stack.physical_id("ExportBucket")
    address = f"erin.{secrets.token_hex(3)}@example.com"
    other = f"olga.{secrets.token_hex(3)}@example.com"
    # The same attachment from two customers: one object, keyed by its hash.
    keys = []
    payload = PNG_PREFIX + secrets.token_bytes(32)
    for sender in (address, address, other):
        key = "mail/" + secrets.token_hex(6)
        deliver(email_module, mail_bucket, mail_with_file(sender, payload), key)
        keys.append(key)
    customer_id = _customer_of(api_call, f"email:{address}")
    other_id = _customer_of(api_call, f"email:{other}")
    attachment_key = timeline_of(api_call, customer_id)[0]["parts"][1]["s3_key"]
    # An export archive holds everything too: it must go with the rest.
    assert api_call("POST", f"/v1/customers/{customer_id}/exports")["statusCode"] == 202
    worker.run()
    assert any(k.startswith(f"{customer_id}/") for k, _ in bucket_versions(export_bucket))
    pipeline.publish()  # drain earlier stream records

    status = erase(api_call, worker, customer_id)
    assert status["counts"]["messages"] == 2
    assert status["counts"]["identities"] == 1
    assert status["counts"]["exports"] == 1
    # Two raw mails deleted; the shared attachment kept for the other customer.
    assert status["counts"]["objects"] == 2

    items = table_items(aws)
    mentioning = [i for i in items if customer_id in json.dumps(i)]
    assert [i["pk"]["S"] for i in mentioning] == [f"ERASURE#{customer_id}"]
    assert not [i for i in items if address in json.dumps(i)]
    audit = mentioning[0]
    assert "Erin" not in json.dumps(audit) and "erin" not in json.dumps(audit)
    assert not [k for k, _ in bucket_versions(mail_bucket) if k in keys[:2]]
    assert attachment_key in {k for k, _ in bucket_versions(aws.bucket)}
    assert not [k for k, _ in bucket_versions(export_bucket) if k.startswith(f"{customer_id}/")]
    assert api_call("GET", f"/v1/customers/{customer_id}")["statusCode"] == 404

    # The event: one customer.erased, valid against its schema, with no personal data.
    records = pipeline.stream_records()
    events = [e for r in records for e in events_from_stream_record(r)]
    assert [e.type for e in events] == ["customer.erased"]
    document = json.loads(events[0].model_dump_json())
    schema = json.loads(
        (Path(REPO_ROOT) / "infra/schemas/event.customer.erased.v1.json").read_text()
    )
    jsonschema.validate(document, schema)
    assert document["customer_id"] == customer_id
    assert address not in json.dumps(document)
    assert document["erasure"]["counts"] == status["counts"]
    # Deletions themselves announce nothing.
    removes = [r for r in records if r["eventName"] == "REMOVE"]
    assert removes and all(events_from_stream_record(r) == [] for r in removes)
    assert pipeline.publisher.lambda_handler({"Records": records}, LambdaContext()) == {
        "batchItemFailures": []
    }

    # Asking again answers with the finished audit record.
    again = api_call("DELETE", f"/v1/customers/{customer_id}")
    assert (again["statusCode"], again["json"]["state"]) == (200, "done")

    # The last reference gone, the shared attachment goes too (every version).
    erase(api_call, worker, other_id)
    assert attachment_key not in {k for k, _ in bucket_versions(aws.bucket)}
    assert not [i for i in table_items(aws) if attachment_key in json.dumps(i)]

    # Released: the same address writing again is a new customer.
    deliver(email_module, mail_bucket, mail_from(address, "<again@x.example>"))
    assert _customer_of(api_call, f"email:{address}") not in {customer_id, other_id}


def test_erasure_of_an_sms_customer_removes_dedup_and_idempotency_items(
    twilio_post, api_get, api_call, worker, aws, pipeline, api_module
):
    number = "+15551250009"
    twilio_post(sms(new_sid(), sender=number, body="My name is Zed Example"))
    customer_id = customer_for(api_get, number)
    event = http_api_event(
        "POST",
        f"/v1/customers/{customer_id}/messages",
        headers={"content-type": "application/json", "idempotency-key": "zed-1"},
    )
    event["routeKey"] = "ANY /v1/{proxy+}"
    event["body"], event["isBase64Encoded"] = json.dumps({"text": "Hello Zed"}), False
    assert api_module.lambda_handler(event, LambdaContext())["statusCode"] == 202
    pipeline.run()  # sent: a DEDUP item for Twilio's id of the reply exists now

    erase(api_call, worker, customer_id)
    items = table_items(aws)
    assert [i["pk"]["S"] for i in items if customer_id in json.dumps(i)] == [
        f"ERASURE#{customer_id}"
    ]
    assert not [i for i in items if number in json.dumps(i) or "Zed" in json.dumps(i)]
    twilio_post(sms(new_sid(), sender=number, body="hello again"))
    assert customer_for(api_get, number) != customer_id


def test_erasure_of_an_unknown_customer_is_404(api_call):
    assert api_call("DELETE", "/v1/customers/01NOSUCHCUSTOMER00000000000")["statusCode"] == 404
    assert api_call("GET", "/v1/customers/01NOSUCHCUSTOMER00000000000/erasure")["statusCode"] == 404


def test_anonymizing_erasure_keeps_the_history_without_personal_data(
    twilio_post, api_get, api_call, worker, aws, pipeline
):
    number = "+15551250010"
    twilio_post(sms(new_sid(), sender=number, body="I am Yara, call me at home"))
    customer_id = customer_for(api_get, number)
    api_call("POST", f"/v1/customers/{customer_id}/messages", {"text": "Hi Yara, on it"})
    pipeline.run()  # the reply is sent: Twilio's id maps back to it (a DEDUP item)
    before = timeline_of(api_call, customer_id)
    pipeline.publish()

    response = api_call("DELETE", f"/v1/customers/{customer_id}", query="mode=anonymize")
    assert response["statusCode"] == 202 and response["json"]["mode"] == "anonymize"
    worker.run()
    status = api_call("GET", f"/v1/customers/{customer_id}/erasure")["json"]
    assert status["state"] == "done"
    assert status["counts"]["identities"] == 1 and status["counts"]["messages"] == 2

    items = table_items(aws)
    assert not [i for i in items if number in json.dumps(i) or "Yara" in json.dumps(i)]
    # The history stays: same messages, channels, directions, times and statuses.
    after = timeline_of(api_call, customer_id)
    assert [m["id"] for m in after] == [m["id"] for m in before]
    for old, new in zip(before, after, strict=True):
        for kept in ("channel", "direction", "received_at", "status", "conversation_id"):
            assert new[kept] == old[kept]
        assert new["parts"] == [] and new["sender"] is None and new["recipient"] is None
        assert new["raw"] is None and new["provider_message_id"] is None
    customer = api_call("GET", f"/v1/customers/{customer_id}")["json"]
    assert customer["identities"] == [] and customer["display_name"] is None

    records = pipeline.stream_records()
    events = [e for r in records for e in events_from_stream_record(r)]
    assert [(e.type, e.erasure.mode) for e in events] == [("customer.erased", "anonymize")]

    twilio_post(sms(new_sid(), sender=number, body="new me"))
    assert customer_for(api_get, number) != customer_id


def test_erasure_of_a_survivor_removes_its_crm_ids_conversations_and_merged_tombstones(
    twilio_post, api_get, api_call, worker, aws
):
    survivor_number, absorbed_number = "+15551250011", "+15551250012"
    twilio_post(sms(new_sid(), sender=survivor_number, body="I am Xena"))
    twilio_post(sms(new_sid(), sender=absorbed_number, body="Xena again, other phone"))
    survivor = customer_for(api_get, survivor_number)
    absorbed = customer_for(api_get, absorbed_number)
    crm_id = "003XENA" + secrets.token_hex(4)
    patch = {"external_ids": {"salesforce": crm_id}}
    assert api_call("PATCH", f"/v1/customers/{survivor}", patch)["statusCode"] == 200
    merged = api_call("POST", f"/v1/customers/{survivor}/merge", {"source_customer_id": absorbed})
    assert merged["statusCode"] == 200, merged
    before = table_items(aws)
    assert any(i["pk"]["S"].startswith("CONV#") for i in before if survivor in json.dumps(i))
    assert any(i["pk"]["S"] == f"CUST#{absorbed}" for i in before)

    status = erase(api_call, worker, survivor)
    assert status["counts"]["identities"] == 2 and status["counts"]["merged_profiles"] == 1
    items = table_items(aws)
    for customer_id in (survivor, absorbed):
        assert [i["pk"]["S"] for i in items if customer_id in json.dumps(i)] == (
            [f"ERASURE#{customer_id}"] if customer_id == survivor else []
        )
    assert not [i for i in items if crm_id in json.dumps(i) or "Xena" in json.dumps(i)]
    assert not [i for i in items if absorbed_number in json.dumps(i)]
    found = api_call("GET", "/v1/customers", query=f"external_id=salesforce:{crm_id}")
    assert found["statusCode"] == 404
