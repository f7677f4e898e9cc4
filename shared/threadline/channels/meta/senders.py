"""Replies through the Graph API: WhatsApp Cloud API and Messenger / Instagram."""

from __future__ import annotations

import os
from typing import Any

from threadline.channels.base import SendFailed, SendResult
from threadline.channels.meta.graph import GraphClient, graph_api_base_url, graph_version
from threadline.channels.meta.payload import PROVIDER, callback_data
from threadline.channels.registry import channel_spec
from threadline.schema import Channel, IdentityKind, MediaPart, Message


def _media(message: Message) -> list[MediaPart]:
    return [p for p in message.parts if isinstance(p, MediaPart) and p.url]


def _text_with_links(message: Message) -> str:
    """Text, plus each media part as its caption and link: the plain-text fallback."""
    lines = [message.text] if message.text else []
    for part in _media(message):
        lines.append(f"{part.caption}: {part.url}" if part.caption else str(part.url))
    return "\n".join(lines)


def _whatsapp_media_type(content_type: str | None) -> str:
    major = (content_type or "").split("/")[0]
    return major if major in ("image", "video", "audio") else "document"


class WhatsAppCloudSender(GraphClient):
    """Sends WhatsApp messages through the Cloud API (``POST /<phone-number-id>/messages``).

    The business number is the one the customer last wrote to (``reply_to``), else
    the configured default. A template (``channel_data["template"]``) is sent as
    one; else one media part goes as that media with the text as its caption, and
    anything else as text with links.
    """

    provider = PROVIDER

    def __init__(self, *, phone_number_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phone_number_id = phone_number_id or None

    def payload(self, message: Message) -> dict[str, Any]:
        if message.recipient is None or message.recipient.kind is not IdentityKind.PHONE:
            raise SendFailed("no_recipient", "the message has no phone recipient", retryable=False)
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient.value.removeprefix("+"),
            "biz_opaque_callback_data": callback_data(message.customer_id, message.id),
        }
        template = message.channel_data.get("template")
        media = _media(message)
        if isinstance(template, dict):
            body: dict[str, Any] = {
                "name": template["name"],
                "language": {"code": template["language"]},
            }
            if template.get("components"):
                body["components"] = template["components"]
            payload.update(type="template", template=body)
        elif len(media) == 1 and (not message.text or len(message.text) <= 1024):
            part = media[0]
            kind = _whatsapp_media_type(part.content_type)
            body = {"link": part.url}
            caption = message.text or part.caption
            if caption and kind != "audio":
                body["caption"] = caption
            if kind == "document" and part.filename:
                body["filename"] = part.filename
            payload.update(type=kind, **{kind: body})
        else:
            text = _text_with_links(message)
            if not text:
                raise SendFailed("empty_message", "nothing to send", retryable=False)
            payload.update(type="text", text={"body": text, "preview_url": bool(media)})
        return payload

    def send(self, message: Message) -> SendResult:
        payload = self.payload(message)
        reply_to = message.channel_data.get("reply_to") or {}
        phone_number_id = reply_to.get("phone_number_id") or self.phone_number_id
        if not phone_number_id:
            raise SendFailed(
                "whatsapp_not_configured",
                "no WhatsApp business phone number id (MetaWhatsAppPhoneNumberId)",
                retryable=False,
            )
        document = self._post(f"{phone_number_id}/messages", payload)
        messages = document.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, dict) else None
        if not isinstance(wamid, str) or not wamid:
            raise SendFailed(
                "bad_response", "the Cloud API returned no message id", retryable=False
            )
        return SendResult(provider_message_id=wamid)


class MessengerSender(GraphClient):
    """Sends Messenger or Instagram messages through ``POST /me/messages`` (page token).

    ``messaging_type`` is RESPONSE inside the 24-hour window; a message tag the
    request asked for (``channel_data["message_tag"]``) sends it as MESSAGE_TAG.
    """

    provider = PROVIDER

    def __init__(self, *, channel: Channel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel = channel
        self.kind = channel_spec(channel).identity_kind

    def payload(self, message: Message) -> dict[str, Any]:
        if message.recipient is None or message.recipient.kind is not self.kind:
            raise SendFailed(
                "no_recipient", f"the message has no {self.kind.value} recipient", retryable=False
            )
        media = _media(message)
        if len(media) == 1 and not message.text:
            part = media[0]
            kind = _whatsapp_media_type(part.content_type)
            kind = "file" if kind == "document" else kind
            content: dict[str, Any] = {
                "attachment": {"type": kind, "payload": {"url": part.url, "is_reusable": False}}
            }
        else:
            text = _text_with_links(message)
            if not text:
                raise SendFailed("empty_message", "nothing to send", retryable=False)
            content = {"text": text}
        payload: dict[str, Any] = {
            "recipient": {"id": message.recipient.value},
            "messaging_type": "RESPONSE",
            "message": content,
        }
        tag = message.channel_data.get("message_tag")
        if isinstance(tag, str) and tag:
            payload.update(messaging_type="MESSAGE_TAG", tag=tag)
        return payload

    def send(self, message: Message) -> SendResult:
        document = self._post("me/messages", self.payload(message))
        mid = document.get("message_id")
        if not isinstance(mid, str) or not mid:
            raise SendFailed("bad_response", "the Send API returned no message id", retryable=False)
        return SendResult(provider_message_id=mid)


def whatsapp_sender_from_env() -> WhatsAppCloudSender:
    """The WhatsApp Cloud API sender as template.yaml configures it for the dispatcher."""
    from threadline.secrets import get_secret

    return WhatsAppCloudSender(
        access_token=lambda: get_secret("META_ACCESS_TOKEN"),
        phone_number_id=os.environ.get("META_WHATSAPP_PHONE_NUMBER_ID") or None,
        api_base_url=graph_api_base_url(),
        version=graph_version(),
    )


def messenger_sender_from_env(channel: Channel = Channel.MESSENGER) -> MessengerSender:
    """The Messenger or Instagram sender as template.yaml configures it."""
    from threadline.secrets import get_secret

    return MessengerSender(
        channel=channel,
        access_token=lambda: get_secret("META_PAGE_ACCESS_TOKEN"),
        api_base_url=graph_api_base_url(),
        version=graph_version(),
    )


def instagram_sender_from_env() -> MessengerSender:
    return messenger_sender_from_env(Channel.INSTAGRAM)
