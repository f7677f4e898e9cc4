"""Telegram Bot API webhook updates as Telegram posts them, and the events carrying them.

Written from the Bot API reference (core.telegram.org/bots/api): ``Update`` has an
``update_id`` and at most one of ``message``, ``edited_message``, ``channel_post``,
``callback_query``, ...; ``Message`` has ``message_id``, ``from`` (a ``User`` with
``id``, ``is_bot``, ``first_name``, ``last_name``, ``username``, ``language_code``),
``date`` (Unix time), ``chat`` (``id``, ``type``, ...), and one kind of content:
``text`` (with ``entities``), ``photo`` (an array of ``PhotoSize``: ``file_id``,
``file_unique_id``, ``width``, ``height``, ``file_size``, smallest first) with
``caption``, ``document`` (``file_name``, ``mime_type``, ``file_size``), ``voice``
(``duration``, ``mime_type``), ``audio``, ``video``, ``location`` (``latitude``,
``longitude``), ``venue``, ``contact`` (``phone_number``, ``first_name``, ``user_id``);
``reply_to_message`` for replies, ``edit_date`` on edits. ``CallbackQuery`` has ``id``,
``from``, ``message``, ``chat_instance`` and ``data``. setWebhook's ``secret_token``
comes back in ``X-Telegram-Bot-Api-Secret-Token``.

Every id, name and number here is made up.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

SECRET_TOKEN = "s3cr3t-T0ken_for-tests"  # a fake setWebhook secret_token
BOT_TOKEN = "7000000001:AAFakeFakeFakeFakeFakeFakeFakeFake0"  # fake
BOT_ID = 7000000001
USER_ID = 111222333
CHAT_ID = USER_ID  # a private chat's id is the user's
GROUP_ID = -1001234567890
HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
PATH = "/webhooks/telegram"
DATE = 1795331809

USER: dict[str, Any] = {
    "id": USER_ID,
    "is_bot": False,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada_l",
    "language_code": "en",
}
BOT_USER: dict[str, Any] = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Support",
    "username": "acme_support_bot",
}
PRIVATE_CHAT: dict[str, Any] = {
    "id": CHAT_ID,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada_l",
    "type": "private",
}


def message(message_id: int = 42, **content: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "from": copy.deepcopy(USER),
        "chat": copy.deepcopy(PRIVATE_CHAT),
        "date": DATE,
        **content,
    }


def update(update_id: int = 900000001, **kinds: Any) -> dict[str, Any]:
    return {"update_id": update_id, **kinds}


TEXT = update(
    message=message(
        text="/start hello, where is my order?",
        entities=[{"offset": 0, "length": 6, "type": "bot_command"}],
    )
)
EDITED = update(
    900000002,
    edited_message={**message(text="where is my order #4521?"), "edit_date": DATE + 60},
)
PHOTO = update(
    900000003,
    message=message(
        43,
        photo=[
            {
                "file_id": "AgAD-small",
                "file_unique_id": "AQAD1",
                "file_size": 1200,
                "width": 90,
                "height": 67,
            },
            {
                "file_id": "AgAD-medium",
                "file_unique_id": "AQAD2",
                "file_size": 19000,
                "width": 320,
                "height": 240,
            },
            {
                "file_id": "AgAD-large",
                "file_unique_id": "AQAD3",
                "file_size": 85000,
                "width": 1280,
                "height": 960,
            },
        ],
        caption="the parcel arrived broken",
    ),
)
DOCUMENT = update(
    900000004,
    message=message(
        44,
        document={
            "file_name": "invoice-4521.pdf",
            "mime_type": "application/pdf",
            "file_id": "BQACAgIAAxkBAAI",
            "file_unique_id": "AgAD9A",
            "file_size": 48213,
        },
    ),
)
VOICE = update(
    900000005,
    message=message(
        45,
        voice={
            "duration": 4,
            "mime_type": "audio/ogg",
            "file_id": "AwACAgIAAxkBAAI",
            "file_unique_id": "AgADvw",
            "file_size": 11201,
        },
    ),
)
LOCATION = update(
    900000006, message=message(46, location={"latitude": 52.520008, "longitude": 13.404954})
)
VENUE = update(
    900000007,
    message=message(
        47,
        location={"latitude": 52.516275, "longitude": 13.377704},
        venue={
            "location": {"latitude": 52.516275, "longitude": 13.377704},
            "title": "Brandenburger Tor",
            "address": "Pariser Platz, 10117 Berlin",
        },
    ),
)
OWN_CONTACT = update(
    900000008,
    message=message(
        48,
        contact={
            "phone_number": "15555550123",  # Telegram writes the user's own without "+"
            "first_name": "Ada",
            "last_name": "Lovelace",
            "user_id": USER_ID,
        },
    ),
)
OTHER_CONTACT = update(
    900000009,
    message=message(
        49,
        contact={"phone_number": "+15555550999", "first_name": "Charles", "user_id": 444555666},
    ),
)
REPLY = update(
    900000010,
    message=message(
        50,
        text="yes please",
        reply_to_message={
            "message_id": 17,
            "from": BOT_USER,
            "chat": PRIVATE_CHAT,
            "date": DATE - 600,
            "text": "Shall we send a replacement?",
        },
    ),
)
CALLBACK = update(
    900000011,
    callback_query={
        "id": "4382bfdwdsb323b2d9",
        "from": USER,
        "message": {
            "message_id": 18,
            "from": BOT_USER,
            "chat": PRIVATE_CHAT,
            "date": DATE - 300,
            "text": "Was this helpful?",
            "reply_markup": {
                "inline_keyboard": [
                    [
                        {"text": "Yes 👍", "callback_data": "helpful:yes"},
                        {"text": "No", "callback_data": "helpful:no"},
                    ]
                ]
            },
        },
        "chat_instance": "-4290472375924591",
        "data": "helpful:yes",
    },
)
FROM_A_BOT = update(900000012, message={**message(51, text="beep"), "from": BOT_USER})
CHANNEL_POST = update(
    900000013,
    channel_post={
        "message_id": 7,
        "sender_chat": {"id": -1009876543210, "title": "Acme news", "type": "channel"},
        "chat": {"id": -1009876543210, "title": "Acme news", "type": "channel"},
        "date": DATE,
        "text": "New release!",
    },
)
MEMBER_JOINED = update(
    900000014,
    message={
        **message(52),
        "chat": {"id": GROUP_ID, "title": "Acme customers", "type": "supergroup"},
        "new_chat_members": [USER],
    },
)
GROUP_TEXT = update(
    900000015,
    message={
        **message(53, text="@acme_support_bot my login fails", message_thread_id=5),
        "chat": {"id": GROUP_ID, "title": "Acme customers", "type": "supergroup"},
    },
)
MY_CHAT_MEMBER = update(
    900000016,
    my_chat_member={
        "chat": PRIVATE_CHAT,
        "from": USER,
        "date": DATE,
        "old_chat_member": {"user": BOT_USER, "status": "member"},
        "new_chat_member": {"user": BOT_USER, "status": "kicked", "until_date": 0},
    },
)
POLL = update(
    900000017,
    message=message(
        54,
        poll={
            "id": "5368",
            "question": "Which day suits you?",
            "options": [{"text": "Mon", "voter_count": 0}, {"text": "Tue", "voter_count": 0}],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
        },
    ),
)

STORED = {
    "text": TEXT,
    "photo": PHOTO,
    "document": DOCUMENT,
    "voice": VOICE,
    "location": LOCATION,
    "venue": VENUE,
    "own_contact": OWN_CONTACT,
    "other_contact": OTHER_CONTACT,
    "reply": REPLY,
    "callback": CALLBACK,
    "group_text": GROUP_TEXT,
    "poll": POLL,
}
SKIPPED = {
    "from_a_bot": FROM_A_BOT,
    "channel_post": CHANNEL_POST,
    "member_joined": MEMBER_JOINED,
    "my_chat_member": MY_CHAT_MEMBER,
}


def telegram_event(
    payload: Any,
    *,
    secret: str | None = SECRET_TOKEN,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An HTTP API v2.0 event for Telegram's POST of ``payload``."""
    body = raw if raw is not None else json.dumps(payload).encode()
    all_headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "host": HOST,
        "x-forwarded-proto": "https",
    }
    if secret is not None:
        all_headers["x-telegram-bot-api-secret-token"] = secret
    all_headers.update(headers or {})
    return {
        "version": "2.0",
        "routeKey": f"POST {PATH}",
        "rawPath": PATH,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "domainName": HOST,
            "http": {"method": "POST", "path": PATH, "sourceIp": "91.108.6.1"},
            "requestId": "telegram",
            "stage": "$default",
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
