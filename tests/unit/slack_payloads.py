"""Slack Events API requests as Slack documents them, and a way to sign them.

Payloads follow Slack's reference pages: "message event", "message_changed",
"message_deleted", "file_share", "app_mention", "url_verification" (the outer
``event_callback`` wrapper with ``authorizations``, ``event_id`` and ``event_time``),
with ids made consistent across them. Signatures come from slack_sdk's own
``SignatureVerifier.generate_signature``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from typing import Any

from slack_sdk.signature import SignatureVerifier

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # a fake signing secret
TEAM = "T123ABC456"
APP = "A123ABC456"
BOT_USER = "U0LAN0Z89"  # the app's own bot user
CUSTOMER = "U061F7AUR"
CHANNEL = "C123ABC456"
DM = "D024BE91L"
PATH = "/webhooks/slack/events"
HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


def wrap(event: dict[str, Any], event_id: str = "Ev123ABC456") -> dict[str, Any]:
    return {
        "token": "XXYYZZ",
        "team_id": TEAM,
        "api_app_id": APP,
        "event": event,
        "type": "event_callback",
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM,
                "user_id": BOT_USER,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "event_id": event_id,
        "event_time": 1355517523,
        "event_context": "4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMTIzQUJDNDU2In0",
    }


URL_VERIFICATION = {
    "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
    "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
    "type": "url_verification",
}

MESSAGE = wrap(
    {
        "type": "message",
        "channel": CHANNEL,
        "user": CUSTOMER,
        "text": "Hello world",
        "ts": "1355517523.000005",
        "event_ts": "1355517523.000005",
        "channel_type": "channel",
        "team": TEAM,
        "client_msg_id": "0837851c-2d34-4d4d-804c-7aed753c3421",
        "blocks": [{"type": "rich_text", "block_id": "YKju", "elements": []}],
    },
    event_id="Ev0001MESSAGE",
)

THREAD_REPLY = wrap(
    {
        "type": "message",
        "channel": CHANNEL,
        "user": CUSTOMER,
        "text": "Any update on this?",
        "ts": "1355517600.000008",
        "thread_ts": "1355517523.000005",
        "parent_user_id": CUSTOMER,
        "event_ts": "1355517600.000008",
        "channel_type": "channel",
    },
    event_id="Ev0002THREAD",
)

FILE_SHARE = wrap(
    {
        "type": "message",
        "subtype": "file_share",
        "text": "Here is the invoice",
        "files": [
            {
                "id": "F04EEHX1EES",
                "created": 1670631527,
                "timestamp": 1670631527,
                "name": "invoice.pdf",
                "title": "invoice.pdf",
                "mimetype": "application/pdf",
                "filetype": "pdf",
                "pretty_type": "PDF",
                "user": CUSTOMER,
                "size": 52311,
                "mode": "hosted",
                "is_external": False,
                "is_public": False,
                "url_private": "https://files.slack.com/files-pri/T123ABC456-F04EEHX1EES/invoice.pdf",
                "url_private_download": "https://files.slack.com/files-pri/T123ABC456-F04EEHX1EES/download/invoice.pdf",
                "permalink": "https://example.slack.com/files/U061F7AUR/F04EEHX1EES/invoice.pdf",
            }
        ],
        "upload": True,
        "user": CUSTOMER,
        "display_as_bot": False,
        "ts": "1670631527.874149",
        "channel": DM,
        "event_ts": "1670631527.874149",
        "channel_type": "im",
    },
    event_id="Ev0003FILE",
)

MESSAGE_CHANGED = wrap(
    {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": CHANNEL,
        "ts": "1358878755.000001",
        "message": {
            "type": "message",
            "user": CUSTOMER,
            "text": "Hello, world!",
            "ts": "1355517523.000005",
            "edited": {"user": CUSTOMER, "ts": "1358878755.000001"},
        },
        "previous_message": {
            "type": "message",
            "user": CUSTOMER,
            "text": "Hello world",
            "ts": "1355517523.000005",
        },
        "event_ts": "1358878755.000001",
        "channel_type": "channel",
    },
    event_id="Ev0004CHANGED",
)

MESSAGE_DELETED = wrap(
    {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": CHANNEL,
        "ts": "1358878760.000002",
        "deleted_ts": "1355517523.000005",
        "event_ts": "1358878760.000002",
        "channel_type": "channel",
    },
    event_id="Ev0005DELETED",
)

APP_MENTION = wrap(
    {
        "type": "app_mention",
        "user": CUSTOMER,
        "text": f"<@{BOT_USER}> is it everything a river should be?",
        "ts": "1515449522.000016",
        "channel": CHANNEL,
        "event_ts": "1515449522000016",
    },
    event_id="Ev0006MENTION",
)

DIRECT_MESSAGE = wrap(
    {
        "type": "message",
        "channel": DM,
        "user": CUSTOMER,
        "text": "Hi, I need help with my order",
        "ts": "1355517700.000010",
        "event_ts": "1355517700.000010",
        "channel_type": "im",
    },
    event_id="Ev0007DM",
)

BOT_MESSAGE = wrap(
    {
        "type": "message",
        "subtype": "bot_message",
        "text": "Pushing is the answer",
        "ts": "1358877455.000010",
        "username": "github",
        "bot_id": "BB12033",
        "channel": CHANNEL,
        "event_ts": "1358877455.000010",
        "channel_type": "channel",
    },
    event_id="Ev0008BOT",
)

# Our own reply as Slack echoes it: a plain message, but from our bot user and app.
OWN_REPLY_ECHO = wrap(
    {
        "type": "message",
        "channel": DM,
        "user": BOT_USER,
        "bot_id": "B0OURBOT",
        "app_id": APP,
        "text": "Thanks, we are on it",
        "ts": "1355517800.000011",
        "event_ts": "1355517800.000011",
        "channel_type": "im",
    },
    event_id="Ev0009ECHO",
)

CHANNEL_JOIN = wrap(
    {
        "type": "message",
        "subtype": "channel_join",
        "user": CUSTOMER,
        "text": f"<@{CUSTOMER}> has joined the channel",
        "ts": "1355517900.000012",
        "channel": CHANNEL,
        "event_ts": "1355517900.000012",
        "channel_type": "channel",
    },
    event_id="Ev0010JOIN",
)

ALL = {
    "message": MESSAGE,
    "thread_reply": THREAD_REPLY,
    "file_share": FILE_SHARE,
    "message_changed": MESSAGE_CHANGED,
    "message_deleted": MESSAGE_DELETED,
    "app_mention": APP_MENTION,
    "direct_message": DIRECT_MESSAGE,
    "bot_message": BOT_MESSAGE,
    "own_reply_echo": OWN_REPLY_ECHO,
    "channel_join": CHANNEL_JOIN,
    "url_verification": URL_VERIFICATION,
}


def variant(payload: dict[str, Any], **event_changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    changed["event"].update(event_changes)
    return changed


def sign(body: bytes, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's headers for ``body`` sent at ``timestamp`` (now by default)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    try:
        signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    except UnicodeDecodeError:
        # The SDK only signs text; sign other bytes by hand the same way (v0 HMAC).
        digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        signature = "v0=" + digest.hexdigest()
    assert signature is not None
    return {"x-slack-request-timestamp": stamp, "x-slack-signature": signature}


def slack_event(
    payload: dict[str, Any] | bytes,
    *,
    timestamp: int | None = None,
    secret: str = SIGNING_SECRET,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API v2.0 event for Slack posting ``payload``, signed."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = {
        "accept": "*/*",
        "accept-encoding": "gzip,deflate",
        "content-type": "application/json",
        "content-length": str(len(body)),
        "host": HOST,
        "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "x-forwarded-proto": "https",
        **sign(body, timestamp, secret),
        **(headers or {}),
    }
    return {
        "version": "2.0",
        "routeKey": f"POST {PATH}",
        "rawPath": PATH,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "domainName": HOST,
            "http": {"method": "POST", "path": PATH, "sourceIp": "54.209.0.1"},
            "requestId": "slack",
            "stage": "$default",
        },
        **_body(body),
    }


def _body(body: bytes) -> dict[str, Any]:
    # API Gateway passes JSON as text and anything that is not UTF-8 as base64.
    try:
        return {"body": body.decode("utf-8"), "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "isBase64Encoded": True}
