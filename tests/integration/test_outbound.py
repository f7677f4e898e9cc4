"""Replies end to end inside AWS (moto server): API -> table -> stream -> publisher ->
EventBridge -> dispatch queue -> dispatcher -> Twilio (the provider sandbox) -> status
callbacks. Each function is the real handler; only the hops Lambda itself makes
(stream and queue polling) are done here by hand, as Lambda would."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from tests.integration.conftest import WEBHOOK_HOST, LambdaContext, http_api_event
from tests.integration.test_twilio_ingest import sms, whatsapp
from threadline.schema import utc_now


@pytest.fixture
def api_post(api_module):
    def post(path: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        event = http_api_event(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"content-type": "application/json", **(headers or {})},
        )
        event["isBase64Encoded"] = False
        event["body"] = json.dumps(body)
        event["routeKey"] = "ANY /v1/{proxy+}"
        return api_module.lambda_handler(event, LambdaContext())

    return post


def customer_for(api_get, number: str) -> str:
    response = api_get("/v1/customers", {"identity": f"phone:{number}"})
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])["id"]


def timeline(api_get, customer_id: str) -> list[dict]:
    return json.loads(api_get(f"/v1/customers/{customer_id}/timeline")["body"])["items"]


class Pipeline:
    """Moves work along the hops Lambda's event source mappings would."""

    def __init__(self, stack, publisher_module, dispatcher_module) -> None:
        self.stack = stack
        self.publisher = publisher_module
        self.dispatcher = dispatcher_module
        self.streams = stack.client("dynamodbstreams")
        self.sqs = stack.client("sqs")
        self.queue_url = stack.function_environment("DispatcherFunction")["DISPATCH_QUEUE_URL"]
        table = stack.client("dynamodb").describe_table(TableName=stack.physical_id("Table"))
        self.stream_arn = table["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str] = {}
        self._seen: set[str] = set()

    def stream_records(self) -> list[dict]:
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        records = []
        for shard in description["Shards"]:
            shard_id = shard["ShardId"]
            iterator = (
                self._iterators.get(shard_id)
                or self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            response = self.streams.get_records(ShardIterator=iterator)
            self._iterators[shard_id] = response["NextShardIterator"]
            for record in response["Records"]:
                if record["eventID"] not in self._seen:
                    self._seen.add(record["eventID"])
                    records.append({**record, "eventSourceARN": self.stream_arn})
        return records

    def publish(self) -> dict:
        records = self.stream_records()
        if not records:  # Lambda never invokes with an empty batch
            return {"batchItemFailures": []}
        return self.publisher.lambda_handler({"Records": records}, LambdaContext())

    def receive(self, wait: bool = True) -> list[dict]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            WaitTimeSeconds=1 if wait else 0,
        )
        return [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:dispatch",
                "awsRegion": "us-east-1",
            }
            for m in response.get("Messages", [])
        ]

    def receive_job(self, message_id: str) -> dict:
        """The queued job for ``message_id``. Jobs an earlier test left unacknowledged
        come back once their visibility timeout runs out; they are dropped here."""
        deadline = utc_now() + timedelta(seconds=30)
        while utc_now() < deadline:
            records = self.receive()
            mine = [r for r in records if message_id in r["body"]]
            self.delete([r for r in records if r not in mine])
            if mine:
                (record,) = mine
                return record
        raise AssertionError(f"no job for {message_id} reached the dispatch queue")

    def dispatch(self, records: list[dict]) -> dict:
        return self.dispatcher.lambda_handler({"Records": records}, LambdaContext())

    def delete(self, records: list[dict]) -> None:
        for record in records:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])

    def run(self) -> list[dict]:
        """Publish, then dispatch what reached the queue; acknowledge what succeeded."""
        self.publish()
        records = self.receive()
        if records:
            failures = {f["itemIdentifier"] for f in self.dispatch(records)["batchItemFailures"]}
            self.delete([r for r in records if r["messageId"] not in failures])
        return records


@pytest.fixture
def pipeline(stack, publisher_module, dispatcher_module, aws_env) -> Pipeline:
    pipe = Pipeline(stack, publisher_module, dispatcher_module)
    while pipe.stream_records():  # skip what earlier tests left (moto pages 1000 at a time)
        pass
    while records := pipe.receive(wait=False):
        pipe.delete(records)
    return pipe


@pytest.fixture
def status_post(status_module, auth_token):
    def post(params: dict[str, str], callback_url: str) -> dict:
        parts = urlsplit(callback_url)
        signature = RequestValidator(auth_token).compute_signature(callback_url, params)
        event = http_api_event(
            "POST",
            parts.path,
            query=parts.query,
            body=urlencode(params).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": signature,
            },
        )
        return status_module.lambda_handler(event, LambdaContext())

    return post


