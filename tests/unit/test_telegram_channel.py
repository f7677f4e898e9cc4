"""The Telegram channel: secret token, Update normalization, the webhook's answers."""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import telegram_payloads as tg
from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    WebhookRequest,
)
from threadline.channels.telegram.inbound import TelegramWebhook, normalize_update
from threadline.errors import MalformedRequest, SignatureInvalid, StorageUnavailable
from threadline.schema import (
    ContactPart,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    RawPayloadRef,
    TextPart,
)
from threadline.settings import webhook_settings
from threadline.store import IngestResult, KeptRaw, RawPayload
from threadline.webhook import MAX_BODY_BYTES, handle_webhook

CHANNEL = TelegramWebhook(secret_token=lambda: tg.SECRET_TOKEN)


@pytest.fixture(autouse=True)
def no_public_base_url(monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    webhook_settings.cache_clear()
    yield
    webhook_settings.cache_clear()


def normalized(payload: dict[str, Any]) -> list[Any]:
    return normalize_update(payload)


def inbound(payload: dict[str, Any]) -> InboundMessage:
    (item,) = [i for i in normalized(payload) if isinstance(i, InboundMessage)]
    return item


# ---------------------------------------------------------------- secret token


def request_for(event: dict[str, Any]) -> WebhookRequest:
    return WebhookRequest.from_http_api_event(event)


def test_the_secret_token_of_set_webhook_passes():
    CHANNEL.verify(request_for(tg.telegram_event(tg.TEXT)))


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong", tg.SECRET_TOKEN + "x", tg.SECRET_TOKEN[:-1], tg.SECRET_TOKEN.upper()],
    ids=["missing", "empty", "wrong", "longer", "shorter", "other-case"],
)
def test_a_missing_or_wrong_secret_token_is_refused(secret):
    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(request_for(tg.telegram_event(tg.TEXT, secret=secret)))


def test_a_non_ascii_secret_token_is_refused_not_crashed():
    event = tg.telegram_event(tg.TEXT, secret="s3cr3t-tökén")
    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(request_for(event))


def test_the_token_is_read_for_each_request_so_a_rotation_is_picked_up():
    tokens = iter(["old-token", "new-token"])
    channel = TelegramWebhook(secret_token=lambda: next(tokens))
    channel.verify(request_for(tg.telegram_event(tg.TEXT, secret="old-token")))
    with pytest.raises(SignatureInvalid):
        channel.verify(request_for(tg.telegram_event(tg.TEXT, secret="old-token")))


# ---------------------------------------------------------------- messages


def test_a_text_message_is_the_users_message_in_their_chat():
    message = inbound(tg.TEXT)
    assert message.channel.value == "telegram"
    assert message.provider == "telegram"
    assert message.provider_message_id == f"{tg.CHAT_ID}:42"
    assert message.sender == Identity(kind=IdentityKind.TELEGRAM, value=str(tg.USER_ID))
    assert message.sender_display_name == "Ada Lovelace"
    assert message.sent_at == datetime.fromtimestamp(tg.DATE, UTC)
    assert message.parts == [TextPart(text="/start hello, where is my order?")]
    assert message.reply_to == {"chat_id": str(tg.CHAT_ID), "message_id": "42"}
    assert message.channel_data["update_id"] == tg.TEXT["update_id"]
    assert message.channel_data["entities"] == tg.TEXT["message"]["entities"]
    assert message.channel_data["chat"]["type"] == "private"
    assert message.verified_identities == []


def test_the_largest_photo_is_kept_with_its_caption_as_text():
    message = inbound(tg.PHOTO)
    assert message.parts == [
        TextPart(text="the parcel arrived broken"),
        MediaPart(content_type="image/jpeg", size=85000, provider_media_id="AgAD-large"),
    ]
    # All sizes stay in channel_data: nothing is dropped.
    assert len(message.channel_data["photo"]) == 3


def test_the_largest_photo_wins_whatever_order_the_sizes_come_in():
    payload = copy.deepcopy(tg.PHOTO)
    payload["message"]["photo"].reverse()
    (media,) = [p for p in inbound(payload).parts if isinstance(p, MediaPart)]
    assert media.provider_media_id == "AgAD-large"


def test_a_document_keeps_its_name_type_and_size():
    (part,) = inbound(tg.DOCUMENT).parts
    assert part == MediaPart(
        content_type="application/pdf",
        size=48213,
        filename="invoice-4521.pdf",
        provider_media_id="BQACAgIAAxkBAAI",
    )


