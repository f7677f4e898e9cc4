"""`THREADLINE_API_AUTH=jwt`: the local stack checks access tokens and scopes as the
deployed JWT authorizer (ApiAuth=jwt) does: read tokens read, only write tokens change."""

from __future__ import annotations

import requests

from tests.e2e.conftest import running_stack
from tests.e2e.test_local_stack import signed_twilio_post


def test_a_read_only_token_reads_a_timeline_and_is_refused_a_send():
    with running_stack({"THREADLINE_API_AUTH": "jwt"}) as stack:
        number = "+15551239970"
        inbound = {
            "MessageSid": "SM" + "jwt" * 10 + "01",
            "AccountSid": "AC" + "0" * 32,
            "From": number,
            "To": "+15557650000",
            "Body": "Is my refund through?",
            "NumMedia": "0",
        }
        assert signed_twilio_post(stack, inbound).status_code == 200

        def token(scope: str) -> str:
            minted = requests.get(
                stack.base_url + "/_dev/token", params={"scope": scope}, timeout=10
            )
            assert minted.status_code == 200, minted.text
            return str(minted.json()["access_token"])

        def call(method: str, path: str, bearer: str | None, **kwargs):
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            return requests.request(
                method, stack.base_url + path, headers=headers, timeout=10, **kwargs
            )

        read, write = token("threadline/read"), token("threadline/write")
        found = call("GET", "/v1/customers", read, params={"identity": f"phone:{number}"})
        assert found.status_code == 200, found.text
        customer_id = found.json()["id"]
        timeline = call("GET", f"/v1/customers/{customer_id}/timeline", read)
        assert timeline.status_code == 200, timeline.text
        assert timeline.json()["items"][0]["channel"] == "sms"

        reply = {"text": "Yes, this morning"}
        path = f"/v1/customers/{customer_id}/messages"
        assert call("POST", path, read, json=reply).status_code == 403
        sent = call("POST", path, write, json=reply)
        assert sent.status_code == 202, sent.text
        # A write token reads too; no token, the static API token, or a forged one: 401.
        assert call("GET", f"/v1/customers/{customer_id}", write).status_code == 200
        assert call("GET", f"/v1/customers/{customer_id}", None).status_code == 401
        assert call("GET", f"/v1/customers/{customer_id}", stack.api_token).status_code == 401
        header, payload, _ = read.split(".")
        forged = f"{header}.{payload}.{'A' * 43}"
        assert call("GET", f"/v1/customers/{customer_id}", forged).status_code == 401
        # Webhooks stay behind their providers' signatures only.
        assert (
            signed_twilio_post(
                stack, {**inbound, "MessageSid": "SM" + "jwt" * 10 + "02"}
            ).status_code
            == 200
        )
