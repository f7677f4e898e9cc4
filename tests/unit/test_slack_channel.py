"""The Slack channel: signatures, url_verification, normalization of Slack's documented
Events API payloads, loop prevention, e-mail lookup, and the answers handle_webhook
gives Slack. Nothing here reaches slack.com: the directory and sender are doubles or
point at 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import slack_payloads as sp
from tests.unit.webhook_events import RecordingStore
from threadline.channels.base import Acknowledgement, InboundMessage, MessageEdit, WebhookRequest
from threadline.channels.slack.events import SlackEvents, is_from_a_bot
from threadline.channels.slack.outbound import SlackSender, _send_failed
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    MediaPart,
    Message,
    MessageStatus,
    TextPart,
    utc_now,
)
from threadline.settings import webhook_settings
from threadline.webhook import handle_webhook


class FakeDirectory:
    def __init__(self, users: dict[tuple[str, str], tuple[str | None, str | None]] | None = None):
        self.users = users or {}
        self.calls: list[tuple[str, str]] = []

    def lookup(self, team: str, user: str) -> tuple[str | None, str | None]:
        self.calls.append((team, user))
        return self.users.get((team, user), (None, None))


def adapter(directory=None) -> SlackEvents:
    return SlackEvents(signing_secret=lambda: sp.SIGNING_SECRET, directory=directory)


def request_for(payload, **kwargs) -> WebhookRequest:
    return WebhookRequest.from_http_api_event(sp.slack_event(payload, **kwargs))


def normalize(payload, directory=None):
    return adapter(directory).normalize(request_for(payload))


def only(payload, directory=None):
    (item,) = normalize(payload, directory)
    return item


@pytest.fixture(autouse=True)
def no_public_base_url(monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    webhook_settings.cache_clear()
    yield
    webhook_settings.cache_clear()


# ---------------------------------------------------------------- signature


@pytest.mark.parametrize("name", sorted(sp.ALL))
def test_every_documented_payload_verifies_when_signed(name):
    adapter().verify(request_for(sp.ALL[name]))


def test_wrong_secret_is_refused():
    with pytest.raises(SignatureInvalid):
        adapter().verify(request_for(sp.MESSAGE, secret="0" * 32))


def test_tampered_body_is_refused():
    event = sp.slack_event(sp.MESSAGE)
    event["body"] = event["body"].replace("Hello world", "Refund me $5000")
    with pytest.raises(SignatureInvalid):
        adapter().verify(WebhookRequest.from_http_api_event(event))


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_timestamp_outside_the_five_minute_window_is_refused(age):
    with pytest.raises(SignatureInvalid):
        adapter().verify(request_for(sp.MESSAGE, timestamp=int(time.time()) - age))


def test_timestamp_inside_the_window_passes():
    adapter().verify(request_for(sp.MESSAGE, timestamp=int(time.time()) - 290))


@pytest.mark.parametrize(
    "headers",
    [
        {"x-slack-signature": ""},
        {"x-slack-request-timestamp": ""},
        {"x-slack-request-timestamp": "not-a-time"},
        {"x-slack-signature": "v1=abc"},
    ],
)
def test_missing_or_malformed_signature_headers_are_refused(headers):
    with pytest.raises(SignatureInvalid):
        adapter().verify(request_for(sp.MESSAGE, headers=headers))


def test_bad_signature_is_403_and_nothing_is_stored():
    store = RecordingStore()
    response = handle_webhook(sp.slack_event(sp.MESSAGE, secret="f" * 32), adapter(), store)
    assert response["statusCode"] == 403
    assert store.calls == []


# ---------------------------------------------------------------- url_verification


def test_url_verification_answers_with_the_challenge():
    store = RecordingStore()
    response = handle_webhook(sp.slack_event(sp.URL_VERIFICATION), adapter(), store)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"challenge": sp.URL_VERIFICATION["challenge"]}
    assert store.calls == []


def test_url_verification_must_be_signed_too():
    response = handle_webhook(
        sp.slack_event(sp.URL_VERIFICATION, secret="f" * 32), adapter(), RecordingStore()
    )
    assert response["statusCode"] == 403


def test_url_verification_without_a_challenge_is_400():
    payload = {"type": "url_verification", "token": "x"}
    response = handle_webhook(sp.slack_event(payload), adapter(), RecordingStore())
    assert response["statusCode"] == 400


def test_the_handshake_answer_is_per_request_not_adapter_state():
    channel = adapter()
    handle_webhook(sp.slack_event(sp.URL_VERIFICATION), channel, RecordingStore())
    response = handle_webhook(sp.slack_event(sp.MESSAGE), channel, RecordingStore())
    assert "challenge" not in response["body"]
    assert isinstance(channel.acknowledge(), Acknowledgement)


# ---------------------------------------------------------------- messages


def test_plain_channel_message():
    message = only(sp.MESSAGE)
    assert isinstance(message, InboundMessage)
    assert message.channel is Channel.SLACK
    assert message.provider == "slack"
    assert message.provider_message_id == f"{sp.TEAM}:{sp.CHANNEL}:1355517523.000005"
    assert message.sender == Identity(kind="slack", value=f"{sp.TEAM}:{sp.CUSTOMER}")
    assert message.parts == [TextPart(text="Hello world")]
    assert message.sent_at is not None and message.sent_at.year == 2012
    assert message.thread_id is None and message.in_reply_to is None
    # Replies to a channel message go into a thread under it.
    assert message.reply_to == {"channel": sp.CHANNEL, "thread_ts": "1355517523.000005"}


def test_unknown_fields_are_kept_in_channel_data():
    data = only(sp.MESSAGE).channel_data
    assert data["event_id"] == "Ev0001MESSAGE"
    assert data["channel"] == sp.CHANNEL
    assert data["channel_type"] == "channel"
    assert data["client_msg_id"] == "0837851c-2d34-4d4d-804c-7aed753c3421"
    assert data["blocks"][0]["block_id"] == "YKju"
    assert data["api_app_id"] == sp.APP
    assert data["event_time"] == 1355517523


def test_thread_reply_names_its_thread_and_parent():
    message = only(sp.THREAD_REPLY)
    assert message.thread_id == "1355517523.000005"
    assert message.in_reply_to == f"{sp.TEAM}:{sp.CHANNEL}:1355517523.000005"
    assert message.reply_to == {"channel": sp.CHANNEL, "thread_ts": "1355517523.000005"}
    assert message.channel_data["parent_user_id"] == sp.CUSTOMER


def test_file_share_becomes_a_media_part():
    message = only(sp.FILE_SHARE)
    text, media = message.parts
    assert text == TextPart(text="Here is the invoice")
    assert media == MediaPart(
        content_type="application/pdf",
        size=52311,
        url="https://files.slack.com/files-pri/T123ABC456-F04EEHX1EES/invoice.pdf",
        filename="invoice.pdf",
        provider_media_id="F04EEHX1EES",
    )
    assert message.channel_data["files"][0]["permalink"].endswith("invoice.pdf")
    assert message.channel_data["subtype"] == "file_share"


def test_file_without_url_is_kept_with_its_id():
    payload = sp.variant(sp.FILE_SHARE, files=[{"id": "F1", "mode": "file_access"}])
    (_, media) = only(payload).parts
    assert media == MediaPart(provider_media_id="F1")


def test_app_mention_is_a_message_with_the_same_id_scheme():
    message = only(sp.APP_MENTION)
    assert message.provider_message_id == f"{sp.TEAM}:{sp.CHANNEL}:1515449522.000016"
    assert message.channel_data["event_type"] == "app_mention"


def test_message_and_app_mention_of_one_message_share_a_provider_id():
    mention = sp.variant(sp.APP_MENTION, ts=sp.MESSAGE["event"]["ts"])
    assert only(mention).provider_message_id == only(sp.MESSAGE).provider_message_id


def test_direct_message_is_replied_to_plainly_in_the_dm():
    message = only(sp.DIRECT_MESSAGE)
    assert message.reply_to == {"channel": sp.DM}
    assert message.channel_data["channel_type"] == "im"


def test_user_from_another_team_keeps_their_team_in_the_identity():
    payload = sp.variant(sp.MESSAGE, user_team="T999OTHER")
    assert only(payload).sender.value == f"T999OTHER:{sp.CUSTOMER}"


@pytest.mark.parametrize("name", ["bot_message", "own_reply_echo", "channel_join"])
def test_bots_our_own_echoes_and_workspace_noise_are_not_stored(name):
    assert normalize(sp.ALL[name]) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"bot_id": "B123"},
        {"subtype": "bot_message"},
        {"user": sp.BOT_USER},
        {"app_id": sp.APP},
        {"bot_profile": {"id": "B1"}},
    ],
)
def test_any_sign_of_a_bot_is_ignored(changes):
    assert normalize(sp.variant(sp.MESSAGE, **changes)) == []


def test_a_human_with_a_bot_user_id_elsewhere_is_not_mistaken_for_us():
    assert not is_from_a_bot(sp.MESSAGE["event"], sp.MESSAGE)


def test_other_event_types_and_envelopes_are_acknowledged_without_storing():
    assert normalize(sp.wrap({"type": "reaction_added", "user": sp.CUSTOMER})) == []
    assert normalize({"type": "app_rate_limited", "team_id": sp.TEAM}) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "event_callback", "team_id": sp.TEAM, "event_id": "Ev1"},
        sp.variant(sp.MESSAGE, user=None),
        sp.variant(sp.MESSAGE, ts="yesterday"),
        sp.variant(sp.MESSAGE, user="not a slack id"),
        sp.variant(sp.MESSAGE, files="F1"),
        sp.variant(sp.MESSAGE_DELETED, deleted_ts=None),
        sp.variant(sp.MESSAGE_CHANGED, message="Hello"),
    ],
)
def test_malformed_events_are_400(payload):
    with pytest.raises(MalformedRequest):
        normalize(payload)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b"\xff\xfe", b'"text"'])
def test_bodies_that_are_not_a_json_object_are_400(body):
    response = handle_webhook(sp.slack_event(body), adapter(), RecordingStore())
    assert response["statusCode"] == 400


# ---------------------------------------------------------------- edits, deletions


def test_message_changed_is_an_edit_of_the_stored_message_not_a_new_message():
    edit = only(sp.MESSAGE_CHANGED)
    assert isinstance(edit, MessageEdit)
    assert edit.kind == "edited"
    assert edit.provider_message_id == only(sp.MESSAGE).provider_message_id
    assert edit.parts == [TextPart(text="Hello, world!")]
    assert edit.edit_id == "Ev0004CHANGED"
    assert edit.at is not None and edit.at.timestamp() == pytest.approx(1358878755.000001)


def test_message_deleted_names_the_deleted_message():
    edit = only(sp.MESSAGE_DELETED)
    assert edit.kind == "deleted"
    assert edit.provider_message_id == only(sp.MESSAGE).provider_message_id
    assert edit.parts == []


def test_edits_of_bot_messages_are_ignored():
    payload = sp.variant(
        sp.MESSAGE_CHANGED, message={**sp.MESSAGE_CHANGED["event"]["message"], "bot_id": "B1"}
    )
    assert normalize(payload) == []


def test_pipeline_applies_edits_and_keeps_their_request_in_s3():
    store = EditRecordingStore()
    response = handle_webhook(sp.slack_event(sp.MESSAGE_CHANGED), adapter(), store)
    assert response["statusCode"] == 200
    assert [name for name, _ in store.calls] == ["keep_raw", "apply_edit"]
    assert store.may_inline == [False]


class EditRecordingStore(RecordingStore):
    def __init__(self) -> None:
        super().__init__()
        self.may_inline: list[bool] = []

    def keep_raw(self, raw, *, may_inline=True):
        self.may_inline.append(may_inline)
        return super().keep_raw(raw, may_inline=may_inline)

    def apply_edit(self, edit, raw=None):
        self.calls.append(("apply_edit", (edit, raw)))
        return True


# ---------------------------------------------------------------- retries, answers


def test_a_signed_message_is_stored_then_answered_200():
    store = RecordingStore()
    response = handle_webhook(sp.slack_event(sp.MESSAGE), adapter(), store)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"ok": True}
    assert [name for name, _ in store.calls] == ["keep_raw", "ingest"]


def test_a_retry_carries_the_same_provider_id_and_records_the_retry():
    retry = request_for(sp.MESSAGE, headers={"x-slack-retry-num": "1"})
    (first,) = adapter().normalize(request_for(sp.MESSAGE))
    (again,) = adapter().normalize(retry)
    assert again.provider_message_id == first.provider_message_id
    assert again.channel_data["event_id"] == first.channel_data["event_id"]
    assert again.channel_data["retry_num"] == "1"


def test_storage_failure_is_5xx_so_slack_retries():
    from threadline.errors import StorageUnavailable

    store = RecordingStore(fail_on="ingest", fail_with=StorageUnavailable("down"))
    response = handle_webhook(sp.slack_event(sp.MESSAGE), adapter(), store)
    assert response["statusCode"] == 503


# ---------------------------------------------------------------- e-mail lookup


def test_confirmed_email_is_offered_as_a_verified_identity():
    directory = FakeDirectory({(sp.TEAM, sp.CUSTOMER): ("Ana@Example.com", "Ana Example")})
    message = only(sp.MESSAGE, directory)
    assert message.verified_identities == [Identity(kind="email", value="ana@example.com")]
    assert message.sender_display_name == "Ana Example"


def test_no_directory_means_no_lookup_and_no_linking():
    assert only(sp.MESSAGE).verified_identities == []


def test_bots_are_never_looked_up():
    directory = FakeDirectory()
    normalize(sp.BOT_MESSAGE, directory)
    assert directory.calls == []


def test_unusable_email_is_dropped():
    directory = FakeDirectory({(sp.TEAM, sp.CUSTOMER): ("not-an-address", None)})
    assert only(sp.MESSAGE, directory).verified_identities == []


# ---------------------------------------------------------------- properties


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
slack_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["event_callback", "url_verification", "app_rate_limited"])
        | st.text(max_size=5),
        "team_id": st.sampled_from([sp.TEAM, "", "t-1"]) | json_values,
        "event_id": st.sampled_from(["Ev1", ""]) | json_values,
        "challenge": json_values,
        "api_app_id": json_values,
        "authorizations": json_values,
        "event": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["message", "app_mention", "reaction_added"]) | json_values,
                "subtype": st.sampled_from(
                    [None, "file_share", "message_changed", "message_deleted", "bot_message"]
                )
                | json_values,
                "user": st.sampled_from([sp.CUSTOMER, sp.BOT_USER, "u-x"]) | json_values,
                "channel": st.sampled_from([sp.CHANNEL, sp.DM]) | json_values,
                "ts": st.sampled_from(["1355517523.000005", "x", "1e400"]) | json_values,
                "thread_ts": json_values,
                "deleted_ts": json_values,
                "text": json_values,
                "files": json_values,
                "message": json_values,
                "bot_id": json_values,
                "channel_type": json_values,
                "user_team": json_values,
            },
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=slack_like | json_values)
def test_any_signed_json_body_is_answered_200_or_400(body):
    store = EditRecordingStore()
    response = handle_webhook(sp.slack_event(json.dumps(body).encode()), adapter(), store)
    assert response["statusCode"] in (200, 400), response
    assert "Traceback" not in response["body"]


# ---------------------------------------------------------------- sender


def outbound(channel_data=None, text="Thanks, we are on it", parts=None) -> Message:
    now = utc_now()
    return Message(
        id="01HZX0000000000000000000AA",
        customer_id="01HZX0000000000000000000CC",
        conversation_id="01HZX0000000000000000000DD",
        channel=Channel.SLACK,
        direction=Direction.OUTBOUND,
        provider="slack",
        author_role=AuthorRole.AGENT,
        recipient=Identity(kind="slack", value=f"{sp.TEAM}:{sp.CUSTOMER}"),
        received_at=now,
        parts=parts if parts is not None else [TextPart(text=text)],
        status=MessageStatus.QUEUED,
        channel_data=channel_data or {},
    )


class FakeResponse:
    def __init__(self, status_code, headers=None, data=None):
        self.status_code = status_code
        self.headers = headers or {}
        self.data = data or {}


class FakeError(Exception):
    def __init__(self, response):
        self.response = response


def test_429_is_retryable_with_retry_after():
    failure = _send_failed(FakeError(FakeResponse(429, {"Retry-After": "30"}, {"ok": False})))
    assert failure.retryable and failure.retry_after == 30.0


def test_5xx_is_retryable_and_api_errors_are_final():
    assert _send_failed(FakeError(FakeResponse(503, {}, {"error": "fatal_error"}))).retryable
    final = _send_failed(
        FakeError(FakeResponse(200, {}, {"ok": False, "error": "channel_not_found"}))
    )
    assert not final.retryable and final.code == "channel_not_found"


def test_sender_refuses_a_message_without_a_slack_recipient():
    from threadline.channels.base import SendFailed

    message = outbound().model_copy(
        update={"recipient": Identity(kind="phone", value="+15551230001")}
    )
    with pytest.raises(SendFailed) as failure:
        SlackSender(bot_token=lambda: "xoxb-test", api_base_url="http://127.0.0.1:9").send(message)
    assert not failure.value.retryable


def test_unreachable_slack_is_a_retryable_network_error():
    from threadline.channels.base import SendFailed

    # Port 9 on loopback refuses at once: nothing leaves the machine.
    sender = SlackSender(bot_token=lambda: "xoxb-test", api_base_url="http://127.0.0.1:9")
    with pytest.raises(SendFailed) as failure:
        sender.send(outbound())
    assert failure.value.retryable and failure.value.code == "network_error"


def test_api_base_url_replaces_slack_com():
    sender = SlackSender(
        bot_token=lambda: "xoxb-test", api_base_url="http://127.0.0.1:3000/_dev/sandbox/slack/"
    )
    assert sender.base_url == "http://127.0.0.1:3000/_dev/sandbox/slack/api/"
