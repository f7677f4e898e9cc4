"""Replies out: pushed with ``PostToConnection`` to every open connection of the
visitor; with none open, the reply waits on the timeline and, for a verified visitor
with an e-mail, a delayed job sends it on by e-mail unless it was seen meanwhile."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadline.channels.base import SendFailed, SendResult
from threadline.channels.webchat.connections import forget_connection, open_connections
from threadline.channels.webchat.settings import (
    MAX_TEXT,
    PROVIDER,
    WebchatSettings,
    webchat_settings,
)
from threadline.channels.webchat.socket import message_frame
from threadline.logs import logger
from threadline.schema import Channel, IdentityKind, Message, MessageStatus
from threadline.settings import required_env

if TYPE_CHECKING:
    from threadline.outbound_store import OutboundStore
    from threadline.store import TimelineStore


class WebchatSender:
    """Pushes a reply to every open connection of the visitor (``PostToConnection``).

    Pushed to at least one: ``delivered`` (the dispatcher records it). None open: the
    reply is ``sent`` and waits on the timeline for the next connect; for a verified
    visitor a continuity job is queued with a delay (:func:`continue_by_email`).
    A connection API Gateway says is gone (410) is forgotten.
    """

    provider = PROVIDER

    def __init__(
        self,
        store: TimelineStore,
        settings: WebchatSettings,
        *,
        management: Callable[[], Any],
        sqs: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._management = management
        self._sqs = sqs

    def send(self, message: Message) -> SendResult:
        if message.recipient is None or message.recipient.kind is not IdentityKind.WEBCHAT:
            raise SendFailed("no_recipient", "the message has no web chat visitor", retryable=False)
        if not message.text and not message.parts:
            raise SendFailed("empty_message", "nothing to send", retryable=False)
        from botocore.exceptions import BotoCoreError, ClientError

        visitor_id = message.recipient.value
        # What the visitor sees is the message as it arrives: delivered.
        frame = message_frame(message.model_copy(update={"status": MessageStatus.DELIVERED}))
        pushed = 0
        for connection_id in open_connections(self.store.data, visitor_id):
            try:
                self._management().post_to_connection(
                    ConnectionId=connection_id, Data=frame.encode("utf-8")
                )
                pushed += 1
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in {"GoneException", "410"}:
                    forget_connection(self.store.data, visitor_id, connection_id)
                else:
                    logger.warning("push to a web chat connection failed", extra={"code": code})
            except BotoCoreError:
                logger.warning("push to a web chat connection failed", extra={"code": "network"})
        provider_message_id = f"{visitor_id}:{message.id}"
        if pushed:
            return SendResult(provider_message_id=provider_message_id, delivered=True)
        self._queue_continuity(message)
        return SendResult(provider_message_id=provider_message_id)

    def _queue_continuity(self, message: Message) -> None:
        if not self.settings.continuity_queue_url or self._sqs is None:
            return
        self._sqs().send_message(
            QueueUrl=self.settings.continuity_queue_url,
            MessageBody=json.dumps({"customer_id": message.customer_id, "message_id": message.id}),
            DelaySeconds=self.settings.email_delay_seconds,
        )


def management_client(connections_url: str) -> Any:
    """The ``apigatewaymanagementapi`` client of the WebSocket API's stage."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=connections_url,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}),
    )


def build_sender() -> WebchatSender:
    """The sender as template.yaml configures it for the dispatcher; clients made on use."""
    from threadline import aws
    from threadline.settings import store_settings
    from threadline.store import TimelineStore

    settings = webchat_settings()
    clients: dict[str, Any] = {}

    def management() -> Any:
        if "management" not in clients:
            clients["management"] = management_client(
                settings.connections_url or required_env("WEBCHAT_CONNECTIONS_URL")
            )
        return clients["management"]

    return WebchatSender(
        TimelineStore(store_settings()), settings, management=management, sqs=aws.sqs
    )


# ---------------------------------------------------------------- e-mail continuity


CONTINUITY_NOTE = "\n\n(You had left the chat, so this reply comes by e-mail.)"


def continuation_job(body: str) -> tuple[str, str]:
    try:
        document = json.loads(body)
        return str(document["customer_id"]), str(document["message_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("not a web chat continuity job") from exc


def continue_by_email(store: OutboundStore, customer_id: str, message_id: str) -> str | None:
    """Send a web chat reply the visitor has not seen by e-mail; the e-mail's message id.

    Only when the reply is still unseen (not delivered or read), the customer has an
    e-mail identity (every one on a profile is verified: unverified claims never
    link) and e-mail replies are allowed. The e-mail is queued as any reply is, so
    the timeline shows it (and the dispatcher checks consent and bounces again); its
    Idempotency-Key makes a redelivered job queue it once.
    """
    from threadline.outbound import EmailBlocked, OptedOut, SendMessageRequest

    message = store.get_message(customer_id, message_id)
    if message is None:
        survivor = store.merged_into(customer_id)
        message = store.get_message(survivor, message_id) if survivor else None
    if message is None or message.channel is not Channel.WEBCHAT:
        return None
    if message.status not in (MessageStatus.SENT, MessageStatus.QUEUED):
        return None  # seen meanwhile (delivered or read), or failed
    profile = store.resolve_profile(message.customer_id, consistent=True)
    if profile is None or not any(
        i.kind is IdentityKind.EMAIL for i in profile.customer.identities
    ):
        return None
    try:
        queued, _ = store.queue_message(
            profile.customer.id,
            SendMessageRequest(
                text=(message.text or "")[: MAX_TEXT - len(CONTINUITY_NOTE)] + CONTINUITY_NOTE,
                channel=Channel.EMAIL,
                author_role=message.author_role.value,
                author_id=message.author_id,
            ),
            idempotency_key=f"webchat-continuity-{message.id}",
        )
    except (OptedOut, EmailBlocked) as refused:
        logger.info("web chat reply not continued by e-mail", extra={"code": refused.code})
        return None
    logger.info("web chat reply continued by e-mail", extra={"message_id": queued.id})
    return queued.id
