"""The ``threadline`` CLI against the running local stack, over HTTP.

Every channel's ``send`` is signed with the secrets the CLI reads from the stack
itself (``GET /_dev/secrets``) and lands on the sender's timeline, read back with
``threadline timeline --json``; replies, events (with signed forwarding) and replays
go through the same stack; and each mistake a user makes is one line and a
non-zero exit. Identities are random per test (phones +1555130xxxx).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from standardwebhooks import Webhook

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import RunningStack, free_port
from tests.e2e.test_webhooks_e2e import Receiver
from threadline_cli.main import cli

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 20.0


def run(stack: RunningStack, *args: str, token: bool = True, **env: str) -> Any:
    """``threadline ARGS`` in-process, pointed at ``stack`` as a developer's shell would be."""
    environ = {
        "THREADLINE_URL": stack.base_url,
        "THREADLINE_API_TOKEN": stack.api_token if token else "",
        **env,
    }
    return CliRunner().invoke(cli, list(args), env=environ, catch_exceptions=False)


def timeline_json(stack: RunningStack, who: str) -> dict[str, Any]:
    result = run(stack, "timeline", who, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def texts(items: list[dict[str, Any]]) -> list[str]:
    return [part["text"] for item in items for part in item["parts"] if part["type"] == "text"]


def phone() -> str:
    return f"+1555130{secrets.randbelow(10**4):04d}"


def digits(length: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (length - 1)) + 10 ** (length - 1))


# channel, --from, the identity its timeline is found by, the channel stored
CASES = {
    "sms": lambda number: (number, f"phone:{number}", "sms"),
    "whatsapp": lambda number: (number, f"phone:{number}", "whatsapp"),
    "voice": lambda number: (f"phone:{number}", f"phone:{number}", "voice"),
    "whatsapp-cloud": lambda number: (number, f"phone:{number}", "whatsapp"),
    "slack": lambda _: ("slack:T0CLI0001:U" + digits(8), None, "slack"),
    "messenger": lambda _: ("messenger:" + digits(16), None, "messenger"),
    "instagram": lambda _: (digits(16), None, "instagram"),
    "telegram": lambda _: ("telegram:" + digits(9), None, "telegram"),
    "email": lambda _: (f"grace.{secrets.token_hex(3)}@example.com", None, "email"),
}


@pytest.mark.parametrize("channel", list(CASES))
def test_every_channel_sent_by_the_cli_lands_on_the_timeline(local_stack, channel):
    sender, identity, stored_channel = CASES[channel](phone())
    text = f"Where is order {secrets.token_hex(3)}?"

    sent = run(local_stack, "send", channel, "--from", sender, text)

    assert sent.exit_code == 0, sent.output
    assert "✓" in sent.stdout
    if identity is None:
        kind = {"email": "email", "instagram": "instagram"}.get(channel)
        identity = f"{kind}:{sender}" if kind and ":" not in sender else sender
    assert f"threadline timeline {identity}" in sent.stdout
    found = timeline_json(local_stack, identity)
    assert identity in [f"{i['kind']}:{i['value']}" for i in found["customer"]["identities"]]
    mine = [item for item in found["items"] if item["channel"] == stored_channel]
    assert mine and all(item["direction"] == "inbound" for item in mine)
    assert text in texts(mine)
    if channel == "voice":  # a missed call, then the voicemail with its transcript
        assert any(item["channel_data"].get("call", {}).get("outcome") for item in mine)


def test_webchat_sent_by_the_cli_lands_on_the_timeline_and_the_visitor_returns(
    local_stack, tmp_path
):
    cache = {"XDG_CACHE_HOME": str(tmp_path)}  # where the CLI keeps visitors' tokens
    first_text = f"Do you ship to Norway? {secrets.token_hex(3)}"

    first = run(local_stack, "send", "webchat", "--from", "new", first_text, **cache)

    assert first.exit_code == 0, first.output
    visitor = re.search(r"threadline timeline (webchat:v_[\w-]+)", first.stdout)
    message_id = re.search(r"message id (\S+)", first.stdout)
    assert visitor and message_id, first.stdout
    found = timeline_json(local_stack, visitor.group(1))
    stored = {item["id"]: item for item in found["items"]}
    assert message_id.group(1) in stored
    assert stored[message_id.group(1)]["channel"] == "webchat"
    assert stored[message_id.group(1)]["direction"] == "inbound"
    assert first_text in texts(found["items"])

    again = run(local_stack, "send", "webchat", "--from", visitor.group(1), "Still there?", **cache)

    assert again.exit_code == 0, again.output
    assert f"threadline timeline {visitor.group(1)}" in again.stdout
    later = timeline_json(local_stack, visitor.group(1))
    assert later["customer"]["id"] == found["customer"]["id"]
    assert {first_text, "Still there?"} <= set(texts(later["items"]))

    stranger = run(
        local_stack, "send", "webchat", "--from", "webchat:v_notopenedbythecli", "hi", **cache
    )
    assert stranger.exit_code != 0
    assert "--from new" in stranger.output


