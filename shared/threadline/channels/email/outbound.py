"""E-mail replies out: MIME built with the standard library, sent with SES v2 ``SendEmail``,
threaded on the customer's last mail (``In-Reply-To``, ``References``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadline.channels.base import SendFailed, SendResult
from threadline.channels.email.inbound import PROVIDER
from threadline.schema import (
    IdentityKind,
    MediaPart,
    Message,
)
from threadline.settings import required_env

if TYPE_CHECKING:
    pass


DEFAULT_SUBJECT = "Message from support"
_RETRYABLE_SES_ERRORS = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
)


def reply_subject(subject: str | None) -> str:
    """``Re: <subject>`` once: a reply to a reply does not become ``Re: Re:``."""
    if not subject:
        return DEFAULT_SUBJECT
    return subject if re.match(r"^\s*re\s*:", subject, re.IGNORECASE) else f"Re: {subject}"


def build_mime(message: Message, from_address: str, *, message_id: str | None = None) -> bytes:
    """The raw reply: From us, To the customer, threaded under their last mail."""
    from email.message import EmailMessage

    if message.recipient is None or message.recipient.kind is not IdentityKind.EMAIL:
        raise SendFailed(
            "no_recipient", "an e-mail reply needs an email recipient", retryable=False
        )
    reply_to = message.channel_data.get("reply_to") or {}
    mime = EmailMessage()
    mime["From"] = from_address
    mime["To"] = message.recipient.value
    mime["Subject"] = reply_subject(reply_to.get("subject"))
    if message_id:
        mime["Message-ID"] = message_id
    if reply_to.get("message_id"):
        mime["In-Reply-To"] = reply_to["message_id"]
        mime["References"] = reply_to.get("references") or reply_to["message_id"]
    lines = [message.text] if message.text else []
    for part in message.parts:
        # Plain text is what every mail client renders: media go as links.
        if isinstance(part, MediaPart) and part.url:
            lines.append(f"{part.caption or part.filename or 'Attachment'}: {part.url}")
    mime.set_content("\n\n".join(lines) or " ")
    return mime.as_bytes()


class EmailSender:
    """Sends replies through SES (``sesv2.send_email`` with raw MIME)."""

    provider = PROVIDER

    def __init__(
        self,
        from_address: str,
        client: Callable[[], Any] | None = None,
        *,
        configuration_set: str | None = None,
    ) -> None:
        self.from_address = from_address
        # Sending through the configuration set is what makes SES publish the mail's
        # bounces, complaints and deliveries to the feedback topic.
        self.configuration_set = configuration_set or None
        self._client_factory = client
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = (self._client_factory or _sesv2_client)()
        return self._client

    def send(self, message: Message) -> SendResult:
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.from_address:
            raise SendFailed("email_not_configured", "EmailFromAddress is not set", retryable=False)
        # SES replaces a Message-ID it is given with its own (<MessageId@...amazonses.com>,
        # which inbound threading derives from the MessageId); other relays and the
        # local stack keep ours, so it is recorded as an alias of the message too.
        message_id = make_message_id(self.from_address)
        raw = build_mime(message, self.from_address, message_id=message_id)
        request: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Destination": {"ToAddresses": [message.recipient.value if message.recipient else ""]},
            "Content": {"Raw": {"Data": raw}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "ses_error")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            retryable = code in _RETRYABLE_SES_ERRORS or status == 429 or status >= 500
            raise SendFailed(code, str(error.get("Message") or code), retryable=retryable) from exc
        except BotoCoreError as exc:
            raise SendFailed("network_error", str(exc), retryable=True) from exc
        return SendResult(provider_message_id=str(response["MessageId"]), aliases=(message_id,))


def make_message_id(from_address: str) -> str:
    """A fresh ``<...@domain>`` Message-ID on the sending address's domain."""
    from email.utils import make_msgid

    domain = from_address.rpartition("@")[2] or "threadline.invalid"
    return make_msgid(domain=domain)


def _sesv2_client() -> Any:
    from threadline import aws

    return aws.sesv2()


def sender_from_env() -> EmailSender:
    """The dispatcher's e-mail sender; the From address is template.yaml's EmailFromAddress."""
    return EmailSender(
        required_env("EMAIL_FROM_ADDRESS"),
        configuration_set=required_env("EMAIL_CONFIGURATION_SET"),
    )
