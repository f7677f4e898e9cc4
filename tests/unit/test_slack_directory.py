"""SlackDirectory (users.info) and SlackSender against the provider sandbox on 127.0.0.1."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from devstack.sandbox import ProviderSandbox
from tests.unit.test_slack_channel import outbound
from threadline.channels.base import SendFailed
from threadline.channels.slack.events import SlackDirectory, web_api_url
from threadline.channels.slack.outbound import SlackSender
from threadline.schema import MediaPart, TextPart


@pytest.fixture(scope="module")
def sandbox():
    sandbox = ProviderSandbox()
    server = make_server("127.0.0.1", 0, sandbox, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sandbox.url = f"http://127.0.0.1:{server.server_port}"
    yield sandbox
    server.shutdown()


@pytest.fixture(autouse=True)
def _clear(sandbox):
    sandbox.clear()


def directory(sandbox) -> SlackDirectory:
    return SlackDirectory(lambda: "xoxb-test", base_url=web_api_url(f"{sandbox.url}/slack"))


def test_confirmed_email_and_name_are_read_once_per_user(sandbox):
    sandbox.add_slack_user("U0DIR1", email="dana@example.com", real_name="Dana Example")
    lookups = directory(sandbox)
    assert lookups.lookup("T1", "U0DIR1") == ("dana@example.com", "Dana Example")
    sandbox.program_faults("slack", [500])
    # Cached: the programmed failure is not reached for this user...
    assert lookups.lookup("T1", "U0DIR1") == ("dana@example.com", "Dana Example")
    # ...but is for the next one, which then links nothing rather than failing.
    assert lookups.lookup("T1", "U0DIR2") == (None, None)


def test_unconfirmed_email_is_not_offered(sandbox):
    sandbox.add_slack_user("U0DIR3", email="eve@example.com", email_confirmed=False)
    assert directory(sandbox).lookup("T1", "U0DIR3")[0] is None


def test_unknown_user_and_unreachable_slack_link_nothing(sandbox):
    assert directory(sandbox).lookup("T1", "U0NOBODY") == (None, None)
    offline = SlackDirectory(lambda: "xoxb-test", base_url="http://127.0.0.1:9/slack/api/")
    assert offline.lookup("T1", "U0DIR4") == (None, None)


def test_sender_posts_text_and_media_links_as_slack_expects(sandbox):
    sender = SlackSender(bot_token=lambda: "xoxb-test", api_base_url=f"{sandbox.url}/slack")
    message = outbound(
        channel_data={"reply_to": {"channel": "C0SUPPORT", "thread_ts": "1700000000.000100"}},
        parts=[
            TextPart(text="Here is your label"),
            MediaPart(url="https://cdn.example.com/label.pdf", caption="Label"),
        ],
    )
    result = sender.send(message)
    (request,) = sandbox.outbox("slack")
    assert request.form["channel"] == ["C0SUPPORT"]
    assert request.form["thread_ts"] == ["1700000000.000100"]
    assert request.form["text"] == ["Here is your label\nLabel: https://cdn.example.com/label.pdf"]
    assert request.headers["authorization"] == "Bearer xoxb-test"
    team, channel, ts = result.provider_message_id.split(":")
    assert (team, channel) == ("T123ABC456", "C0SUPPORT") and ts


def test_sender_without_reply_to_writes_to_the_users_dm(sandbox):
    SlackSender(bot_token=lambda: "xoxb-test", api_base_url=f"{sandbox.url}/slack").send(outbound())
    (request,) = sandbox.outbox("slack")
    assert request.form["channel"] == ["U061F7AUR"]


@pytest.mark.parametrize(
    ("status", "retryable", "code"),
    [(429, True, "ratelimited"), (503, True, "internal_error"), (404, False, "channel_not_found")],
)
def test_sender_maps_slack_failures(sandbox, status, retryable, code):
    sandbox.program_faults("slack", [status])
    sender = SlackSender(bot_token=lambda: "xoxb-test", api_base_url=f"{sandbox.url}/slack")
    with pytest.raises(SendFailed) as failure:
        sender.send(outbound())
    assert failure.value.retryable is retryable
    assert failure.value.code == code
    if status == 429:
        assert failure.value.retry_after == 1.0


def test_agent_text_cannot_mention_people_or_notify_a_channel(sandbox):
    sender = SlackSender(bot_token=lambda: "xoxb-test", api_base_url=f"{sandbox.url}/slack")
    sender.send(outbound(text="<!channel> <@U0BOSS> refunds & returns: 1 < 2"))
    (request,) = sandbox.outbox("slack")
    assert request.form["text"] == [
        "&lt;!channel&gt; &lt;@U0BOSS&gt; refunds &amp; returns: 1 &lt; 2"
    ]


def test_an_unreadable_bot_token_skips_linking_but_not_the_message(sandbox):
    def no_token() -> str:
        raise RuntimeError("parameter not found")

    assert SlackDirectory(no_token, base_url=web_api_url(f"{sandbox.url}/slack")).lookup(
        "T1", "U1"
    ) == (
        None,
        None,
    )