def test_the_timeline_table_shows_channel_direction_text_and_status(local_stack):
    number = phone()
    assert run(local_stack, "send", "sms", "--from", number, "First by SMS").exit_code == 0
    assert run(local_stack, "send", "telegram", "--from", digits(9), "elsewhere").exit_code == 0
    result = run(local_stack, "timeline", number)
    assert result.exit_code == 0, result.output
    for expected in ("sms", "in", "First by SMS", "received", "conversation"):
        assert expected in result.stdout
    assert "elsewhere" not in result.stdout


def test_a_reply_goes_out_through_the_api(local_stack):
    number = phone()
    assert run(local_stack, "send", "sms", "--from", number, "Any news?").exit_code == 0

    result = run(local_stack, "reply", f"phone:{number}", "It ships today.", "--wait")

    assert result.exit_code == 0, result.output
    assert "queued" in result.stdout and "status: sent" in result.stdout
    outbox = requests.get(
        local_stack.base_url + "/_dev/outbox",
        params={"provider": "twilio", "to": number},
        timeout=10,
    ).json()
    assert [entry["form"]["Body"] for entry in outbox] == [["It ships today."]]
    items = timeline_json(local_stack, number)["items"]
    assert [item["direction"] for item in items] == ["outbound", "inbound"]


def test_events_lists_a_customers_events(local_stack):
    number = phone()
    assert run(local_stack, "send", "sms", "--from", number, "event me").exit_code == 0
    customer_id = timeline_json(local_stack, number)["customer"]["id"]

    def listed() -> list[str]:
        result = run(local_stack, "events", "--customer", customer_id, "--json")
        assert result.exit_code == 0, result.output
        return [json.loads(line)["detail-type"] for line in result.stdout.splitlines()]

    deadline = time.monotonic() + WAIT_SECONDS
    while "conversation.opened" not in listed() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert {"message.received", "customer.created", "conversation.opened"} <= set(listed())


def console_script() -> list[str]:
    """The installed ``threadline`` script next to this Python, else ``-m``."""
    script = Path(sys.executable).parent / "threadline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "threadline_cli"]