def test_reply_is_sent_through_twilio_and_its_delivery_comes_back(
    twilio_post, api_get, api_post, pipeline, provider_sandbox, status_post
):
    number = "+15551240001"
    assert twilio_post(sms("SM" + "c1" * 16, sender=number))["statusCode"] == 200
    customer_id = customer_for(api_get, number)

    reply = api_post(f"/v1/customers/{customer_id}/messages", {"text": "It ships today."})
    assert reply["statusCode"] == 202, reply
    queued = json.loads(reply["body"])
    assert queued["status"] == "queued" and queued["channel"] == "sms"

    pipeline.run()
    (sent_request,) = provider_sandbox.outbox("twilio")
    form = {k: v[0] for k, v in sent_request.form.items()}
    assert form["To"] == number
    assert form["From"] == "+15005550006"
    assert form["Body"] == "It ships today."
    callback = form["StatusCallback"]
    assert callback.startswith(f"https://{WEBHOOK_HOST}/webhooks/twilio/status?")
    assert dict(parse_qsl(urlsplit(callback).query)) == {"cid": customer_id, "mid": queued["id"]}

    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert message["status"] == "sent"
    sid = message["provider_message_id"]
    assert sid.startswith("SM")

    delivered = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "5" * 32}
    assert status_post(delivered, callback)["statusCode"] == 200
    (message,) = [m for m in timeline(api_get, customer_id) if m["id"] == queued["id"]]
    assert message["status"] == "delivered"
    assert [h["status"] for h in message["status_history"]] == ["queued", "sent", "delivered"]


def test_late_and_repeated_status_callbacks_never_move_a_status_back(
    twilio_post, api_get, api_post, pipeline, provider_sandbox, status_post
):
    number = "+15551240002"
    twilio_post(sms("SM" + "c2" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    queued = json.loads(api_post(f"/v1/customers/{customer_id}/messages", {"text": "hi"})["body"])
    pipeline.run()
    (request,) = provider_sandbox.outbox("twilio")
    callback = request.form["StatusCallback"][0]
    sid = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])[
        "provider_message_id"
    ]
    for status in ("read", "delivered", "sent", "read"):
        assert (
            status_post({"MessageSid": sid, "MessageStatus": status}, callback)["statusCode"] == 200
        )
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "read"
    assert [h["status"] for h in message["status_history"]] == ["queued", "sent", "read"]