def test_a_voice_note_is_an_audio_part_with_its_duration_kept():
    message = inbound(tg.VOICE)
    assert message.parts == [
        MediaPart(content_type="audio/ogg", size=11201, provider_media_id="AwACAgIAAxkBAAI")
    ]
    assert message.channel_data["voice"]["duration"] == 4


@pytest.mark.parametrize(
    ("field", "content_type"),
    [
        ("audio", "audio/mpeg"),
        ("video", "video/mp4"),
        ("video_note", "video/mp4"),
        ("sticker", "image/webp"),
    ],
)
def test_other_media_get_telegrams_default_content_type(field, content_type):
    payload = tg.update(
        message=tg.message(60, **{field: {"file_id": "F1", "file_unique_id": "U1"}})
    )
    (part,) = inbound(payload).parts
    assert part == MediaPart(content_type=content_type, provider_media_id="F1")


def test_a_gif_sent_as_animation_and_document_is_one_media_part():
    gif = {"file_id": "CgACAgQ", "file_unique_id": "AgADgQ", "mime_type": "video/mp4"}
    payload = tg.update(message=tg.message(61, animation=gif, document=gif))
    assert inbound(payload).parts == [
        MediaPart(content_type="video/mp4", provider_media_id="CgACAgQ")
    ]


def test_a_location_and_a_venue():
    assert inbound(tg.LOCATION).parts == [LocationPart(latitude=52.520008, longitude=13.404954)]
    assert inbound(tg.VENUE).parts == [
        LocationPart(
            latitude=52.516275,
            longitude=13.377704,
            name="Brandenburger Tor",
            address="Pariser Platz, 10117 Berlin",
        )
    ]


def test_the_senders_own_contact_links_their_phone():
    message = inbound(tg.OWN_CONTACT)
    assert message.parts == [ContactPart(name="Ada Lovelace", phones=["15555550123"])]
    assert message.verified_identities == [Identity(kind=IdentityKind.PHONE, value="+15555550123")]


def test_someone_elses_contact_links_nothing():
    message = inbound(tg.OTHER_CONTACT)
    assert message.parts == [ContactPart(name="Charles", phones=["+15555550999"])]
    assert message.verified_identities == []


def test_a_contact_without_user_id_links_nothing():
    payload = copy.deepcopy(tg.OWN_CONTACT)
    del payload["message"]["contact"]["user_id"]
    assert inbound(payload).verified_identities == []


def test_an_own_contact_with_an_unusable_number_is_stored_without_linking():
    payload = copy.deepcopy(tg.OWN_CONTACT)
    payload["message"]["contact"]["phone_number"] = "12"
    message = inbound(payload)
    assert message.verified_identities == []
    assert message.parts == [ContactPart(name="Ada Lovelace", phones=["12"])]


def test_a_reply_names_the_message_it_answers_in_the_same_chat():
    assert inbound(tg.REPLY).in_reply_to == f"{tg.CHAT_ID}:17"


def test_a_group_message_is_the_user_in_the_group_chat_and_its_topic():
    message = inbound(tg.GROUP_TEXT)
    assert message.sender.value == str(tg.USER_ID)
    assert message.provider_message_id == f"{tg.GROUP_ID}:53"
    assert message.reply_to == {"chat_id": str(tg.GROUP_ID), "message_id": "53"}
    assert message.thread_id == "5"


def test_a_poll_has_no_part_and_is_kept_in_channel_data():
    message = inbound(tg.POLL)
    assert message.parts == []
    assert message.channel_data["poll"]["question"] == "Which day suits you?"


def test_the_same_update_twice_has_the_same_provider_id():
    first, second = inbound(tg.TEXT), inbound(copy.deepcopy(tg.TEXT))
    assert first.provider_message_id == second.provider_message_id


# ---------------------------------------------------------------- edits, buttons


def test_an_edited_message_is_an_edit_of_the_stored_one():
    (edit,) = normalized(tg.EDITED)
    assert isinstance(edit, MessageEdit)
    assert edit.provider_message_id == f"{tg.CHAT_ID}:42"
    assert edit.kind == "edited"
    assert edit.edit_id == str(tg.EDITED["update_id"])
    assert edit.parts == [TextPart(text="where is my order #4521?")]
    assert edit.at == datetime.fromtimestamp(tg.DATE + 60, UTC)


