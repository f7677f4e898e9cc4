"""``GET|POST /webhooks/meta``: one webhook for WhatsApp, Messenger and Instagram.

``GET`` is the subscription handshake: Meta calls it with ``hub.mode=subscribe``,
the verify token we chose in the app dashboard and a ``hub.challenge`` to echo.
``POST`` carries notifications as JSON, signed with ``X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the raw body keyed with the app secret>``. One POST may
batch many ``entry`` items, each with many ``changes`` (WhatsApp) or ``messaging``
events (Messenger, Instagram); every message in it becomes one draft, deduplicated
on its provider id (``wamid`` / ``mid``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from threadline.channels.base import (
    Acknowledgement,
    InboundMessage,
    MessageEdit,
    Normalized,
    StatusUpdate,
    WebhookRequest,
    parse_json_object,
)
from threadline.channels.meta.messenger import normalize_messaging
from threadline.channels.meta.payload import PROVIDER
from threadline.channels.meta.whatsapp import normalize_whatsapp
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.schema import Channel

SIGNATURE_HEADER = "x-hub-signature-256"
SIGNATURE_PREFIX = "sha256="
MAX_CHALLENGE_LENGTH = 256

OBJECT_WHATSAPP = "whatsapp_business_account"
OBJECT_PAGE = "page"
OBJECT_INSTAGRAM = "instagram"


def signature_of(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(request: WebhookRequest, app_secret: str) -> None:
    """Raise SignatureInvalid unless Meta signed exactly this body with our app secret."""
    given = request.headers.get(SIGNATURE_HEADER)
    if not given:
        raise SignatureInvalid("X-Hub-Signature-256 is missing")
    if not given.startswith(SIGNATURE_PREFIX):
        raise SignatureInvalid("X-Hub-Signature-256 is not a sha256= signature")
    expected = signature_of(request.body, app_secret)
    if not hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("utf-8")):
        raise SignatureInvalid("X-Hub-Signature-256 does not match this request")


def query_of(request: WebhookRequest) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))


def verify_handshake(request: WebhookRequest, verify_token: str) -> None:
    """Raise SignatureInvalid unless this GET is Meta's subscription check with our token."""
    query = query_of(request)
    token = query.get("hub.verify_token", "")
    if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        token.encode("utf-8"), verify_token.encode("utf-8")
    ):
        raise SignatureInvalid("hub.verify_token does not match")


def normalize_notification(document: Mapping[str, Any]) -> list[Normalized]:
    """Every message, status and edit in one webhook POST, each provider id once."""
    kind = document.get("object")
    if kind == OBJECT_WHATSAPP:
        items = normalize_whatsapp(document)
    elif kind == OBJECT_PAGE:
        items = normalize_messaging(document, Channel.MESSENGER)
    elif kind == OBJECT_INSTAGRAM:
        items = normalize_messaging(document, Channel.INSTAGRAM)
    else:
        return []  # other Graph objects (user, permissions, ...) are not messaging
    seen: set[tuple[str, str]] = set()
    unique: list[Normalized] = []
    for item in items:
        if isinstance(item, InboundMessage):
            key = ("message", item.provider_message_id)
        elif isinstance(item, StatusUpdate):
            key = (f"status:{item.status.value}", item.provider_message_id)
        elif isinstance(item, MessageEdit):
            key = ("edit", item.edit_id)
        else:
            unique.append(item)
            continue
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


class MetaWebhook:
    """The channel adapter for ``GET|POST /webhooks/meta``."""

    provider = PROVIDER

    def __init__(self, app_secret: Callable[[], str], verify_token: Callable[[], str]) -> None:
        # Callables: each secret is read (and cached by powertools) only when a
        # request needs it, and a rotated one is picked up.
        self._app_secret = app_secret
        self._verify_token = verify_token

    def verify(self, request: WebhookRequest) -> None:
        if request.method.upper() == "GET":
            verify_handshake(request, self._verify_token())
        else:
            verify_signature(request, self._app_secret())

    def normalize(self, request: WebhookRequest) -> list[Normalized]:
        if request.method.upper() == "GET":
            challenge = query_of(request).get("hub.challenge", "")
            if not challenge or len(challenge) > MAX_CHALLENGE_LENGTH:
                raise MalformedRequest("hub.challenge is missing or too long")
            return [Acknowledgement(status=200, content_type="text/plain", body=challenge)]
        return normalize_notification(parse_json_object(request.body))

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement(status=200, content_type="text/plain", body="EVENT_RECEIVED")
