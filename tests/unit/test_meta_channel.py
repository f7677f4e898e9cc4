"""The Meta webhook: handshake, X-Hub-Signature-256, and what each documented payload becomes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.unit import meta_payloads as mp
from tests.unit.webhook_events import RecordingStore, http_api_event
from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    StatusUpdate,
    WebhookRequest,
)
from threadline.channels.meta.webhook import MetaWebhook, normalize_notification, signature_of
from threadline.errors import MalformedRequest, StorageUnavailable
from threadline.schema import (
    Channel,
    ContactPart,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    MessageStatus,
    ReactionPart,
    TextPart,
)
from threadline.settings import webhook_settings
from threadline.webhook import MAX_BODY_BYTES, handle_webhook

APP_SECRET = "f0e1d2c3b4a5968778695a4b3c2d1e0f"  # a fake app secret
VERIFY_TOKEN = "a-verify-token-we-chose"
PATH = "/webhooks/meta"
CHANNEL = MetaWebhook(app_secret=lambda: APP_SECRET, verify_token=lambda: VERIFY_TOKEN)


@pytest.fixture(autouse=True)
def no_public_base_url(monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    webhook_settings.cache_clear()
    yield
    webhook_settings.cache_clear()


@dataclass
class MetaStore(RecordingStore):
    """RecordingStore plus the status and edit calls Meta's webhook makes."""

    statuses: list[StatusUpdate] = field(default_factory=list)
    edits: list[MessageEdit] = field(default_factory=list)

    def apply_status(self, update: StatusUpdate) -> bool:
        if self.fail_on == "apply_status" and self.fail_with is not None:
            raise self.fail_with
        self.statuses.append(update)
        return True

    def apply_edit(self, edit: MessageEdit, raw: Any = None) -> bool:
        self.edits.append(edit)
        return True


def post_event(
    document: dict[str, Any] | bytes, *, secret: str = APP_SECRET, signature: str | None = None
) -> dict[str, Any]:
    body = document if isinstance(document, bytes) else mp.body_of(document)
    headers = {
        "content-type": "application/json",
        "user-agent": "facebookexternalua",
        "x-hub-signature-256": signature if signature is not None else signature_of(body, secret),
    }
    return http_api_event(body, path=PATH, headers=headers)


def get_event(query: dict[str, str]) -> dict[str, Any]:
    event = http_api_event(b"", path=PATH, query=urlencode(query))
    event["requestContext"]["http"]["method"] = "GET"
    event["routeKey"] = f"GET {PATH}"
    return event


def normalize(document: dict[str, Any]) -> list[Any]:
    return normalize_notification(document)


def only_message(document: dict[str, Any]) -> InboundMessage:
    (item,) = normalize(document)
    assert isinstance(item, InboundMessage)
    return item


# ---------------------------------------------------------------- handshake


def test_handshake_with_our_verify_token_echoes_the_challenge_as_text():
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    response = handle_webhook(get_event(query), CHANNEL, MetaStore())
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/plain"
    assert response["body"] == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "not-ours", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ],
)
def test_handshake_without_our_token_is_403_and_echoes_nothing(query):
    response = handle_webhook(get_event(query), CHANNEL, MetaStore())
    assert response["statusCode"] == 403
    assert "1" not in json.loads(response["body"])["error"]["message"].split()


def test_handshake_without_a_challenge_is_400():
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
    assert handle_webhook(get_event(query), CHANNEL, MetaStore())["statusCode"] == 400


# ---------------------------------------------------------------- signature


def test_signed_post_is_stored_and_answered_200():
    store = MetaStore()
    response = handle_webhook(
        post_event(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT))), CHANNEL, store
    )
    assert response["statusCode"] == 200
    assert [m.provider_message_id for m in store.ingested] == [mp.WAMID]


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "sha1=" + "0" * 40,  # the old X-Hub-Signature scheme
        "sha256=" + "0" * 64,
        "sha256=nothex",
        "sha256=\u00e9",
    ],
)
def test_missing_or_wrong_signature_is_403_and_stores_nothing(signature):
    store = MetaStore()
    event = post_event(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT)), signature=signature)
    if not signature:
        del event["headers"]["x-hub-signature-256"]
    assert handle_webhook(event, CHANNEL, store)["statusCode"] == 403
    assert store.calls == [] and store.statuses == []


