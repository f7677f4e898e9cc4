"""EmailSender builds the reply's MIME and classifies SES's refusals (a fake SES client)."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.unit import email_messages as em
from threadline.channels.base import SendFailed
from threadline.channels.email.inbound import parse_email
from threadline.channels.email.outbound import EmailSender, reply_subject
from threadline.schema import (
    AuthorRole,
    Channel,
    Direction,
    Identity,
    MediaPart,
    Message,
    MessageStatus,
    TextPart,
    utc_now,
)

FROM = "support@threadline.example"


class FakeSes:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def send_email(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.error:
            raise self.error
        return {"MessageId": "0100018f-ses-id"}


def reply(reply_to: dict[str, str] | None = None, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "id": "01JREPLY",
        "customer_id": "01JCUST",
        "conversation_id": "01JCONV",
        "channel": Channel.EMAIL,
        "direction": Direction.OUTBOUND,
        "provider": "ses",
        "author_role": AuthorRole.AGENT,
        "recipient": Identity.parse("email:ada@example.com"),
        "received_at": utc_now(),
        "parts": [TextPart(text="It ships today.")],
        "status": MessageStatus.QUEUED,
        "channel_data": {"reply_to": reply_to} if reply_to else {},
        **changes,
    }
    return Message(**fields)


def sent_mime(ses: FakeSes) -> Any:
    return message_from_bytes(ses.calls[0]["Content"]["Raw"]["Data"], policy=policy.default)


def test_a_reply_threads_under_the_customers_last_mail() -> None:
    inbound = parse_email(em.GMAIL_REPLY).message
    assert inbound.reply_to is not None
    ses = FakeSes()
    result = EmailSender(FROM, lambda: ses).send(reply(inbound.reply_to))
    assert result.provider_message_id == "0100018f-ses-id"
    mime = sent_mime(ses)
    assert mime["From"] == FROM and mime["To"] == "ada@example.com"
    assert mime["Subject"] == "Re: My order has not arrived"
    assert mime["In-Reply-To"] == "<CAH+reply2@mail.gmail.com>"
    assert mime["References"].split() == [
        "<CAH+abc123@mail.gmail.com>",
        "<01000abc@email.amazonses.com>",
        "<CAH+reply2@mail.gmail.com>",
    ]
    assert ses.calls[0]["Destination"] == {"ToAddresses": ["ada@example.com"]}


def test_a_first_message_has_a_subject_and_no_threading_headers() -> None:
    ses = FakeSes()
    media = MediaPart(url="https://cdn.example.com/label.pdf", filename="label.pdf")
    EmailSender(FROM, lambda: ses).send(reply(parts=[TextPart(text="Hello"), media]))
    mime = sent_mime(ses)
    assert mime["Subject"] == "Message from support"
    assert mime["In-Reply-To"] is None and mime["References"] is None
    assert mime.get_content() == "Hello\n\nlabel.pdf: https://cdn.example.com/label.pdf\n"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Order", "Re: Order"), ("RE: Order", "RE: Order"), ("re : x", "re : x"), (None, None)],
)
def test_reply_subject_adds_re_once(subject: str | None, expected: str | None) -> None:
    assert reply_subject(subject) == (expected or "Message from support")


def test_auto_replies_do_not_become_the_mail_to_answer() -> None:
    assert parse_email(em.AUTO_REPLY).message.reply_to is None


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendEmail",
    )


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (_client_error("TooManyRequestsException", 429), "TooManyRequestsException", True),
        (_client_error("InternalFailure", 500), "InternalFailure", True),
        (_client_error("MessageRejected", 400), "MessageRejected", False),
        (EndpointConnectionError(endpoint_url="https://email.example"), "network_error", True),
    ],
)
def test_ses_refusals_are_classified(error: Exception, code: str, retryable: bool) -> None:
    with pytest.raises(SendFailed) as failed:
        EmailSender(FROM, lambda: FakeSes(error)).send(reply())
    assert (failed.value.code, failed.value.retryable) == (code, retryable)


def test_no_from_address_or_no_email_recipient_fails_for_good() -> None:
    with pytest.raises(SendFailed) as failed:
        EmailSender("", lambda: FakeSes()).send(reply())
    assert (failed.value.code, failed.value.retryable) == ("email_not_configured", False)
    with pytest.raises(SendFailed) as failed:
        EmailSender(FROM, lambda: FakeSes()).send(
            reply(recipient=Identity.parse("phone:+15551234567"))
        )
    assert failed.value.code == "no_recipient"
