"""Run fuzz requests through each webhook's real adapter and pipeline, in process.

The store is a strict stand-in for DynamoDB and S3: it takes what the pipeline hands
it only if a real item could hold it (UTF-8 encodable, at most 32 levels deep, under
400 KB), and raises otherwise, so a 5xx here means a 5xx against AWS.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from tests.fuzz.corpus import FuzzRequest, Secrets
from threadline.channels.base import (
    ChannelAdapter,
    InboundMessage,
    MessageEdit,
    StatusUpdate,
)
from threadline.channels.meta.webhook import MetaWebhook
from threadline.channels.slack.events import SlackEvents
from threadline.channels.telegram.inbound import TelegramWebhook
from threadline.channels.twilio.messaging import TwilioMessaging, TwilioStatusCallback
from threadline.channels.twilio.voice import TwilioVoice
from threadline.errors import ThreadlineError
from threadline.store import KeptRaw, RawPayload, RawPayloadRef
from threadline.webhook import handle_webhook, process_request, request_from_queue

HOST = "hooks.example.com"
BASE_URL = f"https://{HOST}"
DYNAMODB_ITEM_BYTES = 400 * 1024
DYNAMODB_MAX_DEPTH = 32


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class ItemRefused(Exception):
    """What DynamoDB's ValidationException stands for here."""

    response: ClassVar[dict[str, Any]] = {"Error": {"Code": "ValidationException"}}


@dataclass
class StrictStore:
    """Keeps what it is given as DynamoDB and S3 would, refusing what they would refuse."""

    raw: list[bytes] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw:
        raw.envelope.decode("utf-8")  # S3 takes bytes; the envelope must be text
        self.raw.append(raw.envelope)
        ref = RawPayloadRef(
            location="s3",
            content_type=raw.content_type,
            size=len(raw.envelope),
            sha256="0" * 64,
            bucket="raw",
            key=f"raw/{raw.provider}/{raw.body_sha256}.json",
        )
        return KeptRaw(ref=ref, inline=None)

    def ingest(
        self, inbound: InboundMessage, raw: KeptRaw, *, received_at: datetime | None = None
    ) -> None:
        self._check(inbound.model_dump(mode="json"))
        self.messages.append(inbound)

    def apply_status(self, update: StatusUpdate) -> None:
        self._check(update.model_dump(mode="json"))

    def apply_edit(self, edit: MessageEdit, raw: KeptRaw | None = None) -> None:
        self._check(edit.model_dump(mode="json"))

    def _check(self, document: dict[str, Any]) -> None:
        from threadline.errors import StorageUnavailable

        try:
            encoded = json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:  # botocore cannot serialize it either
            raise AssertionError("a lone surrogate reached the store") from exc
        if len(encoded) > DYNAMODB_ITEM_BYTES or _depth(document) + 2 > DYNAMODB_MAX_DEPTH:
            raise StorageUnavailable("the timeline could not be written") from ItemRefused()


def adapters(secrets: Secrets) -> dict[str, ChannelAdapter]:
    twilio = lambda: secrets.twilio_auth_token  # noqa: E731
    voice = TwilioVoice(auth_token=twilio)
    return {
        "twilio_messaging": TwilioMessaging(auth_token=twilio),
        "twilio_fallback": TwilioMessaging(auth_token=twilio),
        "twilio_status": TwilioStatusCallback(auth_token=twilio),
        "twilio_voice": voice,
        "twilio_voice_dial": voice,
        "twilio_voice_recording": voice,
        "slack": SlackEvents(signing_secret=lambda: secrets.slack_signing_secret, directory=None),
        "meta": MetaWebhook(
            app_secret=lambda: secrets.meta_app_secret, verify_token=lambda: "verify"
        ),
        "telegram": TelegramWebhook(secret_token=lambda: secrets.telegram_secret_token),
    }


def http_api_event(request: FuzzRequest) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": request.path,
        "rawQueryString": "",
        "headers": {"host": HOST, **{k.lower(): v for k, v in request.headers.items()}},
        "requestContext": {"http": {"method": "POST", "path": request.path}},
        "body": base64.b64encode(request.body).decode(),
        "isBase64Encoded": True,
    }


def answer(request: FuzzRequest, channel: ChannelAdapter, store: StrictStore) -> int:
    """The HTTP status the route gives ``request`` (the fallback: its drain's verdict)."""
    if request.route != "twilio_fallback":
        return int(handle_webhook(http_api_event(request), channel, store)["statusCode"])
    # The fallback route queues the body as text; the drain files it. A drop is a 4xx.
    queued = request_from_queue(
        request.body.decode("utf-8", "replace"),
        {"Signature": request.headers.get("X-Twilio-Signature", ""), "Host": HOST},
        request.path,
        signature_header="X-Twilio-Signature",
    )
    try:
        process_request(queued, channel, store)
    except ThreadlineError as error:
        return error.status
    return 200