def test_signature_with_another_app_secret_is_403():
    event = post_event(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT)), secret="another-secret")
    assert handle_webhook(event, CHANNEL, MetaStore())["statusCode"] == 403


def test_signature_over_a_different_body_is_403():
    signed = mp.body_of(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT)))
    tampered = signed.replace(b"another color", b"a refund now!")
    event = post_event(tampered, signature=signature_of(signed, APP_SECRET))
    assert handle_webhook(event, CHANNEL, MetaStore())["statusCode"] == 403


def test_signature_hex_in_upper_case_is_accepted():
    body = mp.body_of(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT)))
    signature = "sha256=" + signature_of(body, APP_SECRET).removeprefix("sha256=").upper()
    assert (
        handle_webhook(post_event(body, signature=signature), CHANNEL, MetaStore())["statusCode"]
        == 200
    )


def test_verify_reads_no_secret_it_does_not_need():
    def fail() -> str:
        raise AssertionError("the app secret is not needed for the handshake")

    channel = MetaWebhook(app_secret=fail, verify_token=lambda: VERIFY_TOKEN)
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "7"}
    request = WebhookRequest(
        method="GET", url=f"https://h{PATH}?{urlencode(query)}", headers={}, body=b""
    )
    channel.verify(request)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"a string"',
        json.dumps({"object": "whatsapp_business_account", "entry": {"id": "1"}}).encode(),
        json.dumps({"object": "whatsapp_business_account", "entry": ["x"]}).encode(),
        json.dumps(
            mp.whatsapp_envelope(mp.whatsapp_value({"id": mp.WAMID, "type": "text"}))
        ).encode(),
        json.dumps(
            mp.whatsapp_envelope(
                mp.whatsapp_value(mp.wa_message("text", {"body": "x"}, timestamp="soon"))
            )
        ).encode(),
        json.dumps(
            mp.page_envelope(
                mp.messaging_event("not-a-psid", mp.PAGE_ID, message={"mid": "m", "text": "x"})
            )
        ).encode(),
        json.dumps(
            mp.page_envelope(mp.messaging_event(mp.PSID, mp.PAGE_ID, message={"text": "x"}))
        ).encode(),
    ],
)
def test_malformed_signed_body_is_400(body):
    store = MetaStore()
    response = handle_webhook(post_event(body), CHANNEL, store)
    assert response["statusCode"] == 400, response
    assert store.ingested == []


def test_oversized_body_is_413_before_anything_else():
    body = b'{"object":"page","entry":[]}' + b" " * MAX_BODY_BYTES
    assert handle_webhook(post_event(body), CHANNEL, MetaStore())["statusCode"] == 413


def test_storage_failure_is_5xx_so_meta_retries():
    store = MetaStore(fail_on="ingest", fail_with=StorageUnavailable("down"))
    response = handle_webhook(
        post_event(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT))), CHANNEL, store
    )
    assert response["statusCode"] == 503


def test_status_storage_failure_is_5xx_too():
    store = MetaStore(fail_on="apply_status", fail_with=StorageUnavailable("down"))
    event = post_event(mp.whatsapp_envelope(mp.status_value(mp.wa_status("delivered"))))
    assert handle_webhook(event, CHANNEL, store)["statusCode"] == 503


def test_other_graph_objects_are_acknowledged_and_ignored():
    store = MetaStore()
    document = {"object": "user", "entry": [{"id": "1", "changes": [{"field": "email"}]}]}
    assert handle_webhook(post_event(document), CHANNEL, store)["statusCode"] == 200
    assert store.calls == []


