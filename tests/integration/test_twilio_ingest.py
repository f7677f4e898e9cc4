"""The Twilio messaging handler against DynamoDB, S3 and SSM in moto server mode."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from botocore.awsrequest import AWSResponse
from twilio.request_validator import RequestValidator

from threadline.schema import Identity
from threadline.store import identity_pk


def sms(sid: str, sender: str = "+15551230001", body: str = "Hi, my order has not arrived") -> dict:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+15557650000",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def whatsapp(sid: str, sender: str = "+15551230001", body: str = "Any update?") -> dict:
    digits = sender.lstrip("+")
    return {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{sender}",
        "To": "whatsapp:+14155238886",
        "Body": body,
        "NumMedia": "0",
        "ProfileName": "Ana Example",
        "WaId": digits,
        "MessageType": "text",
    }


def items_with_prefix(aws, table: str, prefix: str) -> list[dict]:
    # A scan is fine in a test: it proves what is (and is not) in the table.
    items = aws.dynamodb.scan(TableName=table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith(prefix)]


def test_sms_is_stored_and_answered_with_empty_twiml(aws, twilio_post, api_get):
    response = twilio_post(sms("SM" + "a" * 32))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/xml"
    assert "<Response></Response>" in response["body"]

    customer = api_get("/v1/customers", {"identity": "phone:+15551230001"})
    assert customer["statusCode"] == 200
    timeline = api_get(f"/v1/customers/{json.loads(customer['body'])['id']}/timeline")
    (message,) = json.loads(timeline["body"])["items"]
    assert message["provider_message_id"] == "SM" + "a" * 32
    assert message["parts"] == [{"type": "text", "text": "Hi, my order has not arrived"}]
    assert message["status"] == "received"
    assert message["raw"]["location"] == "inline"


def test_sms_and_whatsapp_from_one_number_share_one_timeline_and_conversation(twilio_post, api_get):
    assert twilio_post(sms("SM" + "b" * 32, sender="+15551230002"))["statusCode"] == 200
    assert twilio_post(whatsapp("SM" + "c" * 32, sender="+15551230002"))["statusCode"] == 200

    customer = json.loads(api_get("/v1/customers", {"identity": "phone:+15551230002"})["body"])
    assert customer["display_name"] == "Ana Example"
    items = json.loads(api_get(f"/v1/customers/{customer['id']}/timeline")["body"])["items"]
    assert [m["channel"] for m in items] == ["whatsapp", "sms"]  # newest first
    assert len({m["conversation_id"] for m in items}) == 1
    assert {m["customer_id"] for m in items} == {customer["id"]}


def test_concurrent_first_messages_from_a_new_number_make_one_customer(aws, twilio_post, api_get):
    sender = "+15551230003"
    count = 8
    start = threading.Barrier(count)

    def post(index: int) -> int:
        start.wait()
        return twilio_post(sms(f"SM{index:032d}", sender=sender))["statusCode"]

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(post, range(count)))
    assert set(statuses) <= {200, 503}
    # A writer that kept losing the race answers 503 rather than wait for ever, and
    # Twilio retries it later (the URL carries #rc=3); the retry is filed once. moto
    # copies the whole table for every transaction, so late in a session the race
    # lasts long enough for that to happen.
    retried = [
        twilio_post(sms(f"SM{index:032d}", sender=sender))["statusCode"]
        for index, status in enumerate(statuses)
        if status == 503
    ]
    assert retried == [200] * len(retried)

    profiles = [i for i in items_with_prefix(aws, aws.table, "CUST#") if i["sk"]["S"] == "PROFILE"]
    identity_items = items_with_prefix(
        aws, aws.table, identity_pk(Identity.parse(f"phone:{sender}"))
    )
    assert len(identity_items) == 1
    owner = identity_items[0]["customer_id"]["S"]
    assert owner in {p["customer_id"]["S"] for p in profiles}
    # No orphan profile was left behind by the losers of the race.
    created_for_sender = [p for p in profiles if f"phone:{sender}" in str(p["identities"])]
    assert len(created_for_sender) == 1
    page = json.loads(api_get(f"/v1/customers/{owner}/timeline", {"limit": "100"})["body"])
    assert len(page["items"]) == count


def test_a_retried_delivery_is_acknowledged_and_stored_once(aws, twilio_post):
    message = sms("SM" + "d" * 32, sender="+15551230004")
    first = twilio_post(message)
    with ThreadPoolExecutor(max_workers=4) as pool:
        retries = list(pool.map(lambda _: twilio_post(message), range(4)))
    assert first["statusCode"] == 200
    assert [r["statusCode"] for r in retries] == [200] * 4
    assert len(items_with_prefix(aws, aws.table, "DEDUP#twilio#SM" + "d" * 32)) == 1
    messages = [
        i
        for i in aws.dynamodb.scan(TableName=aws.table)["Items"]
        if i.get("provider_message_id", {}).get("S") == "SM" + "d" * 32
        and i["sk"]["S"].startswith("MSG#")
    ]
    assert len(messages) == 1


def _fail(operation: str, status: int, code: str, times: int | None = None):
    """A botocore before-send hook that answers ``operation`` with an AWS error."""
    calls = {"n": 0}

    def hook(request, **_):
        if request.headers.get("X-Amz-Target", b"").decode().endswith(operation) or (
            operation == "PutObject" and request.method == "PUT"
        ):
            calls["n"] += 1
            if times is None or calls["n"] <= times:
                body = json.dumps(
                    {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
                )
                return AWSResponse(request.url, status, {"x-amzn-errortype": code}, _Raw(body))
        return None

    return hook, calls


class _Raw:
    def __init__(self, body: str) -> None:
        self._body = body.encode()

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def test_dynamodb_failure_answers_5xx_and_writes_nothing_then_the_retry_lands(
    aws, twilio_module, twilio_post
):
    client = twilio_module.store.dynamodb
    hook, calls = _fail("TransactWriteItems", 500, "InternalServerError")
    client.meta.events.register_first("before-send.dynamodb.TransactWriteItems", hook)
    sid = "SM" + "e" * 32
    try:
        response = twilio_post(sms(sid, sender="+15551230005"))
    finally:
        client.meta.events.unregister("before-send.dynamodb.TransactWriteItems", hook)
    assert response["statusCode"] == 503
    assert "Traceback" not in response["body"]
    assert calls["n"] >= 1
    assert items_with_prefix(aws, aws.table, f"DEDUP#twilio#{sid}") == []
    assert items_with_prefix(aws, aws.table, "IDENT#phone#+15551230005") == []

    # Twilio retries (the URL carries #rc=..): this time it lands, once.
    assert twilio_post(sms(sid, sender="+15551230005"))["statusCode"] == 200
    assert len(items_with_prefix(aws, aws.table, f"DEDUP#twilio#{sid}")) == 1


def test_throttling_is_retried_by_the_sdk_and_the_message_stored_once(
    aws, twilio_module, twilio_post
):
    client = twilio_module.store.dynamodb
    hook, calls = _fail(
        "TransactWriteItems", 400, "ProvisionedThroughputExceededException", times=2
    )
    client.meta.events.register_first("before-send.dynamodb.TransactWriteItems", hook)
    sid = "SM" + "f" * 32
    try:
        response = twilio_post(sms(sid, sender="+15551230006"))
    finally:
        client.meta.events.unregister("before-send.dynamodb.TransactWriteItems", hook)
    assert response["statusCode"] == 200
    assert calls["n"] == 3  # two throttled attempts, then the real one
    assert len(items_with_prefix(aws, aws.table, f"DEDUP#twilio#{sid}")) == 1


def test_large_payload_goes_to_s3_and_can_be_verified_again(aws, twilio_post, api_get, auth_token):
    long_body = "x" * 9000  # over RAW_INLINE_MAX_BYTES (8192)
    params = sms("SM" + "1" * 32, sender="+15551230007", body=long_body)
    assert twilio_post(params)["statusCode"] == 200

    customer = json.loads(api_get("/v1/customers", {"identity": "phone:+15551230007"})["body"])
    (message,) = json.loads(api_get(f"/v1/customers/{customer['id']}/timeline")["body"])["items"]
    raw = message["raw"]
    assert raw["location"] == "s3"
    stored = json.loads(aws.s3.get_object(Bucket=raw["bucket"], Key=raw["key"])["Body"].read())
    from urllib.parse import parse_qsl

    form = dict(parse_qsl(stored["body"], keep_blank_values=True))
    assert form["Body"] == long_body
    validator = RequestValidator(auth_token)
    assert validator.validate(stored["url"], form, stored["headers"]["x-twilio-signature"])


def test_s3_failure_for_a_large_payload_answers_5xx_and_writes_nothing(
    aws, twilio_module, twilio_post
):
    client = twilio_module.store.s3
    hook, _ = _fail("PutObject", 500, "InternalError")
    client.meta.events.register_first("before-send.s3.PutObject", hook)
    sid = "SM" + "2" * 32
    try:
        response = twilio_post(sms(sid, sender="+15551230008", body="y" * 9000))
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", hook)
    assert response["statusCode"] == 503
    assert items_with_prefix(aws, aws.table, f"DEDUP#twilio#{sid}") == []


def test_a_known_customer_costs_two_aws_calls_when_the_raw_payload_is_small(
    twilio_module, twilio_post, count_aws_calls
):
    twilio_post(sms("SM" + "3" * 32, sender="+15551230009"))  # creates the customer
    with count_aws_calls() as calls:
        assert twilio_post(sms("SM" + "4" * 32, sender="+15551230009"))["statusCode"] == 200
    assert calls == ["dynamodb.GetItem", "dynamodb.TransactWriteItems"]


def test_a_known_customer_costs_three_aws_calls_when_the_raw_payload_is_large(
    twilio_post, count_aws_calls
):
    twilio_post(sms("SM" + "5" * 32, sender="+15551230010"))
    with count_aws_calls() as calls:
        response = twilio_post(sms("SM" + "6" * 32, sender="+15551230010", body="z" * 9000))
    assert response["statusCode"] == 200
    assert sorted(calls) == sorted(
        ["s3.PutObject", "dynamodb.GetItem", "dynamodb.TransactWriteItems"]
    )


def test_a_new_customer_costs_two_aws_calls(twilio_post, count_aws_calls):
    with count_aws_calls() as calls:
        assert twilio_post(sms("SM" + "7" * 32, sender="+15551230011"))["statusCode"] == 200
    assert calls == ["dynamodb.GetItem", "dynamodb.TransactWriteItems"]


def test_a_message_after_the_quiet_period_opens_a_new_conversation(twilio_module, api_get):
    from threadline.channels.twilio.messaging import normalize_form
    from threadline.schema import utc_now
    from threadline.store import KeptRaw, RawPayloadRef

    store = twilio_module.store
    raw = KeptRaw(
        ref=RawPayloadRef(
            location="inline", content_type="application/json", size=2, sha256="0" * 64
        ),
        inline="{}",
    )
    earlier = utc_now() - timedelta(hours=30)
    first = store.ingest(
        normalize_form(sms("SM" + "8" * 32, sender="+15551230012")), raw, received_at=earlier
    )
    second = store.ingest(normalize_form(sms("SM" + "9" * 32, sender="+15551230012")), raw)
    third = store.ingest(normalize_form(whatsapp("SM" + "a1" * 16, sender="+15551230012")), raw)
    assert first.customer_id == second.customer_id == third.customer_id
    items = json.loads(api_get(f"/v1/customers/{first.customer_id}/timeline")["body"])["items"]
    by_sid = {m["provider_message_id"]: m["conversation_id"] for m in items}
    assert by_sid["SM" + "8" * 32] != by_sid["SM" + "9" * 32]
    assert by_sid["SM" + "9" * 32] == by_sid["SM" + "a1" * 16]


def test_timeline_pages_newest_first_with_an_opaque_cursor(twilio_post, api_get):
    sender = "+15551230013"
    sids = [f"SM{index:030d}ab" for index in range(5)]
    for sid in sids:
        assert twilio_post(sms(sid, sender=sender))["statusCode"] == 200
    customer = json.loads(api_get("/v1/customers", {"identity": f"phone:{sender}"})["body"])
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = json.loads(api_get(f"/v1/customers/{customer['id']}/timeline", query)["body"])
        seen += [m["provider_message_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(sids))


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/v1/customers", {"identity": "phone:+15559999999"}, 404, "not_found"),
        ("/v1/customers", {"identity": "phone:not-a-number"}, 400, "invalid_identity"),
        ("/v1/customers", {"identity": "fax:123"}, 400, "invalid_identity"),
        ("/v1/customers", {}, 400, "invalid_request"),
        ("/v1/customers/01NOSUCHCUSTOMER00000000000", {}, 404, "not_found"),
        ("/v1/customers/01NOSUCHCUSTOMER00000000000/timeline", {}, 404, "not_found"),
        ("/v1/nope", {}, 404, "not_found"),
    ],
)
def test_api_errors_are_json_with_a_code(api_get, path, query, status, code):
    response = api_get(path, query)
    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]["code"] == code


def test_timeline_rejects_a_forged_cursor_and_a_bad_limit(twilio_post, api_get):
    twilio_post(sms("SM" + "b1" * 16, sender="+15551230014"))
    customer = json.loads(api_get("/v1/customers", {"identity": "phone:+15551230014"})["body"])
    path = f"/v1/customers/{customer['id']}/timeline"
    assert api_get(path, {"cursor": "bm90LWEtY3Vyc29y"})["statusCode"] == 400
    assert api_get(path, {"limit": "0"})["statusCode"] == 400
    assert api_get(path, {"limit": "1000"})["statusCode"] == 400
