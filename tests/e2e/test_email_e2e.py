"""E-mail over HTTP against the local stack: a raw mail dropped at /_dev/email, as SES
inbound and S3 would deliver it, read back from the REST API."""

from __future__ import annotations

import secrets

import requests

from tests.e2e.conftest import RunningStack
from tests.unit import email_messages as em


def api(stack: RunningStack, path: str, **kwargs):
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    return requests.get(stack.base_url + path, headers=headers, timeout=10, **kwargs)


def test_an_email_lands_on_the_senders_timeline(local_stack):
    address = f"grace.{secrets.token_hex(3)}@example.com"
    message_id = f"<{secrets.token_hex(8)}@mail.example.com>"
    raw = em.ALTERNATIVE.replace(b"Ada@Example.COM", address.encode()).replace(
        b"<CAH+abc123@mail.gmail.com>", message_id.encode()
    )
    dropped = requests.post(
        local_stack.base_url + "/_dev/email",
        data=raw,
        headers={"Content-Type": "message/rfc822"},
        timeout=30,
    )
    assert dropped.status_code == 202, dropped.text
    [delivery] = dropped.json()
    assert delivery["function"] == "EmailInboundFunction"
    assert delivery["ok"] is True
    assert delivery["result"] == {"filed": 1, "skipped": []}

    customer = api(local_stack, "/v1/customers", params={"identity": f"email:{address}"})
    assert customer.status_code == 200, customer.text
    page = api(local_stack, f"/v1/customers/{customer.json()['id']}/timeline").json()
    [message] = page["items"]
    assert message["channel"] == "email"
    assert message["provider_message_id"] == message_id
    assert message["parts"] == [{"type": "text", "text": "Hello, order #42 has not arrived. Café?"}]
    assert message["raw"]["location"] == "s3"
    assert message["raw"]["key"] == delivery["key"]


def test_an_empty_mail_drop_is_refused(local_stack):
    answer = requests.post(local_stack.base_url + "/_dev/email", data=b"", timeout=10)
    assert answer.status_code == 400


def test_the_stack_prints_how_to_drop_a_mail(local_stack):
    assert any("/_dev/email" in line and "curl" in line for line in local_stack.output)
