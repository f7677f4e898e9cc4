"""The Slack events handler and the Slack sender against DynamoDB, S3 and SSM in moto
server mode, with Slack's Web API played by the provider sandbox on 127.0.0.1."""

# The reply tests reuse test_outbound's fixtures by importing them, which ruff reads
# as redefinitions when the tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import copy
import json
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import load_handler_module
from tests.integration.conftest import LambdaContext
from tests.integration.test_outbound import api_post, pipeline, timeline  # noqa: F401
from tests.unit import slack_payloads as sp
from threadline.channels.base import InboundMessage
from threadline.outbound import RetryLater
from threadline.schema import Channel, Identity, TextPart
from threadline.settings import store_settings
from threadline.store import KeptRaw, TimelineStore

BOT_TOKEN = "xoxb-0000000000-test"


@pytest.fixture(scope="session")
def slack_module(function_env, aws_env, stack):
    stack.put_secret("SlackSigningSecretParameterName", sp.SIGNING_SECRET)
    stack.put_secret("SlackBotTokenParameterName", BOT_TOKEN)
    import os

    os.environ.update(function_env("SlackEventsFunction"))
    return load_handler_module("functions/slack_events")


@pytest.fixture
def slack_post(slack_module):
    def post(payload, headers=None):
        event = sp.slack_event(payload, headers=headers)
        return slack_module.lambda_handler(event, LambdaContext())

    return post


def new_user() -> str:
    return "U" + secrets.token_hex(4).upper()


def new_ts() -> str:
    return f"17{secrets.randbelow(10**8):08d}.{secrets.randbelow(10**6):06d}"


def message_from(user: str, *, base=sp.MESSAGE, ts: str | None = None, event_id=None, **changes):
    payload = copy.deepcopy(base)
    payload["event"].update({"user": user, "ts": ts or new_ts(), **changes})
    payload["event_id"] = event_id or "Ev" + secrets.token_hex(5).upper()
    return payload


def customer_of(api_get, identity: str) -> dict:
    response = api_get("/v1/customers", {"identity": identity})
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def slack_identity(user: str) -> str:
    return f"slack:{sp.TEAM}:{user}"


# ---------------------------------------------------------------- inbound


def test_a_channel_message_is_stored_on_the_senders_timeline(slack_post, api_get):
    user = new_user()
    payload = message_from(user)
    response = slack_post(payload)
    assert response["statusCode"] == 200, response

    customer = customer_of(api_get, slack_identity(user))
    (message,) = timeline(api_get, customer["id"])
    assert message["channel"] == "slack"
    assert message["provider_message_id"] == f"{sp.TEAM}:{sp.CHANNEL}:{payload['event']['ts']}"
    assert message["parts"] == [{"type": "text", "text": "Hello world"}]
    assert message["channel_data"]["event_id"] == payload["event_id"]


def test_url_verification_echoes_the_challenge(slack_post):
    response = slack_post(sp.URL_VERIFICATION)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["challenge"] == sp.URL_VERIFICATION["challenge"]


