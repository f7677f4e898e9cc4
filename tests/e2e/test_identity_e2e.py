"""Identity over HTTP against the local stack: an SMS customer and an e-mail customer
become one when the e-mail is linked with merge=true; the events reach /_dev/events
through the stack's own stream poller, publisher and EventBridge."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningStack
from tests.e2e.test_outbound_e2e import customer_of, events, eventually, inbound, schema_validator
from tests.unit import email_messages as em

pytestmark = pytest.mark.e2e


def call(stack: RunningStack, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    return requests.request(method, stack.base_url + path, headers=headers, timeout=30, **kwargs)


def mail_from(stack: RunningStack, address: str) -> None:
    raw = em.ALTERNATIVE.replace(b"Ada@Example.COM", address.encode()).replace(
        b"<CAH+abc123@mail.gmail.com>", f"<{secrets.token_hex(8)}@mail.example.com>".encode()
    )
    dropped = requests.post(stack.base_url + "/_dev/email", data=raw, timeout=30)
    assert dropped.status_code == 202 and dropped.json()[0]["result"]["filed"] == 1, dropped.text


def test_linking_an_email_to_an_sms_customer_merges_the_timelines(local_stack):
    number = "+1555126" + str(secrets.randbelow(9000) + 1000)
    address = f"merge.{secrets.token_hex(3)}@example.com"
    inbound(local_stack, number, "Texting about order 42")
    sms_customer = customer_of(local_stack, number)
    mail_from(local_stack, address)
    found = call(local_stack, "GET", "/v1/customers", params={"identity": f"email:{address}"})
    mail_customer = found.json()["id"]
    assert mail_customer != sms_customer

    link = {"kind": "email", "value": address.upper()}
    refused = call(local_stack, "POST", f"/v1/customers/{sms_customer}/identities", json=link)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["customer_id"] == mail_customer

    linked = call(
        local_stack,
        "POST",
        f"/v1/customers/{sms_customer}/identities",
        params={"merge": "true"},
        json=link,
    )
    assert linked.status_code == 200, linked.text
    assert {f"{i['kind']}:{i['value']}" for i in linked.json()["identities"]} == {
        f"phone:{number}",
        f"email:{address}",
    }

    page = call(local_stack, "GET", f"/v1/customers/{sms_customer}/timeline").json()
    assert sorted(m["channel"] for m in page["items"]) == ["email", "sms"]
    assert {m["customer_id"] for m in page["items"]} == {sms_customer}
    # The e-mail customer's id is an alias now: it answers for the SMS customer.
    alias = call(local_stack, "GET", f"/v1/customers/{mail_customer}")
    assert alias.status_code == 200 and alias.json()["id"] == sms_customer
    aliased_page = call(local_stack, "GET", f"/v1/customers/{mail_customer}/timeline").json()
    assert aliased_page["items"] == page["items"]

    merged = eventually(
        lambda: events(local_stack, type="customer.merged", customer_id=sms_customer),
        "customer.merged event",
    )
    [detail] = [e["detail"] for e in merged]
    assert detail["absorbed_customer_id"] == mail_customer
    assert detail["surviving_customer_id"] == sms_customer
    schema_validator("customer.merged").validate(detail)
    linked_events = eventually(
        lambda: events(local_stack, type="customer.identity_linked", customer_id=sms_customer),
        "customer.identity_linked event",
    )
    [linked_detail] = [e["detail"] for e in linked_events]
    assert linked_detail["identity"] == {"kind": "email", "value": address}
    assert linked_detail["link_source"] == "api"
    schema_validator("customer.identity_linked").validate(linked_detail)
    # The moved messages were announced once, when they arrived, never again.
    received = events(local_stack, type="message.received")
    ids = [e["detail"]["message"]["id"] for e in received]
    assert len(ids) == len(set(ids))
    assert all(m["id"] in ids for m in page["items"])
