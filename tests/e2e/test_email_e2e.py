"""E-mail over HTTP against the local stack: a raw mail dropped at /_dev/email, as SES
inbound and S3 would deliver it, read back from the REST API."""

from __future__ import annotations

import secrets
import time

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


def test_a_reply_goes_out_as_mail_threaded_under_the_customers(local_stack):
    from email import message_from_string, policy

    address = f"reply.{secrets.token_hex(3)}@example.com"
    message_id = f"<{secrets.token_hex(8)}@mail.example.com>"
    raw = em.ALTERNATIVE.replace(b"Ada@Example.COM", address.encode()).replace(
        b"<CAH+abc123@mail.gmail.com>", message_id.encode()
    )
    dropped = requests.post(local_stack.base_url + "/_dev/email", data=raw, timeout=30)
    assert dropped.json()[0]["result"]["filed"] == 1
    customer = api(local_stack, "/v1/customers", params={"identity": f"email:{address}"}).json()
    headers = {"Authorization": f"Bearer {local_stack.api_token}"}
    queued = requests.post(
        f"{local_stack.base_url}/v1/customers/{customer['id']}/messages",
        json={"text": "We are on it."},
        headers=headers,
        timeout=10,
    )
    assert queued.status_code == 202, queued.text
    assert queued.json()["channel"] == "email"

    deadline = time.monotonic() + 20
    sent: list = []
    while not sent and time.monotonic() < deadline:
        outbox = requests.get(
            local_stack.base_url + "/_dev/outbox",
            params={"provider": "ses", "to": address},
            timeout=10,
        )
        sent = outbox.json()
        time.sleep(0.2)
    [mail] = sent
    mime = message_from_string(mail["form"]["Raw"][0], policy=policy.default)
    assert mime["To"] == address
    assert mime["From"] == "support@threadline.localhost"
    assert mime["Subject"] == "Re: My order has not arrived"
    assert mime["In-Reply-To"] == message_id
    assert mime["References"] == message_id
