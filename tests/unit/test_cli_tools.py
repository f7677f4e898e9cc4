"""The threadline CLI's pure parts and the local console's routes, without a stack."""

from __future__ import annotations

import json
from email import message_from_bytes, policy

import pytest
from werkzeug.test import Client

from devstack.devroutes import DevRoutes
from devstack.sandbox import ProviderSandbox
from devstack.secrets import ProvisionedSecret
from devstack.webconsole import WebConsole
from threadline_cli.channels import CHANNELS, build_email, canonical_identity
from threadline_cli.render import message_text, status_history
from threadline_cli.target import CliError, Target


@pytest.mark.parametrize(
    ("channel", "given", "identity"),
    [
        ("sms", "+1 (555) 123-4567", "phone:+15551234567"),
        ("whatsapp", "phone:+15551234567", "phone:+15551234567"),
        ("slack", "U0123ABCD", "slack:T0LOCAL01:U0123ABCD"),
        ("slack", "slack:T0999:W0123", "slack:T0999:W0123"),
        ("telegram", "123456789", "telegram:123456789"),
        ("email", "Ada@Example.COM", "email:ada@example.com"),
    ],
)
def test_from_takes_bare_values_and_canonical_identities(channel, given, identity):
    assert canonical_identity(CHANNELS[channel], given)[0] == identity


@pytest.mark.parametrize(
    ("channel", "given"),
    [
        ("sms", "not-a-phone"),
        ("sms", "email:ada@example.com"),
        ("messenger", "abc"),
        ("slack", "slack:ana"),
        ("email", "no-at-sign"),
    ],
)
def test_from_refuses_what_the_channel_cannot_carry(channel, given):
    with pytest.raises(CliError):
        canonical_identity(CHANNELS[channel], given)


def test_the_generated_mail_is_from_the_sender_with_the_first_line_as_subject():
    raw = build_email("ada@example.com", "Where is it?\nOrder 42", name="Ada")
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["From"] == "Ada <ada@example.com>"
    assert mail["Subject"] == "Where is it?"
    assert mail["Message-ID"].endswith("@example.com>")
    assert mail.get_content().strip() == "Where is it?\nOrder 42"


def test_text_and_status_renderings():
    message = {
        "parts": [{"type": "media", "content_type": "audio/x-wav"}, {"type": "text", "text": "hi"}],
        "status": "delivered",
        "status_history": [{"status": "queued"}, {"status": "sent"}],
    }
    assert message_text(message) == "[audio/x-wav]\nhi"
    assert status_history(message) == "queued → sent → delivered"
    missed = {"parts": [], "channel_data": {"call": {"outcome": "missed"}}}
    assert message_text(missed) == "[missed call]"


def test_at_means_deployed_and_localhost_is_signed_as_127_0_0_1():
    deployed = Target.resolve("http://127.0.0.1:9999", environ={})
    assert not deployed.local
    with pytest.raises(CliError, match="TWILIO_AUTH_TOKEN is not set"):
        deployed.secret("TWILIO_AUTH_TOKEN")
    local = Target.resolve(None, environ={"THREADLINE_URL": "http://localhost:4000/"})
    assert local.local and local.base_url == "http://127.0.0.1:4000"
    assert Target.resolve(None, environ={}).base_url == "http://127.0.0.1:3000"


def dev_client() -> Client:
    secret = ProvisionedSecret(
        "TwilioAuthTokenParameterName", "TWILIO_AUTH_TOKEN", "/x", "tok", "generated"
    )
    routes = DevRoutes(ProviderSandbox())
    routes.console = WebConsole([secret])
    return Client(routes)


def test_the_console_page_is_served_at_the_root_with_a_strict_policy():
    answer = dev_client().get("/")
    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert "script-src 'self' 'unsafe-inline'" in answer.headers["Content-Security-Policy"]
    page = answer.get_data(as_text=True)
    assert "innerHTML" not in page and "textContent" in page


def test_secrets_are_for_loopback_host_names_only():
    client = dev_client()
    answer = client.get("/_dev/secrets", headers={"Host": "127.0.0.1:3000"})
    assert json.loads(answer.get_data()) == {"secrets": {"TWILIO_AUTH_TOKEN": "tok"}}
    assert client.get("/_dev/secrets", headers={"Host": "localhost:3000"}).status_code == 200
    rebound = client.get("/_dev/secrets", headers={"Host": "evil.example:3000"})
    assert rebound.status_code == 403 and b"tok" not in rebound.get_data()
    assert client.post("/_dev/secrets").status_code == 405


def test_raw_requests_are_404_on_a_stack_without_tables():
    client = dev_client()
    assert client.get("/_dev/raw/01M8VGJHSBX732P0KYDV0Z51T1").status_code == 404
    assert client.get("/_dev/unknown").status_code == 404
