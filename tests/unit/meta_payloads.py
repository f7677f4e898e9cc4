"""Meta webhook payloads, shaped after the examples in Meta's documentation.

WhatsApp: the Cloud API ``messages`` webhook reference (incoming messages of every
type, and ``statuses``). Messenger: the ``messages``, ``messaging_postbacks``,
``message_reactions``, ``message_deliveries``, ``message_reads`` and
``message_echoes`` webhook events. Instagram: the Messenger API for Instagram's
messaging webhooks (the same ``messaging`` events under ``object: instagram``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
WA_ID = "16505551234"
CUSTOMER_PHONE = "+16505551234"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
OUR_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3N0EyQUJDMjFEQzZCQUMzODMA"
PAGE_ID = "103721942460212"
PSID = "6789012345678901"
IG_ACCOUNT_ID = "17841405822304914"
IGSID = "5432109876543210"
MID = "m_1457764197618:41d102a3e1ae206a38"
IG_MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1ODIyMzA0OTE0OjM0MDI4MjM2Njg0MTcxMDMw"


def whatsapp_envelope(value: dict[str, Any], *, field: str = "messages") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field}]}],
    }


def whatsapp_value(*messages: dict[str, Any], name: str = "Sheena Nelson") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": name}, "wa_id": WA_ID}],
        "messages": list(messages),
    }


def wa_message(kind: str, body: Any, *, wamid: str = WAMID, **extra: Any) -> dict[str, Any]:
    message = {"from": WA_ID, "id": wamid, "timestamp": "1749416383", "type": kind, kind: body}
    message.update(extra)
    return message


WA_TEXT = wa_message("text", {"body": "Does it come in another color?"})
WA_IMAGE = wa_message(
    "image",
    {
        "caption": "This one, but in blue",
        "mime_type": "image/jpeg",
        "sha256": "Ug4Ou8IVgOBN3B4ydV7GNMNx/5UX5Q2xvFzqAQbgyQ0=",
        "id": "1003383421387256",
    },
)
WA_DOCUMENT = wa_message(
    "document",
    {
        "caption": "Invoice",
        "filename": "invoice-0042.pdf",
        "mime_type": "application/pdf",
        "sha256": "h7Pq0sJ8ozy8pmz9i2Ht1lKUp1P5H3Q7LDsbqfJLh2I=",
        "id": "1026397652455812",
    },
)
WA_AUDIO_VOICE = wa_message(
    "audio",
    {
        "mime_type": "audio/ogg; codecs=opus",
        "sha256": "7DOt3JN9DzFVZ9FBd8MlItGuZ0H37dQCdeJyJ3WQmSU=",
        "id": "1003383421387257",
        "voice": True,
    },
)
WA_STICKER = wa_message(
    "sticker",
    {
        "mime_type": "image/webp",
        "sha256": "FoGLXLBKQcq4b/AhUvgDeBBP4iE8IXTQ/WWbHS2BYlw=",
        "id": "1003383421387258",
        "animated": False,
    },
)
WA_LOCATION = wa_message(
    "location",
    {
        "address": "1 Hacker Way, Menlo Park, CA 94025",
        "latitude": 37.483307,
        "longitude": -122.148981,
        "name": "Meta Headquarters",
        "url": "https://meta.com",
    },
)
WA_CONTACTS = {
    "from": WA_ID,
    "id": WAMID,
    "timestamp": "1749416383",
    "type": "contacts",
    "contacts": [
        {
            "name": {
                "first_name": "Barbara",
                "last_name": "Johnson",
                "formatted_name": "Barbara J. Johnson",
            },
            "phones": [{"phone": "+1 (415) 555-0123", "type": "HOME", "wa_id": "14155550123"}],
            "emails": [{"email": "bjohnson@example.com", "type": "WORK"}],
        }
    ],
}
WA_BUTTON_REPLY = wa_message(
    "interactive",
    {"type": "button_reply", "button_reply": {"id": "change-button", "title": "Change"}},
    context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
)
WA_LIST_REPLY = wa_message(
    "interactive",
    {
        "type": "list_reply",
        "list_reply": {"id": "priority_express", "title": "Express", "description": "Next day"},
    },
    context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
)
WA_TEMPLATE_BUTTON = wa_message(
    "button",
    {"payload": "UNSUBSCRIBE_PAYLOAD", "text": "Stop promotions"},
    context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
)
WA_REACTION = wa_message("reaction", {"message_id": OUR_WAMID, "emoji": "\U0001f44d"})
WA_REACTION_REMOVED = wa_message("reaction", {"message_id": OUR_WAMID})
WA_REPLY = wa_message(
    "text",
    {"body": "Yes, the blue one"},
    context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
)
WA_UNSUPPORTED = wa_message(
    "unsupported",
    {"type": "edit"},
    errors=[
        {
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ],
)


def wa_status(
    status: str, *, wamid: str = OUR_WAMID, callback: str | None = None, **extra: Any
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": "1749416400",
        "recipient_id": WA_ID,
    }
    if status in ("sent", "delivered"):
        document["conversation"] = {"id": "a1b2c3", "origin": {"type": "service"}}
        document["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if callback is not None:
        document["biz_opaque_callback_data"] = callback
    document.update(extra)
    return document


WA_FAILED_ERRORS = [
    {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {
            "details": "Message failed to send because more than 24 hours have passed "
            "since the customer last replied to this number."
        },
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
]


def status_value(*statuses: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
        "statuses": list(statuses),
    }


# ---------------------------------------------------------------- Messenger / Instagram


def page_envelope(*events: dict[str, Any], page_id: str = PAGE_ID) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [{"id": page_id, "time": 1458692752478, "messaging": list(events)}],
    }


def instagram_envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "instagram",
        "entry": [{"id": IG_ACCOUNT_ID, "time": 1569262486134, "messaging": list(events)}],
    }


def messaging_event(sender: str, recipient: str, **body: Any) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": 1458692752478,
        **body,
    }


MESSENGER_TEXT = messaging_event(PSID, PAGE_ID, message={"mid": MID, "text": "hello, world!"})
MESSENGER_QUICK_REPLY = messaging_event(
    PSID,
    PAGE_ID,
    message={
        "mid": "m_quick",
        "text": "Red",
        "quick_reply": {"payload": "DEVELOPER_DEFINED_PAYLOAD_FOR_PICKING_RED"},
    },
)
MESSENGER_ATTACHMENTS = messaging_event(
    PSID,
    PAGE_ID,
    message={
        "mid": "m_attach",
        "attachments": [
            {
                "type": "image",
                "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg"},
            },
            {"type": "file", "payload": {"url": "https://cdn.fbsbx.com/v/t59.2708-21/receipt.pdf"}},
            {"type": "template", "payload": {"template_type": "generic", "elements": []}},
        ],
    },
)
MESSENGER_REPLY = messaging_event(
    PSID, PAGE_ID, message={"mid": "m_reply", "text": "About that", "reply_to": {"mid": "m_ours"}}
)
MESSENGER_POSTBACK = messaging_event(
    PSID,
    PAGE_ID,
    postback={"title": "Talk to an agent", "payload": "AGENT", "mid": "m_postback"},
)
MESSENGER_REACTION = messaging_event(
    PSID,
    PAGE_ID,
    reaction={"mid": "m_ours", "action": "react", "emoji": "\u2764\ufe0f", "reaction": "love"},
)
MESSENGER_UNREACT = messaging_event(
    PSID, PAGE_ID, reaction={"mid": "m_ours", "action": "unreact", "reaction": "love"}
)
MESSENGER_DELIVERY = messaging_event(
    PSID, PAGE_ID, delivery={"mids": ["m_ours", "m_ours_too"], "watermark": 1458668856253}
)
MESSENGER_READ = messaging_event(PSID, PAGE_ID, read={"watermark": 1458668856253})
MESSENGER_ECHO = messaging_event(
    PAGE_ID,
    PSID,
    message={"is_echo": True, "app_id": 1517776481860111, "mid": "m_echo", "text": "Our reply"},
)

INSTAGRAM_TEXT = messaging_event(
    IGSID, IG_ACCOUNT_ID, message={"mid": IG_MID, "text": "Is this in stock?"}
)
INSTAGRAM_IMAGE = messaging_event(
    IGSID,
    IG_ACCOUNT_ID,
    message={
        "mid": "aWdfig_image",
        "attachments": [
            {
                "type": "image",
                "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"},
            }
        ],
    },
)
INSTAGRAM_READ = messaging_event(IGSID, IG_ACCOUNT_ID, read={"mid": "aWdfig_ours"})
INSTAGRAM_UNSEND = messaging_event(
    IGSID, IG_ACCOUNT_ID, message={"mid": IG_MID, "is_deleted": True}
)
INSTAGRAM_OWN = messaging_event(
    IG_ACCOUNT_ID, IGSID, message={"mid": "aWdfig_own", "text": "Thanks!"}
)


def body_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def clone(document: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(document)