def test_non_message_whatsapp_fields_are_ignored():
    document = mp.whatsapp_envelope(
        {"event": "APPROVED", "message_template_id": 1}, field="message_template_status_update"
    )
    assert normalize(document) == []


# ---------------------------------------------------------------- WhatsApp messages


def test_whatsapp_text_is_the_phone_identity_with_profile_name_and_reply_route():
    message = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT)))
    assert message.channel is Channel.WHATSAPP
    assert message.provider == "meta"
    assert message.provider_message_id == mp.WAMID
    assert message.sender == Identity(kind=IdentityKind.PHONE, value=mp.CUSTOMER_PHONE)
    assert message.recipient == Identity(kind=IdentityKind.PHONE, value="+15550783881")
    assert message.sender_display_name == "Sheena Nelson"
    assert message.sent_at == datetime.fromtimestamp(1749416383, UTC)
    assert message.parts == [TextPart(text="Does it come in another color?")]
    assert message.reply_to == {"whatsapp_provider": "meta", "phone_number_id": mp.PHONE_NUMBER_ID}
    assert message.channel_data["metadata"]["phone_number_id"] == mp.PHONE_NUMBER_ID
    assert message.channel_data["waba_id"] == mp.WABA_ID
    assert message.in_reply_to is None


def test_same_number_on_whatsapp_cloud_and_twilio_is_one_identity():
    from threadline.channels.twilio.messaging import normalize_form

    cloud = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_TEXT)))
    twilio = normalize_form(
        {"MessageSid": "SM" + "1" * 32, "From": f"whatsapp:{mp.CUSTOMER_PHONE}", "Body": "hi"}
    )
    sms = normalize_form({"MessageSid": "SM" + "2" * 32, "From": mp.CUSTOMER_PHONE, "Body": "hi"})
    assert cloud.sender == twilio.sender == sms.sender
    assert twilio.reply_to == {"whatsapp_provider": "twilio"}
    assert sms.reply_to is None


def test_whatsapp_image_is_a_media_part_with_id_type_hash_and_caption_not_downloaded():
    (part,) = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_IMAGE))).parts
    assert part == MediaPart(
        content_type="image/jpeg",
        caption="This one, but in blue",
        sha256="Ug4Ou8IVgOBN3B4ydV7GNMNx/5UX5Q2xvFzqAQbgyQ0=",
        provider_media_id="1003383421387256",
    )
    assert part.url is None and part.s3_key is None


def test_whatsapp_document_keeps_its_filename():
    (part,) = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_DOCUMENT))).parts
    assert isinstance(part, MediaPart)
    assert (part.filename, part.content_type, part.caption) == (
        "invoice-0042.pdf",
        "application/pdf",
        "Invoice",
    )


def test_whatsapp_voice_note_and_sticker_flags_are_kept():
    voice = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_AUDIO_VOICE)))
    assert voice.parts[0].content_type == "audio/ogg; codecs=opus"  # type: ignore[union-attr]
    assert voice.channel_data["voice"] is True
    sticker = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_STICKER)))
    assert sticker.parts[0].content_type == "image/webp"  # type: ignore[union-attr]
    assert sticker.channel_data["animated"] is False


def test_whatsapp_location():
    message = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_LOCATION)))
    assert message.parts == [
        LocationPart(
            latitude=37.483307,
            longitude=-122.148981,
            name="Meta Headquarters",
            address="1 Hacker Way, Menlo Park, CA 94025",
        )
    ]
    assert message.channel_data["location"]["url"] == "https://meta.com"


def test_whatsapp_location_out_of_range_is_400_not_500():
    bad = mp.wa_message("location", {"latitude": 91, "longitude": 0})
    with pytest.raises(MalformedRequest):
        normalize(mp.whatsapp_envelope(mp.whatsapp_value(bad)))


