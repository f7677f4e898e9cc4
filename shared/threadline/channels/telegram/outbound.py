"""Telegram replies: the Bot API's ``sendMessage``.

There is no SDK: the Bot API is called through :mod:`threadline.http`, at
``<TELEGRAM_API_BASE_URL>/bot<token>/<method>`` (https://api.telegram.org unless the
deployment names another root). The token is in the URL path, so no URL of that API
is ever logged or put into an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from threadline.channels.base import SendFailed, SendResult
from threadline.channels.telegram.inbound import PROVIDER, int_at, message_key, str_at
from threadline.schema import IdentityKind, MediaPart, Message

if TYPE_CHECKING:
    from threadline.http import HttpClient

API_URL = "https://api.telegram.org"
# sendMessage takes 1-4096 characters of text.
MAX_TEXT = 4096
SEND_TIMEOUT_SECONDS = 10.0


def _chat_argument(chat_id: str) -> int | str:
    # Numeric ids go as numbers (as Telegram returns them); @channelusername as text.
    digits = chat_id.removeprefix("-")
    return int(chat_id) if digits.isascii() and digits.isdigit() else chat_id


def _plain_text(message: Message) -> str:
    """Text, then each media part as its caption and link (sendMessage is text only)."""
    lines = [message.text] if message.text else []
    for part in message.parts:
        if isinstance(part, MediaPart) and part.url:
            lines.append(f"{part.caption}: {part.url}" if part.caption else part.url)
    return "\n".join(lines)


class TelegramSender:
    """Sends replies with the Bot API's ``sendMessage``.

    The chat is where the customer last wrote (``channel_data["reply_to"]``, copied
    from their identity when the reply was queued), else their private chat with the
    bot (whose id is the user's id). The reply quotes the customer's latest message
    (``reply_parameters``, with ``allow_sending_without_reply`` so a deleted message
    does not fail the reply). No ``parse_mode``: text goes out as written.
    """

    provider = PROVIDER

    def __init__(
        self,
        *,
        bot_token: Callable[[], str],
        api_base_url: str = API_URL,
        client: HttpClient | None = None,
        timeout: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        self._bot_token = bot_token
        self.base_url = api_base_url.rstrip("/") + "/"
        self._client = client
        self.timeout = timeout

    def send(self, message: Message) -> SendResult:
        if message.recipient is None or message.recipient.kind is not IdentityKind.TELEGRAM:
            raise SendFailed(
                "no_recipient", "the message has no Telegram recipient", retryable=False
            )
        reply_to = message.channel_data.get("reply_to") or {}
        chat_id = str(reply_to.get("chat_id") or message.recipient.value)
        text = _plain_text(message)
        if not text:
            raise SendFailed("empty_message", "nothing to send", retryable=False)
        if len(text) > MAX_TEXT:
            raise SendFailed(
                "message_too_long", "Telegram takes at most 4096 characters", retryable=False
            )
        payload: dict[str, Any] = {"chat_id": _chat_argument(chat_id), "text": text}
        reply_message_id = str(reply_to.get("message_id") or "")
        if reply_message_id.isascii() and reply_message_id.isdigit():
            payload["reply_parameters"] = {
                "message_id": int(reply_message_id),
                "allow_sending_without_reply": True,
            }
        # threadline.http loads urllib3 (botocore would too, but only once the
        # dispatcher first calls AWS): kept off the handler's cold import.
        from threadline.http import TransportError, http_client

        url = f"{self.base_url}bot{self._bot_token()}/sendMessage"
        client = self._client or http_client()
        try:
            response = client.post_json(url, payload, timeout=self.timeout)
        except TransportError:
            # ``from None``: the transport error's cause names the URL, token included.
            raise SendFailed(
                "network_error", "Telegram could not be reached", retryable=True
            ) from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            document = {}
        result = document.get("result")
        if response.ok and document.get("ok") is True and isinstance(result, dict):
            sent_id = int_at(result, "message_id")
            chat = result.get("chat")
            sent_chat = int_at(chat, "id") if isinstance(chat, dict) else None
            if sent_id is not None:
                return SendResult(
                    provider_message_id=message_key(
                        sent_chat if sent_chat is not None else chat_id, sent_id
                    )
                )
        raise _send_failed(response.status, document, response.retry_after())


def _send_failed(
    status: int, document: Mapping[str, Any], header_retry: float | None
) -> SendFailed:
    """Rate limits and Telegram's own failures are retried; any other refusal is final."""
    error_code = int_at(document, "error_code") or status
    description = str_at(document, "description")
    if status == 429 or error_code == 429:
        parameters = document.get("parameters")
        retry_after = int_at(parameters, "retry_after") if isinstance(parameters, dict) else None
        return SendFailed(
            "rate_limited",
            "Telegram rate limit",
            retryable=True,
            retry_after=float(retry_after) if retry_after is not None else header_retry,
        )
    if status >= 500 or error_code >= 500:
        return SendFailed(str(error_code), "Telegram server error", retryable=True)
    if 200 <= status < 300 and not document:
        # Telegram took the request but its answer is unreadable: the message may be
        # out, and sending it again could deliver it twice.
        return SendFailed("invalid_response", "Telegram's answer was not JSON", retryable=False)
    code = (description or str(error_code))[:256]
    return SendFailed(
        code, description or f"Telegram refused the message ({error_code})", retryable=False
    )


def sender_from_env() -> TelegramSender:
    """The sender as template.yaml configures it for the dispatcher."""
    from threadline.secrets import get_secret
    from threadline.settings import api_base_url

    return TelegramSender(
        bot_token=lambda: get_secret("TELEGRAM_BOT_TOKEN"),
        api_base_url=api_base_url("TELEGRAM_API_BASE_URL", API_URL),
    )