def test_slack_retries_and_the_mention_of_the_same_message_are_stored_once(slack_post, api_get):
    user = new_user()
    payload = message_from(user)
    assert slack_post(payload)["statusCode"] == 200
    retry = slack_post(
        payload, headers={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
    )
    assert retry["statusCode"] == 200
    mention = message_from(user, base=sp.APP_MENTION, ts=payload["event"]["ts"])
    assert slack_post(mention)["statusCode"] == 200

    customer = customer_of(api_get, slack_identity(user))
    assert len(timeline(api_get, customer["id"])) == 1


def test_bot_messages_are_not_stored(slack_post, api_get):
    user = new_user()
    assert slack_post(message_from(user, bot_id="B0OTHER"))["statusCode"] == 200
    assert api_get("/v1/customers", {"identity": slack_identity(user)})["statusCode"] == 404


def test_an_edit_changes_the_stored_message_and_keeps_the_old_text(slack_post, api_get):
    user = new_user()
    original = message_from(user)
    ts = original["event"]["ts"]
    slack_post(original)

    edit = copy.deepcopy(sp.MESSAGE_CHANGED)
    edit["event_id"] = "Ev" + secrets.token_hex(5).upper()
    edit["event"]["message"].update({"user": user, "ts": ts, "text": "Hello, world!"})
    edit["event"]["message"]["edited"] = {"user": user, "ts": f"{float(ts) + 60:.6f}"}
    assert slack_post(edit)["statusCode"] == 200
    assert slack_post(edit, headers={"x-slack-retry-num": "1"})["statusCode"] == 200

    customer = customer_of(api_get, slack_identity(user))
    (message,) = timeline(api_get, customer["id"])
    assert message["parts"] == [{"type": "text", "text": "Hello, world!"}]
    assert message["edited_at"] is not None
    (revision,) = message["revisions"]
    assert revision["kind"] == "edited"
    assert revision["parts"] == [{"type": "text", "text": "Hello world"}]
    assert revision["raw"]["location"] == "s3"

    deletion = copy.deepcopy(sp.MESSAGE_DELETED)
    deletion["event_id"] = "Ev" + secrets.token_hex(5).upper()
    deletion["event"]["deleted_ts"] = ts
    assert slack_post(deletion)["statusCode"] == 200
    (message,) = timeline(api_get, customer["id"])
    assert message["parts"] == []
    assert message["deleted_at"] is not None
    assert [r["kind"] for r in message["revisions"]] == ["edited", "deleted"]
    assert message["revisions"][1]["parts"] == [{"type": "text", "text": "Hello, world!"}]


def test_an_edit_of_a_message_never_stored_is_acknowledged_and_ignored(slack_post):
    edit = copy.deepcopy(sp.MESSAGE_CHANGED)
    edit["event_id"] = "Ev" + secrets.token_hex(5).upper()
    edit["event"]["message"]["ts"] = new_ts()
    assert slack_post(edit)["statusCode"] == 200


# ---------------------------------------------------------------- e-mail linking


def test_a_slack_user_with_a_known_confirmed_email_joins_that_customers_timeline(
    slack_post, api_get, provider_sandbox, aws_env
):
    address = f"ana.{secrets.token_hex(3)}@example.com"
    store = TimelineStore(store_settings())
    email = Identity(kind="email", value=address)
    existing = store.ingest(
        InboundMessage(
            channel=Channel.EMAIL,
            provider="ses",
            provider_message_id="<" + secrets.token_hex(8) + "@example.com>",
            sender=email,
            parts=[TextPart(text="My order is late")],
        ),
        _inline_raw(),
    )
    user = new_user()
    provider_sandbox.add_slack_user(user, email=address.upper(), real_name="Ana Example")

    assert slack_post(message_from(user, base=sp.DIRECT_MESSAGE))["statusCode"] == 200

    customer = customer_of(api_get, slack_identity(user))
    assert customer["id"] == existing.customer_id
    assert {f"{i['kind']}:{i['value']}" for i in customer["identities"]} == {
        f"email:{address}",
        slack_identity(user),
    }
    assert sorted(m["channel"] for m in timeline(api_get, customer["id"])) == ["email", "slack"]
    looked_up = [r for r in provider_sandbox.outbox("slack") if r.path.endswith("users.info")]
    assert looked_up == []  # users.info is read, not recorded as something sent


def test_an_unknown_confirmed_email_comes_along_on_the_new_customer(
    slack_post, api_get, provider_sandbox
):
    address = f"ben.{secrets.token_hex(3)}@example.com"
    user = new_user()
    provider_sandbox.add_slack_user(user, email=address, real_name="Ben Example")
    assert slack_post(message_from(user))["statusCode"] == 200

    by_slack = customer_of(api_get, slack_identity(user))
    assert customer_of(api_get, f"email:{address}")["id"] == by_slack["id"]
    assert by_slack["display_name"] == "Ben Example"


def test_an_unconfirmed_email_links_nothing(slack_post, api_get, provider_sandbox):
    address = f"cy.{secrets.token_hex(3)}@example.com"
    user = new_user()
    provider_sandbox.add_slack_user(user, email=address, email_confirmed=False)
    assert slack_post(message_from(user))["statusCode"] == 200
    assert api_get("/v1/customers", {"identity": f"email:{address}"})["statusCode"] == 404


def _inline_raw() -> KeptRaw:
    from threadline.schema import RawPayloadRef

    return KeptRaw(
        ref=RawPayloadRef(
            location="inline", content_type="message/rfc822", size=2, sha256="0" * 64
        ),
        inline="{}",
    )


# ---------------------------------------------------------------- outbound


def _reply(api_post, customer_id: str, text: str = "Thanks, we are on it") -> dict:
    response = api_post(f"/v1/customers/{customer_id}/messages", {"text": text})
    assert response["statusCode"] == 202, response
    return json.loads(response["body"])


def test_a_reply_to_a_thread_goes_to_that_thread(
    slack_post, api_get, api_post, pipeline, provider_sandbox
):
    user = new_user()
    thread = new_ts()
    slack_post(message_from(user, base=sp.THREAD_REPLY, thread_ts=thread))
    customer = customer_of(api_get, slack_identity(user))
    queued = _reply(api_post, customer["id"])
    assert queued["channel"] == "slack"

    pipeline.run()
    (sent,) = provider_sandbox.outbox("slack")
    assert sent.path.endswith("/slack/api/chat.postMessage")
    assert sent.form["channel"] == [sp.CHANNEL]
    assert sent.form["thread_ts"] == [thread]
    assert sent.form["text"] == ["Thanks, we are on it"]

    (message,) = [m for m in timeline(api_get, customer["id"]) if m["id"] == queued["id"]]
    assert message["status"] == "sent"
    assert message["provider_message_id"].startswith(f"{sp.TEAM}:{sp.CHANNEL}:")


def test_a_reply_to_a_dm_goes_to_the_dm_and_its_echo_is_not_stored(
    slack_post, api_get, api_post, pipeline, provider_sandbox
):
    user = new_user()
    slack_post(message_from(user, base=sp.DIRECT_MESSAGE))
    customer = customer_of(api_get, slack_identity(user))
    queued = _reply(api_post, customer["id"])
    pipeline.run()
    (sent,) = provider_sandbox.outbox("slack")
    assert sent.form["channel"] == [sp.DM]
    assert "thread_ts" not in sent.form

    (message,) = [m for m in timeline(api_get, customer["id"]) if m["id"] == queued["id"]]
    ts = message["provider_message_id"].rsplit(":", 1)[1]
    # Slack echoes our post as a message event; even without the bot markers it
    # dedupes against the id the dispatcher recorded.
    echo = message_from(user, base=sp.DIRECT_MESSAGE, ts=ts)
    assert slack_post(echo)["statusCode"] == 200
    assert len(timeline(api_get, customer["id"])) == 2


def test_slack_rate_limit_is_retried_then_sent_once(
    slack_post, api_get, api_post, dispatcher_module, provider_sandbox
):
    user = new_user()
    slack_post(message_from(user, base=sp.DIRECT_MESSAGE))
    customer = customer_of(api_get, slack_identity(user))
    queued = _reply(api_post, customer["id"])
    provider_sandbox.program_faults("slack", [429])

    with pytest.raises(RetryLater) as retry:
        dispatcher_module.dispatcher.dispatch(customer["id"], queued["id"], attempt=1)
    assert retry.value.delay == 1.0  # Slack's Retry-After
    dispatcher_module.dispatcher.dispatch(customer["id"], queued["id"], attempt=2)

    assert [r.status for r in provider_sandbox.outbox("slack")] == [429, 200]
    (message,) = [m for m in timeline(api_get, customer["id"]) if m["id"] == queued["id"]]
    assert message["status"] == "sent"


def test_a_slack_api_error_fails_the_reply_with_its_code(
    slack_post, api_get, api_post, dispatcher_module, provider_sandbox
):
    user = new_user()
    slack_post(message_from(user, base=sp.DIRECT_MESSAGE))
    customer = customer_of(api_get, slack_identity(user))
    queued = _reply(api_post, customer["id"])
    provider_sandbox.program_faults("slack", [404])
    dispatcher_module.dispatcher.dispatch(customer["id"], queued["id"], attempt=1)
    (message,) = [m for m in timeline(api_get, customer["id"]) if m["id"] == queued["id"]]
    assert message["status"] == "failed"
    assert message["status_history"][-1]["error_code"] == "channel_not_found"


# ---------------------------------------------------------------- edit rules, races


def _edit_of(user: str, ts: str, text: str, edited_ts: str) -> dict:
    edit = copy.deepcopy(sp.MESSAGE_CHANGED)
    edit["event_id"] = "Ev" + secrets.token_hex(5).upper()
    edit["event"]["message"].update(
        {"user": user, "ts": ts, "text": text, "edited": {"user": user, "ts": edited_ts}}
    )
    return edit


def test_link_previews_stale_edits_and_edits_after_deletion_change_nothing(slack_post, api_get):
    user = new_user()
    original = message_from(user)
    ts = original["event"]["ts"]
    slack_post(original)
    customer = customer_of(api_get, slack_identity(user))

    # Slack re-sends the message when it attaches a link preview: same text.
    assert (
        slack_post(_edit_of(user, ts, "Hello world", f"{float(ts) + 1:.6f}"))["statusCode"] == 200
    )
    (message,) = timeline(api_get, customer["id"])
    assert message["revisions"] == [] and message["edited_at"] is None

    slack_post(_edit_of(user, ts, "second", f"{float(ts) + 20:.6f}"))
    slack_post(_edit_of(user, ts, "first (arrived late)", f"{float(ts) + 10:.6f}"))
    (message,) = timeline(api_get, customer["id"])
    assert message["parts"] == [{"type": "text", "text": "second"}]
    assert len(message["revisions"]) == 1

    deletion = copy.deepcopy(sp.MESSAGE_DELETED)
    deletion["event_id"] = "Ev" + secrets.token_hex(5).upper()
    deletion["event"]["deleted_ts"] = ts
    slack_post(deletion)
    slack_post(_edit_of(user, ts, "third", f"{float(ts) + 30:.6f}"))
    (message,) = timeline(api_get, customer["id"])
    assert message["parts"] == [] and message["deleted_at"] is not None


def test_concurrent_first_messages_of_a_linked_user_make_one_customer(
    slack_post, api_get, provider_sandbox
):
    address = f"dee.{secrets.token_hex(3)}@example.com"
    user = new_user()
    provider_sandbox.add_slack_user(user, email=address, real_name="Dee Example")
    payloads = [message_from(user) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(slack_post, payloads))
    assert [a["statusCode"] for a in answers] == [200] * 4

    customer = customer_of(api_get, slack_identity(user))
    assert customer_of(api_get, f"email:{address}")["id"] == customer["id"]
    assert len(timeline(api_get, customer["id"])) == 4