def test_whatsapp_contacts():
    (part,) = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_CONTACTS))).parts
    assert part == ContactPart(
        name="Barbara J. Johnson", phones=["+1 (415) 555-0123"], emails=["bjohnson@example.com"]
    )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            mp.WA_BUTTON_REPLY,
            InteractiveReplyPart(kind="button", reply_id="change-button", title="Change"),
        ),
        (
            mp.WA_LIST_REPLY,
            InteractiveReplyPart(
                kind="list", reply_id="priority_express", title="Express", description="Next day"
            ),
        ),
        (
            mp.WA_TEMPLATE_BUTTON,
            InteractiveReplyPart(
                kind="button", reply_id="UNSUBSCRIBE_PAYLOAD", title="Stop promotions"
            ),
        ),
    ],
)
def test_whatsapp_interactive_replies_name_the_message_they_answer(payload, expected):
    message = only_message(mp.whatsapp_envelope(mp.whatsapp_value(payload)))
    assert message.parts == [expected]
    assert message.in_reply_to == mp.OUR_WAMID


def test_whatsapp_reaction_and_its_removal():
    added = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_REACTION)))
    assert added.parts == [
        ReactionPart(emoji="\U0001f44d", target_provider_message_id=mp.OUR_WAMID)
    ]
    removed = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_REACTION_REMOVED)))
    assert removed.parts == [ReactionPart(target_provider_message_id=mp.OUR_WAMID, removed=True)]


def test_whatsapp_reply_sets_in_reply_to_and_keeps_the_context():
    message = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_REPLY)))
    assert message.in_reply_to == mp.OUR_WAMID
    assert message.channel_data["context"] == {"from": mp.DISPLAY_NUMBER, "id": mp.OUR_WAMID}


def test_whatsapp_unsupported_message_is_kept_with_its_errors_not_dropped():
    message = only_message(mp.whatsapp_envelope(mp.whatsapp_value(mp.WA_UNSUPPORTED)))
    assert message.parts == []
    assert message.channel_data["type"] == "unsupported"
    assert message.channel_data["errors"][0]["code"] == 131051


# ---------------------------------------------------------------- WhatsApp statuses


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
    ],
)
def test_whatsapp_statuses_become_status_updates(reported, expected):
    (update,) = normalize(mp.whatsapp_envelope(mp.status_value(mp.wa_status(reported))))
    assert isinstance(update, StatusUpdate)
    assert (update.provider, update.provider_message_id, update.status) == (
        "meta",
        mp.OUR_WAMID,
        expected,
    )
    assert update.at == datetime.fromtimestamp(1749416400, UTC)
    assert update.error_code is None


def test_whatsapp_failed_status_carries_metas_error_code_and_title():
    status = mp.wa_status("failed", errors=mp.WA_FAILED_ERRORS)
    (update,) = normalize(mp.whatsapp_envelope(mp.status_value(status)))
    assert update.status is MessageStatus.FAILED
    assert update.error_code == "131047"
    assert update.error_message == "Re-engagement message"
    assert update.channel_data["errors"] == mp.WA_FAILED_ERRORS


def test_whatsapp_status_names_our_message_through_the_callback_data_we_sent():
    (update,) = normalize(
        mp.whatsapp_envelope(mp.status_value(mp.wa_status("read", callback="01JCUST/01JMSG")))
    )
    assert (update.customer_id, update.message_id) == ("01JCUST", "01JMSG")


@pytest.mark.parametrize("callback", ["", "no-separator", "/01JMSG", "01JCUST/", "a/b/c"])
def test_foreign_callback_data_falls_back_to_the_provider_id(callback):
    (update,) = normalize(
        mp.whatsapp_envelope(mp.status_value(mp.wa_status("read", callback=callback)))
    )
    assert (update.customer_id, update.message_id) == (None, None)


def test_unknown_whatsapp_status_moves_nothing():
    assert normalize(mp.whatsapp_envelope(mp.status_value(mp.wa_status("deleted")))) == []


