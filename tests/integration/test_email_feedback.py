"""SES feedback and e-mail threading against moto server: a reply sent through the
embedded SES, SES's notification delivered to the feedback handler as SNS invokes
it, the timeline and the next reply read back; replies threaded by their ids."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from typing import Any

import boto3
import pytest

from tests.conftest import load_handler_module
from tests.integration.conftest import EMAIL_FROM, LambdaContext
from tests.integration.test_email_inbound import deliver, mail_from
from tests.unit import email_messages as em
from tests.unit import ses_feedback_payloads as sf
from threadline.schema import Identity, utc_now


@pytest.fixture(scope="module")
def email_module(function_env, aws_env):
    from threadline.settings import store_settings

    store_settings.cache_clear()
    os.environ.update(function_env("EmailInboundFunction"))
    module = load_handler_module("functions/email_inbound")
    store_settings.cache_clear()
    return module


@pytest.fixture(scope="module")
def feedback_module(function_env, aws_env):
    from threadline.settings import store_settings

    store_settings.cache_clear()
    os.environ.update(function_env("EmailFeedbackFunction"))
    module = load_handler_module("functions/email_feedback")
    store_settings.cache_clear()
    return module


@pytest.fixture(scope="module", autouse=True)
def _settings_not_shared_with_later_modules():
    yield
    from threadline.settings import store_settings

    store_settings.cache_clear()


@pytest.fixture(scope="module")
def mail_bucket(stack) -> str:
    return stack.physical_id("InboundMailBucket")


class SesCalls:
    """Every SendEmail the dispatcher's SES client makes (they still reach moto)."""

    def __init__(self, dispatcher_module) -> None:
        self.client = dispatcher_module.dispatcher.sender_for(_email()).client
        self.calls: list[dict[str, Any]] = []

    def __enter__(self) -> SesCalls:
        self.client.meta.events.register("provide-client-params.sesv2.SendEmail", self._record)
        return self

    def __exit__(self, *_: Any) -> None:
        self.client.meta.events.unregister("provide-client-params.sesv2.SendEmail", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(params)


def _email():
    from threadline.schema import Channel

    return Channel.EMAIL


def customer_writes(email_module, mail_bucket, address: str) -> str:
    """A mail from ``address`` (a new customer); their customer id."""
    message_id = f"<{secrets.token_hex(6)}@mail.gmail.com>"
    raw = em.GMAIL_REPLY.replace(b"ada@example.com", address.encode()).replace(
        b"<CAH+reply2@mail.gmail.com>", message_id.encode()
    )
    assert deliver(email_module, mail_bucket, raw)["filed"] == 1
    customer_id = email_module.store.find_customer_id(Identity.parse(f"email:{address}"))
    assert customer_id is not None
    return str(customer_id)


def send_reply(dispatcher_module, customer_id: str, text: str = "It ships today.") -> Any:
    from threadline.outbound import SendMessageRequest

    store = dispatcher_module.dispatcher.store
    queued, _ = store.queue_message(customer_id, SendMessageRequest(text=text, channel="email"))
    assert dispatcher_module.dispatcher.dispatch(customer_id, queued.id) == "sent"
    return store.get_message(customer_id, queued.id)


def feedback(feedback_module, *notifications: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = feedback_module.lambda_handler(
        sf.sns_event(*notifications), LambdaContext()
    )
    return result


@pytest.fixture(scope="module", autouse=True)
def _verified_sender(stack, aws_env):
    boto3.client("ses").verify_email_identity(EmailAddress=EMAIL_FROM)


def test_a_permanent_bounce_fails_the_reply_marks_the_address_and_stops_the_next(
    email_module, mail_bucket, dispatcher_module, feedback_module, aws
):
    from threadline.outbound import EmailBlocked, SendMessageRequest

    address = f"gone.{secrets.token_hex(3)}@example.com"
    customer_id = customer_writes(email_module, mail_bucket, address)
    sent = send_reply(dispatcher_module, customer_id)
    store = dispatcher_module.dispatcher.store
    # Queued before the bounce arrives: the dispatcher must refuse it afterwards.
    waiting, _ = store.queue_message(customer_id, SendMessageRequest(text="Anything else?"))

    bounce = sf.bounce(sent.provider_message_id, address)
    assert feedback(feedback_module, bounce) == {"applied": ["Bounce"]}

    failed = store.get_message(customer_id, sent.id)
    assert failed.status.value == "failed"
    last = failed.status_history[-1]
    assert last.error_code == "email_bounced_permanent"
    assert "550 5.1.1 user unknown" in (last.error_message or "")
    identity = store.get_item(f"IDENT#email#{address}", "IDENT", consistent=True)
    evidence = identity["email_undeliverable"]
    assert evidence["ses_message_id"] == sent.provider_message_id
    assert (evidence["bounce_type"], evidence["bounce_subtype"]) == ("Permanent", "General")
    assert evidence["diagnostic_code"] == "smtp; 550 5.1.1 user unknown"
    assert evidence["at"] == "2026-11-23T10:41:02.669000+00:00"

    # SNS delivers at least once: the same notification again changes nothing.
    feedback(feedback_module, bounce)
    assert store.get_message(customer_id, sent.id).status_history == failed.status_history
    again = store.get_item(f"IDENT#email#{address}", "IDENT", consistent=True)
    assert again["email_undeliverable"] == evidence

    with SesCalls(dispatcher_module) as ses:
        assert dispatcher_module.dispatcher.dispatch(customer_id, waiting.id) == "failed"
    assert ses.calls == []
    refused = store.get_message(customer_id, waiting.id)
    assert refused.status_history[-1].error_code == "email_undeliverable"

    with pytest.raises(EmailBlocked) as raised:
        store.queue_message(customer_id, SendMessageRequest(text="Hello?", channel="email"))
    assert (raised.value.status, raised.value.code) == (409, "email_undeliverable")


def test_a_transient_bounce_fails_the_reply_but_not_the_address(
    email_module, mail_bucket, dispatcher_module, feedback_module
):
    address = f"full.{secrets.token_hex(3)}@example.com"
    customer_id = customer_writes(email_module, mail_bucket, address)
    sent = send_reply(dispatcher_module, customer_id)
    notification = sf.bounce(
        sent.provider_message_id, address, bounce_type="Transient", subtype="MailboxFull"
    )
    feedback(feedback_module, notification)
    store = dispatcher_module.dispatcher.store
    failed = store.get_message(customer_id, sent.id)
    assert failed.status_history[-1].error_code == "email_bounced_transient"
    identity = store.get_item(f"IDENT#email#{address}", "IDENT", consistent=True)
    assert "email_undeliverable" not in identity
    assert send_reply(dispatcher_module, customer_id).status.value == "sent"


def test_a_complaint_stops_email_with_its_own_code(
    email_module, mail_bucket, dispatcher_module, feedback_module, api_module
):
    import json

    from tests.integration.conftest import http_api_event

    address = f"angry.{secrets.token_hex(3)}@example.com"
    customer_id = customer_writes(email_module, mail_bucket, address)
    sent = send_reply(dispatcher_module, customer_id)
    feedback(feedback_module, sf.complaint(sent.provider_message_id, address))
    store = dispatcher_module.dispatcher.store
    identity = store.get_item(f"IDENT#email#{address}", "IDENT", consistent=True)
    assert identity["email_complaint"]["complaint_feedback_type"] == "abuse"
    assert identity["email_complaint"]["ses_message_id"] == sent.provider_message_id
    # A complaint is no failure of the mail: the message keeps its status.
    assert store.get_message(customer_id, sent.id).status.value == "sent"

    body = json.dumps({"text": "Sorry!", "channel": "email"})
    event = http_api_event(
        "POST",
        f"/v1/customers/{customer_id}/messages",
        body=body.encode(),
        headers={"content-type": "application/json"},
    )
    event.update(isBase64Encoded=False, body=body, routeKey="ANY /v1/{proxy+}")
    answer = api_module.lambda_handler(event, LambdaContext())
    assert answer["statusCode"] == 409
    assert json.loads(answer["body"])["error"]["code"] == "email_complained"


def test_delivery_moves_a_reply_on_and_a_late_bounce_does_not_move_it_back(
    email_module, mail_bucket, dispatcher_module, feedback_module
):
    address = f"fine.{secrets.token_hex(3)}@example.com"
    customer_id = customer_writes(email_module, mail_bucket, address)
    sent = send_reply(dispatcher_module, customer_id)
    feedback(feedback_module, sf.delivery(sent.provider_message_id, address))
    store = dispatcher_module.dispatcher.store
    assert store.get_message(customer_id, sent.id).status.value == "delivered"
    feedback(feedback_module, sf.bounce(sent.provider_message_id, address))
    assert store.get_message(customer_id, sent.id).status.value == "delivered"


def test_feedback_about_unknown_mail_and_addresses_changes_nothing(feedback_module):
    stranger = f"nobody.{secrets.token_hex(3)}@example.com"
    unknown = sf.bounce("0100unknown-" + secrets.token_hex(6), stranger)
    assert feedback(feedback_module, unknown, sf.send_event()) == {"applied": ["Bounce"]}
    assert feedback_module.store.find_customer_id(Identity.parse(f"email:{stranger}")) is None


# --------------------------------------------------------------------- threading


def _reply_mail(address: str, message_id: str, in_reply_to: str, references: str) -> bytes:
    return (
        f"From: {address}\r\nTo: {EMAIL_FROM}\r\nSubject: Re: My order\r\n"
        f"Message-ID: {message_id}\r\nIn-Reply-To: {in_reply_to}\r\n"
        f"References: {references}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Thanks, that works.\r\n\r\nOn Mon, 23 Nov 2026 at 10:00, Support wrote:\r\n> It ships\r\n"
    ).encode()


def _ingest_at(email_module, address: str, days_ago: float) -> Any:
    """A mail from ``address`` filed ``days_ago``: conversations split on quiet days."""
    from threadline.channels.email.inbound import parse_email
    from threadline.email_inbound import MAIL_CONTENT_TYPE
    from threadline.schema import RawPayloadRef
    from threadline.store import KeptRaw

    message_id = f"<{secrets.token_hex(6)}@mail.example.com>"
    body = mail_from(address, message_id)
    parsed = parse_email(body)
    ref = RawPayloadRef(
        location="inline", content_type=MAIL_CONTENT_TYPE, size=len(body), sha256="0" * 64
    )
    raw = KeptRaw(ref, inline=body.decode())
    result = email_module.store.ingest(
        parsed.message, raw, received_at=utc_now() - timedelta(days=days_ago)
    )
    stored = email_module.store.get_message(result.customer_id, result.message_id)
    return stored, message_id


def test_a_reply_naming_an_older_mail_points_at_it_from_the_current_conversation(
    email_module, mail_bucket, aws
):
    address = f"thread.{secrets.token_hex(3)}@example.com"
    first, first_id = _ingest_at(email_module, address, 3)
    second, _ = _ingest_at(email_module, address, 2)
    assert first.conversation_id != second.conversation_id

    calls: list[str] = []
    record = lambda model, **_: calls.append(model.name)  # noqa: E731
    client = email_module.store.dynamodb
    client.meta.events.register("before-call.*.*", record)
    try:
        raw = _reply_mail(address, f"<{secrets.token_hex(6)}@x.example>", first_id, first_id)
        assert deliver(email_module, mail_bucket, raw)["filed"] == 1
    finally:
        client.meta.events.unregister("before-call.*.*", record)
    # One lookup for the thread, one identity read, one transaction; the message opens
    # a conversation, so one Query reads the previous one (a repeat contact?).
    assert calls == ["BatchGetItem", "GetItem", "TransactWriteItems", "Query"]

    newest = email_module.store.timeline(first.customer_id).items[0]
    # Conversations end after the quiet period: a reply to a mail from days ago
    # opens a new one, and names the message it answers.
    assert newest.conversation_id not in {first.conversation_id, second.conversation_id}
    assert newest.in_reply_to == first.id
    assert newest.channel_data["in_reply_to"] == first_id


def test_a_reply_to_our_reply_threads_by_sess_message_id_or_ours(
    email_module, mail_bucket, dispatcher_module
):
    from email import message_from_bytes, policy

    address = f"ours.{secrets.token_hex(3)}@example.com"
    customer_id = customer_writes(email_module, mail_bucket, address)
    with SesCalls(dispatcher_module) as ses:
        sent = send_reply(dispatcher_module, customer_id)
    [params] = ses.calls
    assert params["ConfigurationSetName"]  # SES publishes this mail's feedback
    mime = message_from_bytes(params["Content"]["Raw"]["Data"], policy=policy.default)
    our_id = mime["Message-ID"]
    assert our_id.endswith("@threadline.example>")
    store = dispatcher_module.dispatcher.store

    # SES rewrites Message-ID to <MessageId@<region>.amazonses.com>: the derived id works.
    ses_style = f"<{sent.provider_message_id}@eu-west-1.amazonses.com>"
    raw = _reply_mail(address, f"<{secrets.token_hex(6)}@x.example>", ses_style, ses_style)
    deliver(email_module, mail_bucket, raw)
    newest = store.timeline(customer_id).items[0]
    assert newest.direction.value == "inbound"
    assert (newest.in_reply_to, newest.conversation_id) == (sent.id, sent.conversation_id)

    # So does the Message-ID our sender wrote (relays that keep it, the local stack),
    # found through References when In-Reply-To names nothing we know.
    unknown = f"<{secrets.token_hex(6)}@elsewhere.example>"
    raw = _reply_mail(
        address, f"<{secrets.token_hex(6)}@x.example>", unknown, f"{our_id} {unknown}"
    )
    deliver(email_module, mail_bucket, raw)
    newest = store.timeline(customer_id).items[0]
    assert (newest.in_reply_to, newest.conversation_id) == (sent.id, sent.conversation_id)


def test_unknown_references_fall_back_to_the_current_conversation(email_module, mail_bucket):
    address = f"lost.{secrets.token_hex(3)}@example.com"
    customer_id = customer_writes(email_module, mail_bucket, address)
    current = email_module.store.timeline(customer_id).items[0]
    unknown = f"<{secrets.token_hex(6)}@elsewhere.example>"
    raw = _reply_mail(address, f"<{secrets.token_hex(6)}@x.example>", unknown, unknown)
    deliver(email_module, mail_bucket, raw)
    newest = email_module.store.timeline(customer_id).items[0]
    assert newest.id != current.id
    assert newest.conversation_id == current.conversation_id
    assert newest.in_reply_to == unknown