def test_an_edit_by_a_bot_is_ignored():
    payload = copy.deepcopy(tg.EDITED)
    payload["edited_message"]["from"] = tg.BOT_USER
    assert normalized(payload) == []


def test_a_button_tap_is_an_interactive_reply_and_is_answered_in_the_response():
    items = normalized(tg.CALLBACK)
    message = next(i for i in items if isinstance(i, InboundMessage))
    (answer,) = [i for i in items if isinstance(i, Acknowledgement)]
    assert message.provider_message_id == "callback:4382bfdwdsb323b2d9"
    assert message.parts == [
        InteractiveReplyPart(kind="button", reply_id="helpful:yes", title="Yes 👍")
    ]
    assert message.in_reply_to == f"{tg.CHAT_ID}:18"
    assert message.reply_to == {"chat_id": str(tg.CHAT_ID)}
    assert message.channel_data["chat_instance"] == "-4290472375924591"
    assert json.loads(answer.body) == {
        "method": "answerCallbackQuery",
        "callback_query_id": "4382bfdwdsb323b2d9",
    }


def test_a_button_tap_on_an_inline_message_has_no_chat_but_is_stored():
    payload = copy.deepcopy(tg.CALLBACK)
    query = payload["callback_query"]
    del query["message"]
    query["inline_message_id"] = "AAAAAGqXAAB"
    message = inbound(payload)
    assert message.in_reply_to is None and message.reply_to is None
    assert message.parts[0].title is None


@pytest.mark.parametrize("name", sorted(tg.SKIPPED))
def test_bots_channel_posts_service_messages_and_other_updates_are_not_stored(name):
    assert [i for i in normalized(tg.SKIPPED[name]) if not isinstance(i, Acknowledgement)] == []


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"update_id": "1", "message": tg.message(text="x")},
        {"update_id": True, "message": tg.message(text="x")},
        {"update_id": -1, "message": tg.message(text="x")},
        tg.update(message=None),
        tg.update(message=[]),
        tg.update(message={**tg.message(text="x"), "chat": None}),
        tg.update(message={**tg.message(text="x"), "message_id": "42"}),
        tg.update(message={**tg.message(text="x"), "from": {"is_bot": False}}),
        tg.update(message={**tg.message(text="x"), "from": {**tg.USER, "id": 0}}),
        tg.update(message=tg.message(photo="AgAD")),
        tg.update(message=tg.message(document={"file_name": "a.pdf"})),
        tg.update(message=tg.message(location={"latitude": 91, "longitude": 0})),
        tg.update(message=tg.message(location={"latitude": "52", "longitude": 13})),
        tg.update(callback_query={"from": tg.USER}),
        tg.update(callback_query={"id": "1"}),
    ],
    ids=[
        "no-update-id",
        "string-update-id",
        "bool-update-id",
        "negative-update-id",
        "null-message",
        "list-message",
        "no-chat",
        "string-message-id",
        "user-without-id",
        "user-id-zero",
        "photo-not-a-list",
        "document-without-file-id",
        "latitude-91",
        "latitude-as-text",
        "callback-without-id",
        "callback-without-from",
    ],
)
def test_malformed_updates_are_refused(payload):
    with pytest.raises(MalformedRequest):
        normalize_update(payload)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
KEYS = [
    "update_id",
    "message",
    "edited_message",
    "callback_query",
    "channel_post",
    "from",
    "chat",
    "id",
    "message_id",
    "text",
    "caption",
    "photo",
    "document",
    "voice",
    "location",
    "venue",
    "contact",
    "reply_to_message",
    "date",
    "edit_date",
    "is_bot",
    "user_id",
    "phone_number",
    "data",
    "file_id",
    "latitude",
    "longitude",
    "file_size",
    "width",
]


def update_like() -> st.SearchStrategy[Any]:
    """JSON shaped like updates: the real keys with arbitrary values, nested."""
    leaf = JSON
    return st.recursive(
        leaf,
        lambda children: (
            st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
            | st.lists(children, max_size=3)
        ),
        max_leaves=40,
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        update_like(),
        st.builds(
            lambda u, m: {"update_id": u, "message": m}, st.integers(0, 2**40), update_like()
        ),
    )
)
def test_any_json_is_normalized_or_refused_as_malformed(document):
    try:
        items = normalize_update(document) if isinstance(document, dict) else None
    except MalformedRequest:
        return
    if items is None:
        with pytest.raises(MalformedRequest):
            CHANNEL.normalize(request_for(tg.telegram_event(document)))
        return
    for item in items:
        assert isinstance(item, InboundMessage | MessageEdit | Acknowledgement)