# ---------------------------------------------------------------- batches and duplicates


def test_multi_entry_multi_change_batch_yields_every_message_and_status_once():
    second = mp.wa_message("text", {"body": "and in red?"}, wamid="wamid.SECOND")
    third = mp.wa_message("text", {"body": "thanks"}, wamid="wamid.THIRD")
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": mp.WABA_ID,
                "changes": [
                    {"field": "messages", "value": mp.whatsapp_value(mp.WA_TEXT, second)},
                    {"field": "messages", "value": mp.status_value(mp.wa_status("delivered"))},
                ],
            },
            {
                "id": "102290129340399",
                "changes": [
                    # Meta re-sent the first message in the same batch: once only.
                    {"field": "messages", "value": mp.whatsapp_value(third, mp.WA_TEXT)},
                    {
                        "field": "messages",
                        "value": mp.status_value(mp.wa_status("delivered"), mp.wa_status("read")),
                    },
                ],
            },
        ],
    }
    store = MetaStore()
    response = handle_webhook(post_event(document), CHANNEL, store)
    assert response["statusCode"] == 200
    assert [m.provider_message_id for m in store.ingested] == [
        mp.WAMID,
        "wamid.SECOND",
        "wamid.THIRD",
    ]
    assert [(s.provider_message_id, s.status) for s in store.statuses] == [
        (mp.OUR_WAMID, MessageStatus.DELIVERED),
        (mp.OUR_WAMID, MessageStatus.READ),
    ]
    # One raw copy for the whole batch, in S3 (not inlined into three items).
    assert len(store.raws) == 1


def test_statuses_only_request_keeps_no_raw_payload():
    store = MetaStore()
    handle_webhook(
        post_event(mp.whatsapp_envelope(mp.status_value(mp.wa_status("sent")))), CHANNEL, store
    )
    assert store.raws == [] and len(store.statuses) == 1


# ---------------------------------------------------------------- Messenger


def test_messenger_text_is_the_psid_identity_with_the_page_as_reply_route():
    message = only_message(mp.page_envelope(mp.MESSENGER_TEXT))
    assert message.channel is Channel.MESSENGER
    assert message.sender == Identity(kind=IdentityKind.MESSENGER, value=mp.PSID)
    assert message.provider_message_id == mp.MID
    assert message.parts == [TextPart(text="hello, world!")]
    assert message.sent_at == datetime.fromtimestamp(1458692752.478, UTC)
    assert message.reply_to == {"page_id": mp.PAGE_ID}


def test_messenger_quick_reply_is_an_interactive_reply():
    message = only_message(mp.page_envelope(mp.MESSENGER_QUICK_REPLY))
    assert message.parts == [
        InteractiveReplyPart(
            kind="quick_reply", reply_id="DEVELOPER_DEFINED_PAYLOAD_FOR_PICKING_RED", title="Red"
        )
    ]


def test_messenger_attachments_are_media_parts_with_urls_and_the_rest_is_kept():
    message = only_message(mp.page_envelope(mp.MESSENGER_ATTACHMENTS))
    assert [p.url for p in message.parts if isinstance(p, MediaPart)] == [
        "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg",
        "https://cdn.fbsbx.com/v/t59.2708-21/receipt.pdf",
    ]
    assert message.channel_data["attachments"][0]["type"] == "template"


def test_messenger_reply_names_the_message_it_answers():
    assert only_message(mp.page_envelope(mp.MESSENGER_REPLY)).in_reply_to == "m_ours"


def test_messenger_postback_is_an_interactive_reply():
    message = only_message(mp.page_envelope(mp.MESSENGER_POSTBACK))
    assert message.provider_message_id == "m_postback"
    assert message.parts == [
        InteractiveReplyPart(kind="postback", reply_id="AGENT", title="Talk to an agent")
    ]


