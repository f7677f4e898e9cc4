"""The SES inbound path against moto server: a raw mail put in the inbound mail bucket,
the handler invoked with the S3 event as Lambda delivers it, the timeline read back."""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from tests.conftest import load_handler_module
from tests.integration.conftest import LambdaContext
from tests.unit import email_messages as em
from threadline.schema import Identity


@pytest.fixture(scope="session")
def email_module(function_env, aws_env):
    from threadline.settings import store_settings

    # Settings are cached per process as in Lambda; here every handler shares one
    # process, and this function's environment (no RAW_INLINE_MAX_BYTES: mail is never
    # inlined) must not become the other handlers' settings.
    store_settings.cache_clear()
    os.environ.update(function_env("EmailInboundFunction"))
    module = load_handler_module("functions/email_inbound")
    store_settings.cache_clear()
    return module


@pytest.fixture(scope="session")
def mail_bucket(stack) -> str:
    return stack.physical_id("InboundMailBucket")


def s3_event(bucket: str, key: str, size: int) -> dict[str, Any]:
    """An S3 event notification record, as S3 hands it to Lambda."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-23T09:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:SES"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Mail",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "size": size, "sequencer": "0A1B2C"},
                },
            }
        ]
    }


def deliver(email_module, bucket: str, raw: bytes, key: str | None = None) -> dict[str, Any]:
    key = key or "mail/" + secrets.token_hex(10)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=raw)
    result: dict[str, Any] = email_module.lambda_handler(
        s3_event(bucket, key, len(raw)), LambdaContext()
    )
    return result


def mail_from(address: str, message_id: str, body: bytes = em.ATTACHMENT) -> bytes:
    return body.replace(b"ada@example.com", address.encode()).replace(
        b"<att-1@mail.example.com>", message_id.encode()
    )


def customer_timeline(email_module, address: str) -> list[dict[str, Any]]:
    # Read through the store, as the API's timeline route does: loading the API
    # handler here would fix the process-wide cached settings before the webhook
    # tests that expect their own.
    customer_id = email_module.store.find_customer_id(Identity.parse(f"email:{address}"))
    assert customer_id is not None
    page = email_module.store.timeline(customer_id)
    return [m.model_dump(mode="json") for m in page.items]


def test_a_mail_lands_on_the_senders_timeline_with_its_attachment(email_module, mail_bucket, aws):
    address = f"ada.{secrets.token_hex(3)}@example.com"
    message_id = f"<{secrets.token_hex(6)}@mail.example.com>"
    raw = mail_from(address, message_id)
    key = "mail/with space " + secrets.token_hex(4)
    assert deliver(email_module, mail_bucket, raw, key) == {"filed": 1, "skipped": []}

    # Looked up in any case: the identity is the lower-cased address.
    [message] = customer_timeline(email_module, address.upper())
    assert message["channel"] == "email"
    assert message["provider"] == "ses"
    assert message["provider_message_id"] == message_id
    assert message["sender"] == {"kind": "email", "value": address}
    assert message["channel_data"]["subject"] == "Photo of the damage"
    # The S3 object SES wrote is the raw payload: referenced, not copied.
    assert message["raw"]["location"] == "s3"
    assert (message["raw"]["bucket"], message["raw"]["key"]) == (mail_bucket, key)
    text, media = message["parts"]
    assert text == {"type": "text", "text": "See the attached photo."}
    stored = aws.s3.get_object(Bucket=aws.bucket, Key=media["s3_key"])
    assert stored["Body"].read().startswith(b"\x89PNG")
    assert stored["ContentType"] == "image/png"


def test_a_redelivered_mail_is_stored_once(email_module, mail_bucket):
    address = f"dup.{secrets.token_hex(3)}@example.com"
    raw = mail_from(address, f"<{secrets.token_hex(6)}@mail.example.com>")
    deliver(email_module, mail_bucket, raw)
    deliver(email_module, mail_bucket, raw)  # SES writes a second object for a retry
    assert len(customer_timeline(email_module, address)) == 1


def test_spam_and_unknown_auto_replies_are_not_filed_but_known_ones_are(email_module, mail_bucket):
    assert deliver(email_module, mail_bucket, em.SPAM)["skipped"] == ["spam"]
    stranger = f"ooo.{secrets.token_hex(3)}@example.com"
    auto = em.AUTO_REPLY.replace(b"ada@example.com", stranger.encode()).replace(
        b"<ooo-1@example.com>", f"<{secrets.token_hex(6)}@example.com>".encode()
    )
    assert deliver(email_module, mail_bucket, auto)["skipped"] == ["auto_reply"]
    assert email_module.store.find_customer_id(Identity.parse(f"email:{stranger}")) is None

    deliver(email_module, mail_bucket, mail_from(stranger, f"<{secrets.token_hex(6)}@x.example>"))
    assert deliver(email_module, mail_bucket, auto) == {"filed": 1, "skipped": []}
    newest = customer_timeline(email_module, stranger)[0]
    assert newest["author_role"] == "system"
    assert newest["channel_data"]["filtered"] == "auto_reply"


def test_unreadable_and_vanished_mail_is_skipped_not_retried(email_module, mail_bucket):
    assert deliver(email_module, mail_bucket, b"\x00\xff not a mail")["skipped"] == ["malformed"]
    event = s3_event(mail_bucket, "mail/gone-" + secrets.token_hex(4), 10)
    assert email_module.lambda_handler(event, LambdaContext())["skipped"] == ["not_found"]
    setup = deliver(email_module, mail_bucket, em.ALTERNATIVE, "AMAZON_SES_SETUP_NOTIFICATION")
    assert setup["skipped"] == ["ses_setup_notification"]


@pytest.fixture(scope="module", autouse=True)
def _settings_not_shared_with_later_modules():
    yield
    from threadline.settings import store_settings

    # The dispatcher loaded here cached its settings process-wide; the webhook tests
    # that follow load their handlers with their own.
    store_settings.cache_clear()


def test_a_reply_goes_out_through_ses_threaded_under_the_customers_mail(
    email_module, mail_bucket, dispatcher_module
):
    from email import message_from_bytes, policy

    from tests.integration.conftest import EMAIL_FROM
    from threadline.outbound import SendMessageRequest

    boto3.client("ses").verify_email_identity(EmailAddress=EMAIL_FROM)
    address = f"reply.{secrets.token_hex(3)}@example.com"
    message_id = f"<{secrets.token_hex(6)}@mail.gmail.com>"
    raw = em.GMAIL_REPLY.replace(b"ada@example.com", address.encode()).replace(
        b"<CAH+reply2@mail.gmail.com>", message_id.encode()
    )
    assert deliver(email_module, mail_bucket, raw)["filed"] == 1
    store = dispatcher_module.dispatcher.store
    customer_id = store.find_customer_id(Identity.parse(f"email:{address}"))
    queued, _ = store.queue_message(customer_id, SendMessageRequest(text="Glad it arrived!"))
    assert queued.channel.value == "email"

    sent: list[dict[str, Any]] = []
    client = dispatcher_module.dispatcher.sender_for(queued.channel).client
    record = lambda params, **_: sent.append(params)  # noqa: E731
    client.meta.events.register("provide-client-params.sesv2.SendEmail", record)
    try:
        assert dispatcher_module.dispatcher.dispatch(customer_id, queued.id) == "sent"
    finally:
        client.meta.events.unregister("provide-client-params.sesv2.SendEmail", record)

    [params] = sent
    assert params["FromEmailAddress"] == EMAIL_FROM
    assert params["Destination"] == {"ToAddresses": [address]}
    mime = message_from_bytes(params["Content"]["Raw"]["Data"], policy=policy.default)
    assert mime["From"] == EMAIL_FROM
    assert mime["To"] == address
    assert mime["Subject"] == "Re: My order has not arrived"  # not "Re: Re:"
    assert mime["In-Reply-To"] == message_id
    assert mime["References"] == (
        f"<CAH+abc123@mail.gmail.com> <01000abc@email.amazonses.com> {message_id}"
    )
    assert mime.get_content().strip() == "Glad it arrived!"
    stored = store.get_message(customer_id, queued.id)
    assert stored.status.value == "sent"
    assert stored.provider == "ses" and stored.provider_message_id