@given(st.binary(max_size=200))
def test_any_body_is_normalized_or_refused_as_malformed(body):
    with contextlib.suppress(MalformedRequest):
        CHANNEL.normalize(request_for(tg.telegram_event(None, raw=body)))


# ---------------------------------------------------------------- the webhook's answers


@dataclass
class Store:
    """Records what the pipeline stores; fails when told to."""

    fail: Exception | None = None
    ingested: list[InboundMessage] = field(default_factory=list)
    edits: list[MessageEdit] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw:
        ref = RawPayloadRef(
            location="inline", content_type=raw.content_type, size=1, sha256=raw.body_sha256
        )
        return KeptRaw(ref=ref, inline="{}")

    def ingest(self, inbound: InboundMessage, raw: KeptRaw, *, received_at=None) -> IngestResult:
        if self.fail:
            raise self.fail
        duplicate = inbound.provider_message_id in self.seen
        if not duplicate:
            self.seen.add(inbound.provider_message_id)
            self.ingested.append(inbound)
        return IngestResult(message_id="M", customer_id="C", duplicate=duplicate)

    def apply_status(self, update: Any) -> bool:
        return False

    def apply_edit(self, edit: MessageEdit, raw: KeptRaw | None = None) -> bool:
        self.edits.append(edit)
        return True


def test_a_stored_update_is_answered_200():
    store = Store()
    response = handle_webhook(tg.telegram_event(tg.TEXT), CHANNEL, store)
    assert response["statusCode"] == 200
    assert len(store.ingested) == 1


def test_a_retried_update_is_acknowledged_and_stored_once():
    store = Store()
    for _ in range(3):
        assert handle_webhook(tg.telegram_event(tg.TEXT), CHANNEL, store)["statusCode"] == 200
    assert len(store.ingested) == 1


def test_a_button_tap_is_answered_with_answer_callback_query():
    store = Store()
    response = handle_webhook(tg.telegram_event(tg.CALLBACK), CHANNEL, store)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["method"] == "answerCallbackQuery"
    assert len(store.ingested) == 1


def test_an_edit_goes_to_the_edit_path():
    store = Store()
    assert handle_webhook(tg.telegram_event(tg.EDITED), CHANNEL, store)["statusCode"] == 200
    assert [e.provider_message_id for e in store.edits] == [f"{tg.CHAT_ID}:42"]


def test_a_wrong_secret_is_403_and_nothing_is_stored():
    store = Store()
    response = handle_webhook(tg.telegram_event(tg.TEXT, secret="nope"), CHANNEL, store)
    assert response["statusCode"] == 403
    assert store.ingested == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_a_body_that_is_not_a_json_object_is_400(raw):
    response = handle_webhook(tg.telegram_event(None, raw=raw), CHANNEL, Store())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "malformed_request"


def test_an_oversized_body_is_413():
    raw = json.dumps({**tg.TEXT, "pad": "x" * MAX_BODY_BYTES}).encode()
    response = handle_webhook(tg.telegram_event(None, raw=raw), CHANNEL, Store())
    assert response["statusCode"] == 413


def test_a_storage_failure_is_5xx_so_telegram_retries():
    store = Store(fail=StorageUnavailable("DynamoDB is down"))
    response = handle_webhook(tg.telegram_event(tg.TEXT), CHANNEL, store)
    assert response["statusCode"] >= 500
    assert "Traceback" not in response["body"]


@pytest.mark.parametrize("name", sorted(tg.SKIPPED))
def test_skipped_updates_are_acknowledged_200(name):
    store = Store()
    response = handle_webhook(tg.telegram_event(tg.SKIPPED[name]), CHANNEL, store)
    assert response["statusCode"] == 200
    assert store.ingested == []


# ---------------------------------------------------------------- the identity


def test_a_telegram_identity_is_the_users_numeric_id():
    assert Identity(kind=IdentityKind.TELEGRAM, value=" 111222333 ").value == "111222333"
    assert str(Identity.parse("telegram:111222333")) == "telegram:111222333"


@pytest.mark.parametrize("value", ["ada_l", "@ada_l", "0", "-1001234567890", "12345678901234567"])
def test_anything_but_a_user_id_is_not_a_telegram_identity(value):
    with pytest.raises(ValueError):
        Identity(kind=IdentityKind.TELEGRAM, value=value)