def test_the_same_idempotency_key_twice_sends_once(
    twilio_post, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551240003"
    twilio_post(sms("SM" + "c3" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    path = f"/v1/customers/{customer_id}/messages"
    first = api_post(path, {"text": "once"}, {"idempotency-key": "reply-42"})
    second = api_post(path, {"text": "once"}, {"idempotency-key": "reply-42"})
    assert first["statusCode"] == second["statusCode"] == 202
    assert json.loads(first["body"])["id"] == json.loads(second["body"])["id"]
    reused = api_post(path, {"text": "different"}, {"idempotency-key": "reply-42"})
    assert reused["statusCode"] == 422
    assert json.loads(reused["body"])["error"]["code"] == "idempotency_key_reused"
    pipeline.run()
    assert len(provider_sandbox.outbox("twilio")) == 1


def test_send_errors_are_json_with_codes(twilio_post, api_get, api_post):
    number = "+15551240004"
    twilio_post(sms("SM" + "c4" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    cases = [
        ("/v1/customers/01NOSUCHCUSTOMER00000000000/messages", {"text": "x"}, 404, "not_found"),
        (
            f"/v1/customers/{customer_id}/messages",
            {"text": "x", "channel": "email"},
            422,
            "no_identity_for_channel",
        ),
        (f"/v1/customers/{customer_id}/messages", {}, 400, "invalid_request"),
        (
            f"/v1/customers/{customer_id}/messages",
            {"text": "x", "media": [{"url": "http://x"}]},
            400,
            "invalid_request",
        ),
    ]
    for path, body, status, code in cases:
        response = api_post(path, body)
        assert response["statusCode"] == status, (body, response)
        assert json.loads(response["body"])["error"]["code"] == code


def test_stop_blocks_replies_and_start_allows_them_again(twilio_post, api_get, api_post):
    number = "+15551240005"
    twilio_post(sms("SM" + "c5" * 16, sender=number, body="Hello"))
    customer_id = customer_for(api_get, number)
    path = f"/v1/customers/{customer_id}/messages"
    twilio_post(sms("SM" + "c6" * 16, sender=number, body="STOP"))
    refused = api_post(path, {"text": "we miss you"})
    assert refused["statusCode"] == 409
    assert json.loads(refused["body"])["error"]["code"] == "opted_out"
    twilio_post(sms("SM" + "c7" * 16, sender=number, body="start"))
    assert api_post(path, {"text": "welcome back"})["statusCode"] == 202


def test_twilio_advanced_opt_out_type_is_honoured(twilio_post, api_get, api_post):
    number = "+15551240006"
    twilio_post(sms("SM" + "c8" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    twilio_post({**sms("SM" + "c9" * 16, sender=number, body="arrête"), "OptOutType": "STOP"})
    assert api_post(f"/v1/customers/{customer_id}/messages", {"text": "x"})["statusCode"] == 409


def test_rate_limited_twice_then_accepted_is_sent_once(
    twilio_post, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551240007"
    twilio_post(sms("SM" + "d1" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    queued = json.loads(api_post(f"/v1/customers/{customer_id}/messages", {"text": "hi"})["body"])
    provider_sandbox.program_faults("twilio", [429, 429])
    pipeline.publish()
    attempts = 0
    for _ in range(3):
        records = pipeline.receive()
        # Lambda counts deliveries; SQS's own counter does the same here.
        assert records, "the job went missing"
        attempts += 1
        failures = pipeline.dispatch(records)["batchItemFailures"]
        if not failures:
            pipeline.delete(records)
            break
        # Back to visible at once, as if the backoff had elapsed.
        for record in records:
            pipeline.sqs.change_message_visibility(
                QueueUrl=pipeline.queue_url,
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=0,
            )
    statuses = [r.status for r in provider_sandbox.outbox("twilio")]
    assert statuses == [429, 429, 201]
    assert attempts == 3
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "sent"


def test_a_provider_4xx_fails_the_message_with_its_code(
    twilio_post, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551240008"
    twilio_post(sms("SM" + "d2" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    queued = json.loads(api_post(f"/v1/customers/{customer_id}/messages", {"text": "hi"})["body"])
    provider_sandbox.program_faults("twilio", [400])
    pipeline.run()
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "21211"
    assert len(provider_sandbox.outbox("twilio")) == 1


def test_a_dispatcher_that_dies_after_sending_does_not_send_again(
    twilio_post, api_get, api_post, pipeline, provider_sandbox, dispatcher_module, monkeypatch
):
    from botocore.awsrequest import AWSResponse

    number = "+15551240009"
    twilio_post(sms("SM" + "d3" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    reply = api_post(f"/v1/customers/{customer_id}/messages", {"text": "only once"})
    queued = json.loads(reply["body"])
    pipeline.publish()
    records = pipeline.receive()

    # The provider takes the message, then every table write fails: the dispatcher
    # dies between the provider call and recording it.
    def refuse(request, **_):
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"down"}'
        return AWSResponse(request.url, 500, {}, _Body(body))

    client = dispatcher_module.dispatcher.store.dynamodb
    client.meta.events.register_first("before-send.dynamodb.TransactWriteItems", refuse)
    try:
        failures = pipeline.dispatch(records)["batchItemFailures"]
    finally:
        client.meta.events.unregister("before-send.dynamodb.TransactWriteItems", refuse)
    assert len(failures) == 1
    assert len(provider_sandbox.outbox("twilio")) == 1

    # SQS redelivers the job while the claim is fresh: nothing goes out, and the job
    # stays queued until the claim is stale.
    assert len(pipeline.dispatch(records)["batchItemFailures"]) == 1
    assert len(provider_sandbox.outbox("twilio")) == 1

    # After the claim timeout the job resolves it: the provider was called and cannot
    # say whether it took the message, so nothing more goes out and it is failed.
    dispatcher = dispatcher_module.dispatcher
    later = utc_now() + dispatcher.claim_timeout + timedelta(seconds=1)
    monkeypatch.setattr(dispatcher, "clock", lambda: later)
    assert pipeline.dispatch(records)["batchItemFailures"] == []
    assert len(provider_sandbox.outbox("twilio")) == 1
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "send_outcome_unknown"


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def test_whatsapp_inside_the_window_goes_out_on_whatsapp(
    twilio_post, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551240010"
    twilio_post(whatsapp("SM" + "d4" * 16, sender=number))
    customer_id = customer_for(api_get, number)
    api_post(f"/v1/customers/{customer_id}/messages", {"text": "Hola", "channel": "whatsapp"})
    pipeline.run()
    (request,) = provider_sandbox.outbox("twilio")
    assert request.form["To"] == [f"whatsapp:{number}"]
    assert request.form["From"] == ["whatsapp:+14155238886"]


def _old_whatsapp_customer(twilio_module, number: str, sid: str) -> str:
    from threadline.channels.twilio.messaging import normalize_form
    from threadline.schema import RawPayloadRef, utc_now
    from threadline.store import KeptRaw

    raw = KeptRaw(
        ref=RawPayloadRef(
            location="inline", content_type="application/json", size=2, sha256="0" * 64
        ),
        inline="{}",
    )
    result = twilio_module.store.ingest(
        normalize_form(whatsapp(sid, sender=number)),
        raw,
        received_at=utc_now() - timedelta(hours=30),
    )
    return result.customer_id


def test_whatsapp_outside_the_window_fails_with_a_clear_reason(
    twilio_module, api_get, api_post, pipeline, provider_sandbox
):
    customer_id = _old_whatsapp_customer(twilio_module, "+15551240011", "SM" + "d5" * 16)
    queued = json.loads(
        api_post(f"/v1/customers/{customer_id}/messages", {"text": "hi", "channel": "whatsapp"})[
            "body"
        ]
    )
    pipeline.run()
    assert provider_sandbox.outbox("twilio") == []
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "whatsapp_window_closed"


def test_whatsapp_outside_the_window_falls_back_to_sms(
    twilio_module, api_get, api_post, pipeline, provider_sandbox
):
    number = "+15551240012"
    customer_id = _old_whatsapp_customer(twilio_module, number, "SM" + "d6" * 16)
    body = {"text": "hi", "channel": "whatsapp", "fallback": ["sms"]}
    queued = json.loads(api_post(f"/v1/customers/{customer_id}/messages", body)["body"])
    pipeline.run()
    (request,) = provider_sandbox.outbox("twilio")
    assert request.form["To"] == [number]
    message = next(m for m in timeline(api_get, customer_id) if m["id"] == queued["id"])
    assert message["status"] == "sent" and message["channel"] == "sms"


def test_publisher_reports_only_the_record_it_could_not_publish(
    twilio_post, pipeline, publisher_module
):
    from botocore.awsrequest import AWSResponse

    for index in range(3):
        twilio_post(sms(f"SM{index:030d}e1", sender=f"+1555124002{index}"))
    records = pipeline.stream_records()
    message_records = [
        r for r in records if r["dynamodb"]["NewImage"].get("type", {}).get("S") == "message"
    ]
    assert len(message_records) == 3
    poisoned = message_records[1]["dynamodb"]["NewImage"]["message_id"]["S"]

    def refuse_one(request, **_):
        if poisoned.encode() in request.body:
            body = json.dumps(
                {
                    "FailedEntryCount": 1,
                    "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}],
                }
            ).encode()
            return AWSResponse(request.url, 200, {}, _Body(body))
        return None

    client = publisher_module.aws.events()
    client.meta.events.register_first("before-send.events.PutEvents", refuse_one)
    try:
        response = publisher_module.lambda_handler({"Records": message_records}, LambdaContext())
    finally:
        client.meta.events.unregister("before-send.events.PutEvents", refuse_one)
    assert response["batchItemFailures"] == [
        {"itemIdentifier": message_records[1]["dynamodb"]["SequenceNumber"]}
    ]


def _message_metrics(output: str) -> list[tuple[str, str]]:
    """(metric, channel) of every EMF line threadline.telemetry printed."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                found += [(m["Name"], document["channel"]) for m in directive["Metrics"]]
    return found


def test_received_sent_and_failed_are_counted_per_channel(
    twilio_post, api_get, api_post, pipeline, provider_sandbox, capsys
):
    number = "+15551240031"
    capsys.readouterr()
    twilio_post(sms("SM" + "e3" * 16, sender=number))
    twilio_post(sms("SM" + "e3" * 16, sender=number))  # Twilio's retry: stored and counted once
    customer_id = customer_for(api_get, number)
    api_post(f"/v1/customers/{customer_id}/messages", {"text": "one"})
    pipeline.run()
    api_post(f"/v1/customers/{customer_id}/messages", {"text": "two"})
    provider_sandbox.program_faults("twilio", [400])
    pipeline.run()
    assert _message_metrics(capsys.readouterr().out) == [
        ("MessagesReceived", "sms"),
        ("MessagesSent", "sms"),
        ("MessagesFailed", "sms"),
    ]