def test_messenger_postback_without_mid_gets_a_stable_id():
    event = mp.messaging_event(
        mp.PSID, mp.PAGE_ID, postback={"title": "Start", "payload": "GET_STARTED"}
    )
    first = only_message(mp.page_envelope(event))
    again = only_message(mp.page_envelope(mp.clone(event)))
    assert first.provider_message_id == again.provider_message_id


def test_messenger_reactions():
    added = only_message(mp.page_envelope(mp.MESSENGER_REACTION))
    assert added.parts == [ReactionPart(emoji="\u2764\ufe0f", target_provider_message_id="m_ours")]
    removed = only_message(mp.page_envelope(mp.MESSENGER_UNREACT))
    assert removed.parts == [ReactionPart(target_provider_message_id="m_ours", removed=True)]
    assert added.provider_message_id != removed.provider_message_id


def test_messenger_delivery_receipt_marks_each_named_message_delivered():
    updates = normalize(mp.page_envelope(mp.MESSENGER_DELIVERY))
    assert [(u.provider_message_id, u.status) for u in updates] == [
        ("m_ours", MessageStatus.DELIVERED),
        ("m_ours_too", MessageStatus.DELIVERED),
    ]


def test_messenger_read_watermark_names_no_message_and_changes_nothing():
    assert normalize(mp.page_envelope(mp.MESSENGER_READ)) == []


def test_echoes_of_what_our_page_sent_are_ignored():
    assert normalize(mp.page_envelope(mp.MESSENGER_ECHO)) == []
    not_flagged = mp.messaging_event(mp.PAGE_ID, mp.PSID, message={"mid": "m_x", "text": "from us"})
    assert normalize(mp.page_envelope(not_flagged)) == []


def test_standby_messages_are_customer_messages_too():
    document = mp.page_envelope()
    document["entry"][0]["standby"] = [mp.MESSENGER_TEXT]
    assert [m.provider_message_id for m in normalize(document)] == [mp.MID]


# ---------------------------------------------------------------- Instagram


def test_instagram_text_is_the_igsid_identity():
    message = only_message(mp.instagram_envelope(mp.INSTAGRAM_TEXT))
    assert message.channel is Channel.INSTAGRAM
    assert message.sender == Identity(kind=IdentityKind.INSTAGRAM, value=mp.IGSID)
    assert message.reply_to == {"instagram_account_id": mp.IG_ACCOUNT_ID}


def test_instagram_image_attachment():
    (part,) = only_message(mp.instagram_envelope(mp.INSTAGRAM_IMAGE)).parts
    assert isinstance(part, MediaPart) and part.url is not None and "ig_messaging_cdn" in part.url


def test_instagram_read_receipt_names_the_message():
    (update,) = normalize(mp.instagram_envelope(mp.INSTAGRAM_READ))
    assert (update.provider_message_id, update.status) == ("aWdfig_ours", MessageStatus.READ)


def test_instagram_unsend_is_a_deletion_of_the_stored_message():
    (edit,) = normalize(mp.instagram_envelope(mp.INSTAGRAM_UNSEND))
    assert isinstance(edit, MessageEdit)
    assert (edit.kind, edit.provider_message_id) == ("deleted", mp.IG_MID)


def test_messages_from_our_own_instagram_account_are_ignored():
    assert normalize(mp.instagram_envelope(mp.INSTAGRAM_OWN)) == []


def test_message_edit_updates_the_stored_message():
    event = mp.messaging_event(
        mp.IGSID,
        mp.IG_ACCOUNT_ID,
        message_edit={"mid": mp.IG_MID, "text": "Is it in stock?", "num_edit": 1},
    )
    (edit,) = normalize(mp.instagram_envelope(event))
    assert isinstance(edit, MessageEdit)
    assert edit.kind == "edited" and edit.parts == [TextPart(text="Is it in stock?")]


def test_acknowledgement_is_a_plain_200():
    assert CHANNEL.acknowledge() == Acknowledgement(
        status=200, content_type="text/plain", body="EVENT_RECEIVED"
    )
