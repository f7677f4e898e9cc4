"""Meta over HTTP against the local stack: the webhook as Meta calls it, replies through
the stack's own pollers to the sandbox's Graph API endpoints, seen at /_dev/outbox.

The stack generates the Meta app secret and verify token and prints them (as a
developer would copy them into the Meta app dashboard); these tests read them there.
Numbers are +1555127xxxx and PSIDs 12000000000000xx, so no other test meets them.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningStack
from tests.e2e.test_outbound_e2e import (
    api,
    customer_of,
    eventually,
    form_of,
    inbound,
    queue_reply,
    reaches,
)
from tests.e2e.test_outbound_e2e import (
    message as timeline_message,
)
from tests.unit import meta_payloads as mp
from threadline.channels.meta.webhook import signature_of

pytestmark = pytest.mark.e2e

META_PATH = "/webhooks/meta"


def printed_secret(stack: RunningStack, name: str) -> str:
    if os.environ.get(name):  # the stack took the developer's own value
        return os.environ[name]
    for line in stack.output:
        found = re.search(rf"\b{name}=(\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"the stack printed no {name}")


def meta_post(stack: RunningStack, document: dict[str, Any]) -> requests.Response:
    body = json.dumps(document).encode()
    signature = signature_of(body, printed_secret(stack, "META_APP_SECRET"))
    return requests.post(
        stack.base_url + META_PATH,
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        timeout=10,
    )


def meta_outbox(stack: RunningStack, to: str) -> list[dict[str, Any]]:
    response = requests.get(
        stack.base_url + "/_dev/outbox", params={"provider": "meta", "to": to}, timeout=10
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def test_meta_handshake_over_http(local_stack):
    token = printed_secret(local_stack, "META_VERIFY_TOKEN")
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "987654321"}
    answer = requests.get(local_stack.base_url + META_PATH, params=query, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.text == "987654321"
    wrong = requests.get(
        local_stack.base_url + META_PATH, params={**query, "hub.verify_token": "x"}, timeout=10
    )
    assert wrong.status_code == 403 and "987654321" not in wrong.text


def test_unsigned_meta_post_is_refused(local_stack):
    answer = requests.post(local_stack.base_url + META_PATH, json={"object": "page"}, timeout=10)
    assert answer.status_code == 403


def test_whatsapp_cloud_message_from_an_sms_customer_and_the_reply_through_the_graph_api(
    local_stack,
):
    number = "+15551270001"
    inbound(local_stack, number, "Hi, by SMS")
    customer_id = customer_of(local_stack, number)

    message = mp.wa_message("text", {"body": "And now on WhatsApp"}, wamid="wamid.E2E0001")
    message["from"] = number.lstrip("+")
    value = mp.whatsapp_value(message, name="Ana E2E")
    value["contacts"][0]["wa_id"] = number.lstrip("+")
    answer = meta_post(local_stack, mp.whatsapp_envelope(value))
    assert answer.status_code == 200, answer.text
    assert customer_of(local_stack, number) == customer_id

    message_id = queue_reply(
        local_stack, customer_id, {"text": "Got it, on WhatsApp", "channel": "whatsapp"}
    )
    (request,) = eventually(lambda: meta_outbox(local_stack, number.lstrip("+")), "Graph send")
    assert request["path"] == f"/meta/v23.0/{mp.PHONE_NUMBER_ID}/messages"
    assert request["status"] == 200
    form = form_of(request)
    assert form["messaging_product"] == "whatsapp"
    assert form["recipient_type"] == "individual"
    assert form["type"] == "text"
    assert json.loads(form["text"]) == {"body": "Got it, on WhatsApp", "preview_url": False}
    assert form["biz_opaque_callback_data"] == f"{customer_id}/{message_id}"

    sent = reaches(local_stack, customer_id, message_id, "sent")
    assert sent["provider"] == "meta" and sent["provider_message_id"].startswith("wamid.")
    delivered = mp.wa_status(
        "delivered", wamid=sent["provider_message_id"], callback=f"{customer_id}/{message_id}"
    )
    assert meta_post(local_stack, mp.whatsapp_envelope(mp.status_value(delivered))).ok
    reaches(local_stack, customer_id, message_id, "delivered")


def test_messenger_message_and_reply(local_stack):
    psid = "1200000000000001"
    event = mp.messaging_event(psid, mp.PAGE_ID, message={"mid": "m_E2E0001", "text": "Hello page"})
    assert meta_post(local_stack, mp.page_envelope(event)).status_code == 200
    found = api(local_stack, "GET", "/v1/customers", params={"identity": f"messenger:{psid}"})
    assert found.status_code == 200, found.text
    customer_id = found.json()["id"]
    (stored,) = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["items"]
    assert stored["channel"] == "messenger" and stored["parts"][0]["text"] == "Hello page"

    message_id = queue_reply(local_stack, customer_id, {"text": "Hello from the page"})
    (request,) = eventually(lambda: meta_outbox(local_stack, psid), "Send API request")
    assert request["path"] == "/meta/v23.0/me/messages"
    form = form_of(request)
    assert json.loads(form["recipient"]) == {"id": psid}
    assert form["messaging_type"] == "RESPONSE"
    assert json.loads(form["message"]) == {"text": "Hello from the page"}
    sent = reaches(local_stack, customer_id, message_id, "sent")
    assert sent["channel"] == "messenger"
    assert timeline_message(local_stack, customer_id, message_id) is not None