def test_events_follow_forwards_new_events_signed(local_stack):
    receiver = Receiver()
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    env = {
        **os.environ,
        "THREADLINE_URL": local_stack.base_url,
        "THREADLINE_FORWARD_SECRET": secret,
    }
    follower = subprocess.Popen(
        [
            *console_script(),
            "events",
            "--follow",
            "--last",
            "0",
            "--type",
            "message.received",
            "--forward",
            receiver.url,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(2)  # past its first poll: only what happens next is forwarded
        number = phone()
        assert run(local_stack, "send", "sms", "--from", number, "forward me").exit_code == 0
        deadline = time.monotonic() + WAIT_SECONDS
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGINT)
        output, _ = follower.communicate(timeout=10)
        receiver.close()
    assert receiver.received, output
    first = receiver.received[0]
    event = Webhook(secret).verify(
        first.body, first.headers
    )  # raises unless signed with the secret
    assert event["type"] == "message.received"
    assert event["message"]["parts"] == [{"type": "text", "text": "forward me"}]
    assert "message.received" in output and "→ " in output  # stdout and stderr, merged


def test_replay_keeps_a_valid_signature_and_re_signs_slack(local_stack):
    number = phone()
    assert run(local_stack, "send", "sms", "--from", number, "replay me").exit_code == 0
    [sms] = timeline_json(local_stack, number)["items"]
    result = run(local_stack, "replay", sms["id"])
    assert result.exit_code == 0, result.output
    assert "kept the stored X-Twilio-Signature" in result.stdout
    assert "replayed sms message" in result.stdout and ": 200" in result.stdout
    assert len(timeline_json(local_stack, number)["items"]) == 1  # stored once

    user = "slack:T0CLI0001:U" + digits(8)
    assert run(local_stack, "send", "slack", "--from", user, "replay slack").exit_code == 0
    [slack] = timeline_json(local_stack, user)["items"]
    result = run(local_stack, "replay", slack["id"])
    assert result.exit_code == 0, result.output
    assert "re-signed with the local SLACK_SIGNING_SECRET" in result.stdout

    chat = "telegram:" + digits(9)
    assert run(local_stack, "send", "telegram", "--from", chat, "replay telegram").exit_code == 0
    [telegram] = timeline_json(local_stack, chat)["items"]
    result = run(local_stack, "replay", telegram["id"])
    assert result.exit_code == 0, result.output
    assert "TELEGRAM_SECRET_TOKEN" in result.stdout or "kept the stored" in result.stdout


# ---------------------------------------------------------------------- errors


def one_line_error(result: Any) -> str:
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["send", "fax", "--from", "+15551300000", "hi"], 2, "unknown channel 'fax'"),
        (["send", "sms", "--from", "not-a-phone", "hi"], 2, "is not a phone identity"),
        (["send", "slack", "--from", "phone:+15551300000", "hi"], 2, "slack wants a slack"),
        (["send", "telegram", "--from", "grace", "hi"], 2, "is not a telegram identity"),
        (["timeline", "phone:+15551399999"], 1, "no customer has phone:+15551399999"),
        (["timeline", "fax:123"], 2, "'fax:123' is not an identity"),
        (["timeline", "01NOSUCHCUSTOMER0000000000"], 1, "no customer '01NOSUCHCUSTOMER"),
        (["replay", "01NOSUCHMESSAGE00000000000"], 1, "no stored message has this id"),
        (
            ["send", "email", "--at", "https://example.com", "--from", "a@b.co", "hi"],
            1,
            "/_dev/email",
        ),
    ],
)
def test_mistakes_are_one_line_and_a_non_zero_exit(local_stack, args, exit_code, message):
    result = run(local_stack, *args)
    assert result.exit_code == exit_code, result.output
    assert message in one_line_error(result)


def test_no_stack_running_is_one_line(local_stack):
    result = run(
        local_stack,
        "send",
        "sms",
        "--from",
        "+15551300000",
        "hi",
        THREADLINE_URL=f"http://127.0.0.1:{free_port()}",
    )
    assert result.exit_code == 1
    assert "no threadline stack answers at http://127.0.0.1:" in one_line_error(result)
    assert "make dev" in result.stderr


def test_a_missing_api_token_is_one_line(local_stack):
    number = phone()
    assert run(local_stack, "send", "sms", "--from", number, "hi").exit_code == 0
    result = run(local_stack, "timeline", number, token=False)
    assert result.exit_code == 1
    assert "THREADLINE_API_TOKEN" in one_line_error(result)


def test_a_deployed_target_signs_with_the_environments_secret(local_stack):
    """--at: secrets from the environment; a wrong one is refused by the webhook."""
    number = phone()
    at = ["--at", local_stack.base_url]
    right, wrong = (
        run(local_stack, "send", "sms", *at, "--from", number, "at", TWILIO_AUTH_TOKEN=token)
        for token in (local_stack.twilio_auth_token, "not-" + local_stack.twilio_auth_token)
    )
    assert right.exit_code == 0, right.output
    assert wrong.exit_code == 1
    assert "answered 403" in one_line_error(wrong)


def test_the_secrets_route_refuses_other_host_names(local_stack):
    """A page whose DNS name was rebound to 127.0.0.1 must not read the secrets."""
    url = local_stack.base_url + "/_dev/secrets"
    assert requests.get(url, timeout=10).json()["secrets"]["TWILIO_AUTH_TOKEN"] == (
        local_stack.twilio_auth_token
    )
    rebound = requests.get(url, headers={"Host": "attacker.example"}, timeout=10)
    assert rebound.status_code == 403
    assert local_stack.twilio_auth_token not in rebound.text
