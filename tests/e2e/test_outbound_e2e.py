"""Replies end to end over HTTP, with nothing done by hand: the local stack's own pollers
carry each reply from the API through the table's stream, the publisher, EventBridge,
the dispatch queue and the dispatcher to the provider sandbox, and status callbacks
back. Tests look only where a developer would: the API, /_dev/outbox, /_dev/events.

The stack is shared by the session, so each test uses its own phone numbers
(+1555125xxxx) and waits for its replies to settle before it ends: a reply still in
flight would take the sandbox faults the next test programs.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import jsonschema
import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 20.0
SCHEMA_DIR = REPO_ROOT / "infra" / "schemas"
TWILIO_PATH = "/webhooks/twilio/messaging"
SMS_FROM = "+15005550006"  # TwilioSmsFrom's default in template.yaml
WHATSAPP_FROM = "whatsapp:+14155238886"  # TwilioWhatsAppFrom's default
ACCOUNT_SID = "AC" + "0" * 32

T = TypeVar("T")


# ------------------------------------------------------------------------ helpers


def eventually(fetch: Callable[[], T | None], what: str, timeout: float = DEADLINE_SECONDS) -> T:
    """Call ``fetch`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s (last: {value!r})")
        time.sleep(0.2)


def signed_post(stack: RunningStack, url: str, params: dict[str, str]) -> requests.Response:
    """POST a form as Twilio does: signed over the full URL (PublicBaseUrl is the stack's)."""
    signature = RequestValidator(stack.twilio_auth_token).compute_signature(url, params)
    return requests.post(
        url,
        data=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        timeout=10,
    )


def inbound(stack: RunningStack, number: str, body: str = "Hi", *, whatsapp: bool = False) -> None:
    params = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{number}" if whatsapp else number,
        "To": WHATSAPP_FROM if whatsapp else "+15557650000",
        "Body": body,
        "NumMedia": "0",
    }
    response = signed_post(stack, stack.base_url + TWILIO_PATH, params)
    assert response.status_code == 200, response.text


def api(stack: RunningStack, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.api_token}", **kwargs.pop("headers", {})}
    return requests.request(method, stack.base_url + path, headers=headers, timeout=10, **kwargs)


def customer_of(stack: RunningStack, number: str) -> str:
    found = api(stack, "GET", "/v1/customers", params={"identity": f"phone:{number}"})
    assert found.status_code == 200, found.text
    return str(found.json()["id"])


def send(
    stack: RunningStack, customer_id: str, body: dict[str, Any], *, key: str | None = None
) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api(stack, "POST", f"/v1/customers/{customer_id}/messages", json=body, headers=headers)


def queue_reply(stack: RunningStack, customer_id: str, body: dict[str, Any]) -> str:
    response = send(stack, customer_id, body)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "queued"
    return str(queued["id"])


def message(stack: RunningStack, customer_id: str, message_id: str) -> dict[str, Any] | None:
    response = api(stack, "GET", f"/v1/customers/{customer_id}/timeline", params={"limit": 50})
    assert response.status_code == 200, response.text
    return next((m for m in response.json()["items"] if m["id"] == message_id), None)


def reaches(stack: RunningStack, customer_id: str, message_id: str, status: str) -> dict[str, Any]:
    """The message once its status is ``status``."""
    last: dict[str, Any] = {}

    def fetch() -> dict[str, Any] | None:
        last["message"] = message(stack, customer_id, message_id)
        found = last["message"]
        return found if found is not None and found["status"] == status else None

    deadline = time.monotonic() + DEADLINE_SECONDS
    while (found := fetch()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"message never {status} within {DEADLINE_SECONDS:.0f} s: {last}")
        time.sleep(0.2)
    return found


def outbox(stack: RunningStack, to: str) -> list[dict[str, Any]]:
    response = requests.get(
        stack.base_url + "/_dev/outbox", params={"provider": "twilio", "to": to}, timeout=10
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def form_of(entry: dict[str, Any]) -> dict[str, str]:
    return {name: values[0] for name, values in entry["form"].items()}


def program_faults(stack: RunningStack, statuses: list[int]) -> None:
    response = requests.post(
        stack.base_url + "/_dev/sandbox/faults/twilio", json=statuses, timeout=10
    )
    assert response.status_code == 204, response.text


def events(stack: RunningStack, **params: str) -> list[dict[str, Any]]:
    response = requests.get(stack.base_url + "/_dev/events", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json())


def schema_validator(event_type: str) -> Any:
    path = SCHEMA_DIR / f"event.{event_type}.v1.json"
    assert path.exists(), f"no JSON Schema for {event_type} events"
    schema = json.loads(path.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


# -------------------------------------------------------------------------- tests


def test_a_reply_goes_out_through_the_sandbox_and_its_delivery_comes_back(local_stack):
    number = "+15551250001"
    inbound(local_stack, number, "Where is my parcel?")
    customer_id = customer_of(local_stack, number)
    message_id = queue_reply(local_stack, customer_id, {"text": "It ships today."})

    (request,) = eventually(lambda: outbox(local_stack, number), "request in the outbox")
    assert request["status"] == 201
    # The generated Account SID is shaped like a real one; it is in the API path.
    assert re.fullmatch(
        r"/twilio/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json", request["path"]
    )
    form = form_of(request)
    assert form["To"] == number
    assert form["From"] == SMS_FROM
    assert form["Body"] == "It ships today."
    callback = form["StatusCallback"]
    assert callback.startswith(f"{local_stack.base_url}/webhooks/twilio/status?")
    assert dict(parse_qsl(urlsplit(callback).query)) == {"cid": customer_id, "mid": message_id}

    sent = reaches(local_stack, customer_id, message_id, "sent")
    sid = sent["provider_message_id"]
    assert sid.startswith("SM")

    delivered = {
        "MessageSid": sid,
        "MessageStatus": "delivered",
        "AccountSid": ACCOUNT_SID,
        "From": SMS_FROM,
        "To": number,
    }
    response = signed_post(local_stack, callback, delivered)
    assert response.status_code == 200, response.text
    final = reaches(local_stack, customer_id, message_id, "delivered")
    assert [h["status"] for h in final["status_history"]] == ["queued", "sent", "delivered"]
    assert len(outbox(local_stack, number)) == 1


def test_the_same_idempotency_key_twice_sends_one_provider_request(local_stack):
    number = "+15551250002"
    inbound(local_stack, number)
    customer_id = customer_of(local_stack, number)
    body = {"text": "Only once, please."}
    first = send(local_stack, customer_id, body, key="e2e-reply-1")
    second = send(local_stack, customer_id, body, key="e2e-reply-1")
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    reaches(local_stack, customer_id, first.json()["id"], "sent")
    queued_events = eventually(
        lambda: events(local_stack, type="message.queued", customer_id=customer_id),
        "message.queued event",
    )
    assert len(queued_events) == 1
    assert len(outbox(local_stack, number)) == 1


def test_whatsapp_reply_to_a_whatsapp_customer_goes_out_on_whatsapp(local_stack):
    number = "+15551250003"
    inbound(local_stack, number, "Hola", whatsapp=True)
    customer_id = customer_of(local_stack, number)
    message_id = queue_reply(local_stack, customer_id, {"text": "Hola!", "channel": "whatsapp"})
    sent = reaches(local_stack, customer_id, message_id, "sent")
    assert sent["channel"] == "whatsapp"
    (request,) = outbox(local_stack, f"whatsapp:{number}")
    form = form_of(request)
    assert form["From"] == WHATSAPP_FROM
    assert form["Body"] == "Hola!"
    assert outbox(local_stack, number) == []


def test_whatsapp_to_a_customer_who_never_wrote_on_whatsapp_fails(local_stack):
    number = "+15551250004"
    inbound(local_stack, number, "Hi by SMS")
    customer_id = customer_of(local_stack, number)
    message_id = queue_reply(local_stack, customer_id, {"text": "Hi", "channel": "whatsapp"})
    failed = reaches(local_stack, customer_id, message_id, "failed")
    assert failed["status_history"][-1]["error_code"] == "whatsapp_window_closed"
    assert outbox(local_stack, number) == outbox(local_stack, f"whatsapp:{number}") == []


def test_whatsapp_with_an_sms_fallback_goes_out_by_sms(local_stack):
    number = "+15551250005"
    inbound(local_stack, number, "Hi by SMS")
    customer_id = customer_of(local_stack, number)
    body = {"text": "Hi again", "channel": "whatsapp", "fallback": ["sms"]}
    message_id = queue_reply(local_stack, customer_id, body)
    sent = reaches(local_stack, customer_id, message_id, "sent")
    assert sent["channel"] == "sms"
    (request,) = outbox(local_stack, number)
    assert form_of(request)["From"] == SMS_FROM
    assert outbox(local_stack, f"whatsapp:{number}") == []


def test_stop_refuses_replies_and_start_allows_them_again(local_stack):
    number = "+15551250006"
    inbound(local_stack, number, "Hello")
    customer_id = customer_of(local_stack, number)
    inbound(local_stack, number, "STOP")
    refused = send(local_stack, customer_id, {"text": "We miss you"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "opted_out"
    inbound(local_stack, number, "START")
    message_id = queue_reply(local_stack, customer_id, {"text": "Welcome back"})
    reaches(local_stack, customer_id, message_id, "sent")
    assert [form_of(r)["Body"] for r in outbox(local_stack, number)] == ["Welcome back"]


def test_rate_limited_twice_the_reply_is_sent_once_after_backoff(local_stack):
    number = "+15551250007"
    inbound(local_stack, number)
    customer_id = customer_of(local_stack, number)
    program_faults(local_stack, [429, 429])
    message_id = queue_reply(local_stack, customer_id, {"text": "Third time lucky"})
    # The dispatcher backs off 1 s, then 2 s, by hiding the job in the queue.
    sent = reaches(local_stack, customer_id, message_id, "sent")
    assert [h["status"] for h in sent["status_history"]] == ["queued", "sent"]
    assert [r["status"] for r in outbox(local_stack, number)] == [429, 429, 201]


def test_a_provider_400_fails_the_reply_with_twilios_code(local_stack):
    number = "+15551250008"
    inbound(local_stack, number)
    customer_id = customer_of(local_stack, number)
    program_faults(local_stack, [400])
    message_id = queue_reply(local_stack, customer_id, {"text": "Nope"})
    failed = reaches(local_stack, customer_id, message_id, "failed")
    assert failed["status_history"][-1]["error_code"] == "21211"
    assert [r["status"] for r in outbox(local_stack, number)] == [400]


def test_events_for_a_reply_match_their_json_schemas(local_stack):
    number = "+15551250009"
    inbound(local_stack, number, "Is it in stock?")
    customer_id = customer_of(local_stack, number)
    message_id = queue_reply(local_stack, customer_id, {"text": "Yes, it is."})
    sid = reaches(local_stack, customer_id, message_id, "sent")["provider_message_id"]
    callback = form_of(outbox(local_stack, number)[0])["StatusCallback"]
    delivered = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert signed_post(local_stack, callback, delivered).status_code == 200

    wanted = {
        "customer.created": 1,
        "message.received": 1,
        "message.queued": 1,
        "message.sent": 1,
        "message.status_changed": 2,  # queued -> sent, sent -> delivered
    }

    def all_there() -> list[dict[str, Any]] | None:
        found = events(local_stack, customer_id=customer_id)
        counts = {kind: 0 for kind in wanted}
        for event in found:
            if event["detail-type"] in counts:
                counts[event["detail-type"]] += 1
        return found if counts == wanted else None

    found = eventually(all_there, "events of the reply")
    for event in found:
        assert event["source"] == "threadline"
        detail = event["detail"]
        assert detail["type"] == event["detail-type"]
        assert detail["customer_id"] == customer_id
        errors = sorted(schema_validator(event["detail-type"]).iter_errors(detail), key=str)
        assert not errors, (event["detail-type"], [e.message for e in errors])
    changes = [e["detail"] for e in found if e["detail-type"] == "message.status_changed"]
    assert sorted((c["previous_status"], c["message"]["status"]) for c in changes) == [
        ("queued", "sent"),
        ("sent", "delivered"),
    ]
    # Filtering by detail-type happens on the stack's side.
    (sent_event,) = events(local_stack, type="message.sent", customer_id=customer_id)
    assert sent_event["detail"]["message"]["id"] == message_id
