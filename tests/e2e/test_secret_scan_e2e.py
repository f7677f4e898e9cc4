"""No configured secret reaches storage: after traffic on every channel and an export,
the table, every bucket (every object version, and inside every zip) are read back
from the local stack's AWS and searched for each secret the stack runs with.

The Telegram webhook's shared secret travels in a request header on every delivery;
the raw envelope keeps only the headers each provider's allowlist names
(threadline.channels.base.audit_headers), so it must not be found anywhere.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from typing import Any

import boto3
import pytest
import requests

from tests.e2e.conftest import RunningStack
from tests.e2e.test_local_stack import signed_twilio_post
from tests.e2e.test_meta_e2e import meta_post, printed_secret
from tests.e2e.test_outbound_e2e import api, customer_of, eventually, inbound
from tests.e2e.test_privacy_e2e import job_done
from tests.e2e.test_telegram_voice_e2e import post_update, telegram_update
from tests.unit import meta_payloads as mp
from tests.unit import slack_payloads as sp
from threadline.envelope_cleanup import clean_envelope
from threadline.item_codec import inline_envelope

pytestmark = pytest.mark.e2e

NUMBER = "+15551287001"


def _printed(stack: RunningStack, pattern: str) -> list[str]:
    return [m.group(1) for line in stack.output for m in [re.search(pattern, line)] if m]


def _aws(stack: RunningStack, service: str) -> Any:
    (endpoint,) = _printed(stack, r"AWS endpoint\s+(\S+)")[:1]
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _traffic(stack: RunningStack) -> None:
    inbound(stack, NUMBER, "Where is parcel 5521?")
    status = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "MessageStatus": "delivered",
        "AccountSid": "AC" + "0" * 32,
        "To": NUMBER,
        "From": "+15557650000",
    }
    assert signed_twilio_post(stack, status, path="/webhooks/twilio/status").status_code < 500
    fallback = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": "AC" + "0" * 32,
        "From": NUMBER,
        "To": "+15557650000",
        "Body": "through the fallback",
        "NumMedia": "0",
    }
    assert signed_twilio_post(stack, fallback, path="/webhooks/twilio/fallback").status_code == 200
    call = {
        "CallSid": "CA" + secrets.token_hex(16),
        "AccountSid": "AC" + "0" * 32,
        "From": NUMBER,
        "To": "+15557650000",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    assert signed_twilio_post(stack, call, path="/webhooks/twilio/voice").status_code == 200

    slack = sp.variant(sp.MESSAGE, ts=f"{1795331809 + secrets.randbelow(10**6)}.000100")
    slack["event_id"] = "Ev" + secrets.token_hex(5).upper()
    body = json.dumps(slack).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(sp.sign(body, secret=stack.slack_signing_secret))
    answer = requests.post(
        stack.base_url + "/webhooks/slack/events", data=body, headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text

    message = {**mp.WA_TEXT, "id": "wamid.scan" + secrets.token_hex(8)}
    assert meta_post(stack, mp.whatsapp_envelope(mp.whatsapp_value(message))).status_code == 200

    user_id = 700000000 + secrets.randbelow(10**8)
    update = telegram_update(user_id, 1, "hello from telegram")
    assert post_update(stack, update).status_code == 200


def _secrets(stack: RunningStack) -> dict[str, str]:
    found = {
        "TWILIO_AUTH_TOKEN": stack.twilio_auth_token,
        "THREADLINE_API_TOKEN": stack.api_token,
        "SLACK_SIGNING_SECRET": stack.slack_signing_secret,
        "TELEGRAM_SECRET_TOKEN": stack.telegram_secret_token,
        "TELEGRAM_BOT_TOKEN": stack.telegram_bot_token,
    }
    for name in ("META_APP_SECRET", "META_VERIFY_TOKEN"):
        found[name] = printed_secret(stack, name)
    return {name: value for name, value in found.items() if value}


def _stored_blobs(stack: RunningStack) -> list[tuple[str, bytes]]:
    """Everything the stack stored: table items, and every object version (zips opened)."""
    blobs: list[tuple[str, bytes]] = []
    dynamodb = _aws(stack, "dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                blobs.append((f"table {table}", json.dumps(item, default=repr).encode()))
                if "raw" in item:
                    # An envelope riding inline is stored compressed: read it as kept.
                    value = item["raw"].get("S", item["raw"].get("B"))
                    envelope = inline_envelope({"raw": value})
                    blobs.append((f"table {table} raw", envelope or b""))
    s3 = _aws(stack, "s3")
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []):
                key = version["Key"]
                data = s3.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])[
                    "Body"
                ].read()
                blobs.append((f"s3://{bucket}/{key}", data))
                if data[:2] == b"PK":
                    with zipfile.ZipFile(io.BytesIO(data)) as archive:
                        for name in archive.namelist():
                            blobs.append((f"s3://{bucket}/{key}!{name}", archive.read(name)))
    return blobs


def test_no_configured_secret_is_in_the_table_the_buckets_or_an_export(local_stack):
    _traffic(local_stack)
    customer_id = customer_of(local_stack, NUMBER)
    started = api(local_stack, "POST", f"/v1/customers/{customer_id}/exports")
    assert started.status_code == 202, started.text
    eventually(lambda: job_done(local_stack, started.headers["Location"]), "finished export")
    # The fallback route's message is filed by the drain, later.
    eventually(
        lambda: (
            len(api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["items"])
            >= 2
        ),
        "the fallback message filed",
    )

    blobs = _stored_blobs(local_stack)
    hits = [
        (name, where)
        for name, value in _secrets(local_stack).items()
        for where, data in blobs
        if value.encode() in data
    ]
    assert hits == []
    # Not a vacuous pass: envelopes of every provider were stored and read back.
    stored = b"\n".join(data for _, data in blobs)
    for header in (b"x-twilio-signature", b"x-slack-signature", b"x-hub-signature-256"):
        assert header in stored
    assert b"hello from telegram" in stored


def test_the_cleanup_removes_a_secret_header_from_an_old_envelope():
    old = json.dumps(
        {
            "method": "POST",
            "url": "https://h/webhooks/telegram",
            "headers": {"content-type": "application/json", "x-telegram-bot-api-secret-token": "s"},
            "received_at": "2026-01-01T00:00:00+00:00",
            "body": "{}",
        }
    ).encode()
    cleaned = clean_envelope(old)
    assert cleaned is not None
    assert json.loads(cleaned)["headers"] == {"content-type": "application/json"}
    assert clean_envelope(cleaned) is None  # idempotent: nothing left to remove
