"""The Meta webhook and Graph API senders against DynamoDB, S3 and SSM in moto server mode.

The handler is the real one from functions/meta_webhook with its template
environment; the app secret and verify token are read from SSM. Replies go through
the real API, publisher and dispatcher to the provider sandbox's Graph endpoints.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from devstack.sandbox import sandbox_media
from tests.conftest import load_handler_module
from tests.integration import test_outbound as outbound
from tests.integration.conftest import LambdaContext, http_api_event
from tests.integration.test_twilio_ingest import items_with_prefix, sms
from tests.unit import meta_payloads as mp
from threadline.channels.meta.webhook import signature_of

# The outbound tests' fixtures, shared rather than copied.
api_post = outbound.api_post
pipeline = outbound.pipeline
customer_for = outbound.customer_for
timeline = outbound.timeline

META_PATH = "/webhooks/meta"
APP_SECRET = secrets.token_hex(16)
VERIFY_TOKEN = secrets.token_hex(8)


@pytest.fixture(scope="session")
def meta_module(
    stack: Any, function_env: Callable[[str], dict[str, str]], aws_env: None
) -> ModuleType:
    stack.put_secret("MetaAppSecretParameterName", APP_SECRET)
    stack.put_secret("MetaVerifyTokenParameterName", VERIFY_TOKEN)
    stack.put_secret("MetaAccessTokenParameterName", "EAAG-whatsapp-" + secrets.token_hex(8))
    stack.put_secret("MetaPageAccessTokenParameterName", "EAAG-page-" + secrets.token_hex(8))
    os.environ.update(function_env("MetaWebhookFunction"))
    return load_handler_module("functions/meta_webhook")


@pytest.fixture
def meta_post(meta_module: ModuleType) -> Callable[..., dict[str, Any]]:
    def post(document: dict[str, Any], *, secret: str = APP_SECRET) -> dict[str, Any]:
        body = json.dumps(document).encode()
        event = http_api_event(
            "POST",
            META_PATH,
            body=body,
            headers={
                "content-type": "application/json",
                "x-hub-signature-256": signature_of(body, secret),
            },
        )
        result: dict[str, Any] = meta_module.lambda_handler(event, LambdaContext())
        return result

    return post


def wa_text(
    number: str, wamid: str, body: str = "Hola", name: str = "Ana Example"
) -> dict[str, Any]:
    message = mp.wa_message("text", {"body": body}, wamid=wamid)
    message["from"] = number.lstrip("+")
    value = mp.whatsapp_value(message, name=name)
    value["contacts"][0]["wa_id"] = number.lstrip("+")
    return mp.whatsapp_envelope(value)


def test_handshake_reads_the_verify_token_from_ssm(meta_module):
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "31337"}
    event = http_api_event("GET", META_PATH, query=urlencode(good))
    answer = meta_module.lambda_handler(event, LambdaContext())
    assert (answer["statusCode"], answer["body"]) == (200, "31337")
    bad = http_api_event("GET", META_PATH, query=urlencode({**good, "hub.verify_token": "guess"}))
    assert meta_module.lambda_handler(bad, LambdaContext())["statusCode"] == 403


def test_bad_signature_stores_nothing(meta_post, aws):
    before = len(items_with_prefix(aws, aws.table, "DEDUP#meta#"))
    answer = meta_post(wa_text("+15551260009", "wamid.BADSIG"), secret="not-the-app-secret")
    assert answer["statusCode"] == 403
    assert len(items_with_prefix(aws, aws.table, "DEDUP#meta#")) == before


def test_whatsapp_cloud_message_lands_on_the_customer_who_wrote_by_sms(
    meta_post, twilio_post, api_get
):
    number = "+15551260001"
    assert twilio_post(sms("SM" + "e1" * 16, sender=number))["statusCode"] == 200
    customer_id = customer_for(api_get, number)

    answer = meta_post(wa_text(number, "wamid.E2ECLOUD1", "Is my order on its way?"))
    assert answer["statusCode"] == 200 and answer["body"] == "EVENT_RECEIVED"

    assert customer_for(api_get, number) == customer_id
    items = timeline(api_get, customer_id)
    assert [(m["channel"], m["provider"]) for m in items] == [
        ("whatsapp", "meta"),
        ("sms", "twilio"),
    ]
    assert items[0]["parts"] == [{"type": "text", "text": "Is my order on its way?"}]
    assert items[0]["sender"] == {"kind": "phone", "value": number}
    assert len({m["conversation_id"] for m in items}) == 1


def test_batch_is_stored_once_per_message_and_a_redelivery_adds_nothing(meta_post, api_get, aws):
    first = wa_text("+15551260002", "wamid.BATCH1")
    second = wa_text("+15551260003", "wamid.BATCH2")
    messenger = mp.page_envelope(
        mp.messaging_event(
            "1100000000000001", mp.PAGE_ID, message={"mid": "m_BATCH3", "text": "hi"}
        )
    )
    document = {"object": "whatsapp_business_account", "entry": first["entry"] + second["entry"]}
    assert meta_post(document)["statusCode"] == 200
    assert meta_post(document)["statusCode"] == 200  # Meta retried the whole POST
    assert meta_post(messenger)["statusCode"] == 200
    assert meta_post(messenger)["statusCode"] == 200

    dedup = {i["pk"]["S"] for i in items_with_prefix(aws, aws.table, "DEDUP#meta#")}
    assert {"DEDUP#meta#wamid.BATCH1", "DEDUP#meta#wamid.BATCH2", "DEDUP#meta#m_BATCH3"} <= dedup
    for number in ("+15551260002", "+15551260003"):
        assert len(timeline(api_get, customer_for(api_get, number))) == 1
    found = api_get("/v1/customers", {"identity": "messenger:1100000000000001"})
    assert len(timeline(api_get, json.loads(found["body"])["id"])) == 1


def test_known_customer_message_costs_two_aws_calls(meta_post, meta_module):
    number = "+15551260004"
    meta_post(wa_text(number, "wamid.COST1"))
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(f"{model.service_model.service_name}.{model.name}")

    clients = [meta_module.store.dynamodb, meta_module.store.s3]
    for client in clients:
        client.meta.events.register("before-call.*.*", record)
    try:
        assert meta_post(wa_text(number, "wamid.COST2"))["statusCode"] == 200
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", record)
    assert calls == ["dynamodb.GetItem", "dynamodb.TransactWriteItems"]


def test_whatsapp_reply_goes_through_the_cloud_api_and_statuses_move_it_forward_only(
    meta_post, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551260005"
    assert meta_post(wa_text(number, "wamid.REPLY1"))["statusCode"] == 200
    customer_id = customer_for(api_get, number)

    reply = api_post(
        f"/v1/customers/{customer_id}/messages", {"text": "On its way!", "channel": "whatsapp"}
    )
    assert reply["statusCode"] == 202, reply
    queued = json.loads(reply["body"])
    assert queued["provider"] == "meta"
    pipeline.run()

    (request,) = provider_sandbox.outbox("meta")
    assert request.path == f"/meta/v23.0/{mp.PHONE_NUMBER_ID}/messages"
    form = {k: v[0] for k, v in request.form.items()}
    assert form["messaging_product"] == "whatsapp"
    assert form["to"] == number.lstrip("+")
    assert json.loads(form["text"]) == {"body": "On its way!", "preview_url": False}
    assert form["biz_opaque_callback_data"] == f"{customer_id}/{queued['id']}"
    assert provider_sandbox.outbox("twilio") == []

    (sent,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert sent["status"] == "sent" and sent["provider"] == "meta"
    wamid = sent["provider_message_id"]
    assert wamid.startswith("wamid.")

    def status(name: str, **extra: Any) -> dict[str, Any]:
        return mp.whatsapp_envelope(mp.status_value(mp.wa_status(name, wamid=wamid, **extra)))

    assert meta_post(status("read"))["statusCode"] == 200
    assert meta_post(status("delivered"))["statusCode"] == 200  # late: ignored
    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert message["status"] == "read"
    assert [h["status"] for h in message["status_history"]] == ["queued", "sent", "read"]


def test_failed_whatsapp_status_records_metas_error(meta_post, api_get, api_post, pipeline):
    number = "+15551260006"
    meta_post(wa_text(number, "wamid.FAIL1"))
    customer_id = customer_for(api_get, number)
    queued = json.loads(api_post(f"/v1/customers/{customer_id}/messages", {"text": "x"})["body"])
    pipeline.run()
    (sent,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    failed = mp.wa_status(
        "failed",
        wamid=sent["provider_message_id"],
        callback=f"{customer_id}/{queued['id']}",
        errors=mp.WA_FAILED_ERRORS,
    )
    assert meta_post(mp.whatsapp_envelope(mp.status_value(failed)))["statusCode"] == 200
    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "131047"
    assert message["status_history"][-1]["error_message"] == "Re-engagement message"


def test_graph_rate_limit_is_retried_then_sent(
    meta_post, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551260007"
    meta_post(wa_text(number, "wamid.RATE1"))
    customer_id = customer_for(api_get, number)
    provider_sandbox.program_faults("meta", [429])
    queued = json.loads(api_post(f"/v1/customers/{customer_id}/messages", {"text": "x"})["body"])
    records = pipeline.run()
    assert records and [r.status for r in provider_sandbox.outbox("meta")] == [429]
    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert message["status"] == "queued"
    # The job is hidden for its backoff; the next delivery of it sends.
    pipeline.dispatch(records)
    assert [r.status for r in provider_sandbox.outbox("meta")] == [429, 200]
    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert message["status"] == "sent"


def test_messenger_message_and_reply(meta_post, api_get, api_post, pipeline, provider_sandbox):
    psid = "1100000000000002"
    event = mp.messaging_event(
        psid, mp.PAGE_ID, message={"mid": "m_MSGR1", "text": "Do you ship to Lisbon?"}
    )
    assert meta_post(mp.page_envelope(event))["statusCode"] == 200
    found = api_get("/v1/customers", {"identity": f"messenger:{psid}"})
    assert found["statusCode"] == 200
    customer_id = json.loads(found["body"])["id"]

    queued = json.loads(
        api_post(f"/v1/customers/{customer_id}/messages", {"text": "We do!"})["body"]
    )
    assert queued["channel"] == "messenger"
    pipeline.run()
    (request,) = provider_sandbox.outbox("meta")
    assert request.path == "/meta/v23.0/me/messages"
    form = {k: v[0] for k, v in request.form.items()}
    assert json.loads(form["recipient"]) == {"id": psid}
    assert form["messaging_type"] == "RESPONSE"
    assert json.loads(form["message"]) == {"text": "We do!"}

    (sent,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert sent["status"] == "sent"
    # Our page's echo of the reply is not a customer message; the delivery receipt moves it.
    echo = mp.messaging_event(
        mp.PAGE_ID,
        psid,
        message={"is_echo": True, "mid": sent["provider_message_id"], "text": "We do!"},
    )
    delivery = mp.messaging_event(
        psid, mp.PAGE_ID, delivery={"mids": [sent["provider_message_id"]]}
    )
    assert meta_post(mp.page_envelope(echo, delivery))["statusCode"] == 200
    items = timeline(api_get, customer_id)
    assert len(items) == 2
    (message,) = [m for m in items if m["id"] == queued["id"]]
    assert message["status"] == "delivered"


def test_messenger_reply_outside_the_window_fails_without_a_tag(
    meta_post, api_get, api_post, pipeline, aws
):
    psid = "1100000000000003"
    meta_post(
        mp.page_envelope(
            mp.messaging_event(psid, mp.PAGE_ID, message={"mid": "m_OLD1", "text": "hi"})
        )
    )
    customer_id = json.loads(api_get("/v1/customers", {"identity": f"messenger:{psid}"})["body"])[
        "id"
    ]
    aws.dynamodb.update_item(
        TableName=aws.table,
        Key={"pk": {"S": f"CUST#{customer_id}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET last_inbound.messenger = :old",
        ExpressionAttributeValues={":old": {"S": "2020-01-01T00:00:00+00:00"}},
    )
    untagged = json.loads(
        api_post(f"/v1/customers/{customer_id}/messages", {"text": "late"})["body"]
    )
    pipeline.run()
    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == untagged["id"]]
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "messenger_window_closed"

    tagged = api_post(
        f"/v1/customers/{customer_id}/messages", {"text": "update", "message_tag": "ACCOUNT_UPDATE"}
    )
    assert tagged["statusCode"] == 202
    pipeline.run()
    (message,) = [
        m for m in timeline(api_get, customer_id) if m["id"] == json.loads(tagged["body"])["id"]
    ]
    assert message["status"] == "sent"


def test_template_only_on_whatsapp(meta_post, api_get, api_post):
    psid = "1100000000000004"
    meta_post(
        mp.page_envelope(
            mp.messaging_event(psid, mp.PAGE_ID, message={"mid": "m_T1", "text": "hi"})
        )
    )
    customer_id = json.loads(api_get("/v1/customers", {"identity": f"messenger:{psid}"})["body"])[
        "id"
    ]
    answer = api_post(
        f"/v1/customers/{customer_id}/messages",
        {"template": {"name": "hello_world", "language": "en_US"}},
    )
    assert answer["statusCode"] == 422
    assert json.loads(answer["body"])["error"]["code"] == "send_option_not_supported"


def test_whatsapp_media_is_downloaded_on_demand_once_and_served_by_a_presigned_url(
    meta_post, api_get, provider_sandbox
):
    number = "+15551260008"
    image = mp.wa_message(
        "image",
        {"mime_type": "image/jpeg", "sha256": "abc=", "id": "2003383421387256", "caption": "label"},
        wamid="wamid.MEDIA1",
    )
    image["from"] = number.lstrip("+")
    assert meta_post(mp.whatsapp_envelope(mp.whatsapp_value(image)))["statusCode"] == 200
    # The webhook itself fetched nothing.
    assert provider_sandbox.outbox("meta") == []
    customer_id = customer_for(api_get, number)
    (stored,) = timeline(api_get, customer_id)
    path = f"/v1/customers/{customer_id}/messages/{stored['id']}/media/0"

    first = api_get(path)
    assert first["statusCode"] == 200, first
    link = json.loads(first["body"])
    assert link["content_type"] == "image/jpeg" and link["expires_in"] == 900
    assert requests.get(link["url"], timeout=10).content == sandbox_media("2003383421387256")
    (media_request,) = provider_sandbox.outbox("meta")
    assert media_request.path == "/meta/v23.0/2003383421387256"

    (stored,) = timeline(api_get, customer_id)
    assert stored["parts"][0]["s3_key"].startswith("attachments/")
    again = json.loads(api_get(path)["body"])
    assert requests.get(again["url"], timeout=10).content == sandbox_media("2003383421387256")
    assert len(provider_sandbox.outbox("meta")) == 1  # served from the bucket now

    assert (
        api_get(f"/v1/customers/{customer_id}/messages/{stored['id']}/media/1")["statusCode"] == 404
    )
    assert (
        api_get(f"/v1/customers/{customer_id}/messages/01JNOSUCHMESSAGE000000000/media/0")[
            "statusCode"
        ]
        == 404
    )


def test_messenger_attachment_is_answered_with_its_own_url(meta_post, api_get):
    psid = "1100000000000005"
    event = mp.messaging_event(
        psid,
        mp.PAGE_ID,
        message={
            "mid": "m_ATT1",
            "attachments": [{"type": "image", "payload": {"url": "https://cdn.example.com/x.jpg"}}],
        },
    )
    meta_post(mp.page_envelope(event))
    customer_id = json.loads(api_get("/v1/customers", {"identity": f"messenger:{psid}"})["body"])[
        "id"
    ]
    (stored,) = timeline(api_get, customer_id)
    answer = api_get(f"/v1/customers/{customer_id}/messages/{stored['id']}/media/0")
    assert json.loads(answer["body"]) == {
        "url": "https://cdn.example.com/x.jpg",
        "content_type": None,
        "expires_in": None,
    }


def test_media_meta_will_not_hand_over_is_a_502(meta_post, api_get):
    number = "+15551260010"
    image = mp.wa_message(
        "image", {"mime_type": "image/png", "id": "expired-media"}, wamid="wamid.MEDIA2"
    )
    image["from"] = number.lstrip("+")
    meta_post(mp.whatsapp_envelope(mp.whatsapp_value(image)))
    customer_id = customer_for(api_get, number)
    (stored,) = timeline(api_get, customer_id)
    answer = api_get(f"/v1/customers/{customer_id}/messages/{stored['id']}/media/0")
    assert answer["statusCode"] == 502
    assert json.loads(answer["body"])["error"]["code"] == "media_fetch_failed"
