"""Slack replies: ``chat.postMessage`` through slack_sdk's ``WebClient``, into the
conversation and thread of the customer's last Slack message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threadline.channels.base import SendFailed, SendResult
from threadline.channels.slack.events import (
    PROVIDER,
    SLACK_URL,
    slack_api_base_url,
    web_api_url,
)
from threadline.schema import IdentityKind, MediaPart, Message


class SlackSender:
    """Sends replies with slack_sdk's ``WebClient.chat_postMessage``.

    The conversation and thread come from the customer's last Slack message
    (``channel_data["reply_to"]``, copied from their identity when the reply was
    queued); without one the reply goes to the user's DM with the app (Slack accepts
    a user id as ``channel``). The provider id is ``TEAM:CHANNEL:TS``, as inbound, so
    the echo Slack sends of our own message dedupes against it.
    """

    provider = PROVIDER

    def __init__(
        self, *, bot_token: Callable[[], str], api_base_url: str = SLACK_URL, timeout: int = 10
    ) -> None:
        self._bot_token = bot_token
        self.base_url = web_api_url(api_base_url)
        self.timeout = timeout

    def send(self, message: Message) -> SendResult:
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError, SlackClientError

        if message.recipient is None or message.recipient.kind is not IdentityKind.SLACK:
            raise SendFailed("no_recipient", "the message has no Slack recipient", retryable=False)
        team, _, user = message.recipient.value.partition(":")
        reply_to = message.channel_data.get("reply_to") or {}
        channel = str(reply_to.get("channel") or user)
        thread_ts = reply_to.get("thread_ts") or None
        text = _plain_text(message)
        if not text:
            raise SendFailed("empty_message", "nothing to send", retryable=False)
        # No retry handlers: a retried post after a lost answer would post twice;
        # the dispatcher owns retries and claims the message first.
        client = WebClient(
            token=self._bot_token(),
            base_url=self.base_url,
            timeout=self.timeout,
            retry_handlers=[],
        )
        try:
            response = client.chat_postMessage(channel=channel, text=text, thread_ts=thread_ts)
        except SlackApiError as exc:
            raise _send_failed(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise SendFailed("network_error", "Slack could not be reached", retryable=True) from exc
        posted_channel = response.get("channel") or channel
        return SendResult(provider_message_id=f"{team}:{posted_channel}:{response.get('ts')}")


def slack_escape(text: str) -> str:
    """Escape the three characters Slack reads as markup, as its docs ask.

    Unescaped, an agent's ``<@U123>`` or ``<!channel>`` would mention people or
    notify a whole channel, and ``a < b`` could be swallowed as a broken link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain_text(message: Message) -> str:
    """Text, plus each media part as its caption and link: Slack shows links inline."""
    lines = [message.text] if message.text else []
    for part in message.parts:
        if isinstance(part, MediaPart) and part.url:
            lines.append(f"{part.caption}: {part.url}" if part.caption else part.url)
    return slack_escape("\n".join(lines))


def _send_failed(exc: Any) -> SendFailed:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    headers = {str(k).lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    data = getattr(response, "data", None)
    code = str(data.get("error")) if isinstance(data, dict) and data.get("error") else str(status)
    if status == 429:
        retry_after = headers.get("retry-after")
        if isinstance(retry_after, list):
            retry_after = retry_after[0] if retry_after else None
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return SendFailed("ratelimited", "Slack rate limit", retryable=True, retry_after=seconds)
    if status >= 500:
        return SendFailed(code, "Slack server error", retryable=True)
    return SendFailed(code, f"Slack refused the message ({code})", retryable=False)


def sender_from_env() -> SlackSender:
    """The sender as template.yaml configures it for the dispatcher."""
    from threadline.secrets import get_secret

    return SlackSender(
        bot_token=lambda: get_secret("SLACK_BOT_TOKEN"),
        api_base_url=slack_api_base_url(),
    )
