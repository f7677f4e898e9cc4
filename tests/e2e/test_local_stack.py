"""Over HTTP against the local stack, as a provider and a CRM would talk to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote, urlencode

import requests
from twilio.request_validator import RequestValidator

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import READY_LINE, RunningStack, free_port

TWILIO_PATH = "/webhooks/twilio/messaging"


def signed_twilio_post(
    stack: RunningStack,
    params: dict[str, str],
    *,
    token: str | None = None,
    path: str = TWILIO_PATH,
):
    url = stack.base_url + path
    signature = RequestValidator(token or stack.twilio_auth_token).compute_signature(url, params)
    return requests.post(
        url,
        data=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        timeout=10,
    )


def api(stack: RunningStack, path: str, **kwargs):
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    return requests.get(stack.base_url + path, headers=headers, timeout=10, **kwargs)


def test_sms_and_whatsapp_from_one_number_read_back_as_one_customer(local_stack):
    number = "+15551239901"
    sms = {
        "MessageSid": "SM" + "e2e" * 10 + "01",
        "AccountSid": "AC" + "0" * 32,
        "From": number,
        "To": "+15557650000",
        "Body": "My parcel is late",
        "NumMedia": "0",
    }
    whatsapp = {
        "MessageSid": "SM" + "e2e" * 10 + "02",
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{number}",
        "To": "whatsapp:+14155238886",
        "Body": "Sending a photo of the label",
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM0/Media/ME0",
        "MediaContentType0": "image/jpeg",
        "ProfileName": "Ana",
        "WaId": number.lstrip("+"),
    }
    for params in (sms, whatsapp):
        response = signed_twilio_post(local_stack, params)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/xml")

    found = api(local_stack, "/v1/customers", params={"identity": f"phone:{number}"})
    assert found.status_code == 200, found.text
    customer = found.json()
    assert customer["identities"] == [{"kind": "phone", "value": number}]

    timeline = api(local_stack, f"/v1/customers/{customer['id']}/timeline").json()
    assert [m["channel"] for m in timeline["items"]] == ["whatsapp", "sms"]
    assert timeline["items"][0]["parts"][1] == {
        "type": "media",
        "url": whatsapp["MediaUrl0"],
        "content_type": "image/jpeg",
        "size": None,
        "s3_key": None,
        "filename": None,
        "caption": None,
        "provider_media_id": None,
        "sha256": None,
    }
    assert timeline["next_cursor"] is None


def test_a_retried_webhook_is_acknowledged_and_stored_once(local_stack):
    params = {
        "MessageSid": "SM" + "e2e" * 10 + "03",
        "From": "+15551239902",
        "To": "+15557650000",
        "Body": "hello?",
        "NumMedia": "0",
    }
    statuses = [signed_twilio_post(local_stack, params).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    customer = api(local_stack, "/v1/customers", params={"identity": "phone:+15551239902"}).json()
    items = api(local_stack, f"/v1/customers/{customer['id']}/timeline").json()["items"]
    assert len(items) == 1


def test_a_bad_signature_is_refused_and_nothing_is_stored(local_stack):
    params = {"MessageSid": "SM" + "e2e" * 10 + "04", "From": "+15551239903", "Body": "x"}
    response = signed_twilio_post(local_stack, params, token="not-the-token")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    lookup = api(local_stack, "/v1/customers", params={"identity": "phone:+15551239903"})
    assert lookup.status_code == 404


def test_malformed_and_oversized_bodies_get_clear_errors(local_stack):
    url = local_stack.base_url + TWILIO_PATH
    malformed = requests.post(
        url,
        data=b"\xff\xfe not a form",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
        timeout=10,
    )
    assert malformed.status_code == 400
    oversized = requests.post(
        url,
        data=b"Body=" + b"a" * (1024 * 1024 + 10),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
        timeout=10,
    )
    assert oversized.status_code == 413
    assert "Traceback" not in malformed.text + oversized.text


def test_the_api_needs_the_bearer_token_when_one_is_set(local_stack):
    assert requests.get(local_stack.base_url + "/v1/health", timeout=10).status_code == 403
    assert api(local_stack, "/v1/health").json()["status"] == "ok"
    # Webhooks are never behind the API token: the provider's signature is their auth.
    assert signed_twilio_post(local_stack, {"From": "+15551239904"}).status_code == 400


def test_openapi_document_describes_the_routes(local_stack):
    document = api(local_stack, "/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/v1/customers", "/v1/customers/{customer_id}/timeline"} <= set(document["paths"])


def test_the_stack_prints_webhook_urls_with_twilio_retry_overrides(local_stack):
    printed = "".join(local_stack.output)
    assert f"{local_stack.base_url}{TWILIO_PATH}#rc=" in printed
    assert quote("+15551239901") not in printed  # no customer data on the console


def test_ctrl_c_stops_the_stack_cleanly():
    """A second stack, started and interrupted, exits 0 and leaves no process behind."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        env={**_clean_env(), "THREADLINE_PORT": str(port), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    for line in process.stdout:
        if READY_LINE in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert requests_refused(f"http://127.0.0.1:{port}/v1/health")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "THREADLINE_"))}


def requests_refused(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False
