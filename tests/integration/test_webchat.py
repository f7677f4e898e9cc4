"""Web chat against moto: sessions, verification, socket frames, replies, continuity."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest

from threadline.channels.base import InboundMessage
from threadline.channels.webchat.sender import WebchatSender, continuation_job, continue_by_email
from threadline.channels.webchat.sessions import (
    VerificationRequired,
    WebchatSessions,
    parse_session_request,
)
from threadline.channels.webchat.settings import WebchatSettings
from threadline.channels.webchat.socket import WebchatSocket
from threadline.channels.webchat.tokens import sign_token, user_hash
from threadline.customers import CustomerStore
from threadline.errors import SignatureInvalid
from threadline.items import WEBCHAT_SESSION_SK, webchat_pk
from threadline.outbound import Dispatcher, DispatchOutcome, SendMessageRequest
from threadline.schema import Channel, Identity, IdentityKind, MessageStatus, TextPart, utc_now
from threadline.settings import StoreSettings
from threadline.store import KeptRaw, RawPayload

TOKEN_SECRET = "integration-token-secret-0123456789abcdef"
IDENTITY_SECRET = "integration-identity-secret-0123456789"


@pytest.fixture(scope="module")
def store(stack, aws, aws_env) -> CustomerStore:
    return CustomerStore(StoreSettings(table_name=aws.table, raw_bucket=aws.bucket))


def settings(**changes) -> WebchatSettings:
    defaults = {
        "allowed_origins": ("https://shop.example",),
        "socket_url": "wss://chat.example/dev",
        "rate_limit_per_minute": 20,
    }
    return WebchatSettings(**(defaults | changes))


def sessions(store, **changes) -> WebchatSessions:
    return WebchatSessions(
        store,
        settings(**changes),
        token_secret=lambda: TOKEN_SECRET,
        identity_secret=lambda: IDENTITY_SECRET,
    )


def socket(store, **changes) -> WebchatSocket:
    return WebchatSocket(store, settings(**changes), token_secret=lambda: TOKEN_SECRET)


def open_session(store, body: dict | None = None, **changes):
    return sessions(store, **changes).open(
        parse_session_request(json.dumps(body or {}).encode()), None
    )


def connect(sock, token: str, connection_id: str) -> dict:
    return sock.handle(
        {
            "requestContext": {
                "routeKey": "$connect",
                "eventType": "CONNECT",
                "connectionId": connection_id,
            },
            "queryStringParameters": {"token": token},
        }
    )


def frame(sock, connection_id: str, document: dict | str) -> dict:
    body = document if isinstance(document, str) else json.dumps(document)
    answer = sock.handle(
        {
            "requestContext": {
                "routeKey": "$default",
                "eventType": "MESSAGE",
                "connectionId": connection_id,
            },
            "body": body,
        }
    )
    assert answer["statusCode"] == 200  # nothing a client sends makes a 5xx
    return json.loads(answer["body"]) if answer.get("body") else {}


def send(sock, connection_id: str, client_id: str, text: str) -> dict:
    return frame(
        sock, connection_id, {"action": "send", "client_message_id": client_id, "text": text}
    )


def customer_of(store, visitor_id: str) -> str | None:
    return store.find_customer_id(Identity(kind=IdentityKind.WEBCHAT, value=visitor_id))


def email_from(store, address: str, text: str = "hello by mail") -> str:
    """An inbound e-mail, stored as the e-mail channel stores it."""
    inbound = InboundMessage(
        channel=Channel.EMAIL,
        provider="ses",
        provider_message_id=f"<{utc_now().timestamp()}.{address}>",
        sender=Identity(kind=IdentityKind.EMAIL, value=address),
        parts=[TextPart(text=text)],
    )
    raw = store.keep_raw(RawPayload(envelope=b"mail", provider="ses", body_sha256="0" * 64))
    assert isinstance(raw, KeptRaw)
    return store.ingest(inbound, raw).customer_id


def verified_visitor(store, name: str, connection_id: str):
    """A visitor verified by user_hash for a new address, connected: (address, session, socket)."""
    address = f"{name}.{utc_now().timestamp()}@example.com"
    granted = open_session(
        store, {"email": address, "user_hash": user_hash(IDENTITY_SECRET, address)}
    )
    sock = socket(store)
    connect(sock, granted.token, connection_id)
    return address, granted, sock


def test_a_visitor_connects_sends_and_a_resent_message_is_stored_once(store):
    granted = open_session(store, {"name": "Ada"})
    assert granted.websocket_url == "wss://chat.example/dev"
    sock = socket(store)
    assert connect(sock, granted.token, "conn-a1")["statusCode"] == 200

    ack = send(sock, "conn-a1", "c-1", "Do you ship to Portugal?")
    assert ack["type"] == "ack" and ack["client_message_id"] == "c-1"
    again = send(sock, "conn-a1", "c-1", "Do you ship to Portugal?")
    assert again["message_id"] == ack["message_id"]

    customer_id = customer_of(store, granted.visitor_id)
    page = store.timeline(customer_id)
    assert [m.text for m in page.items] == ["Do you ship to Portugal?"]
    history = frame(sock, "conn-a1", {"action": "history"})
    assert [m["id"] for m in history["messages"]] == [ack["message_id"]]


def test_forged_and_expired_tokens_cannot_connect(store):
    granted = open_session(store)
    sock = socket(store)
    forged, _ = sign_token(
        "not-our-key", granted.visitor_id, verified=True, now=utc_now(), ttl_seconds=60
    )
    expired, _ = sign_token(
        TOKEN_SECRET,
        granted.visitor_id,
        verified=False,
        now=utc_now() - timedelta(hours=2),
        ttl_seconds=60,
    )
    assert connect(sock, forged, "conn-forged")["statusCode"] == 403
    assert connect(sock, expired, "conn-expired")["statusCode"] == 403
    assert connect(sock, "", "conn-none")["statusCode"] == 403
    # Refused connections leave nothing to send frames on.
    assert frame(sock, "conn-forged", {"action": "history"})["code"] == "not_connected"


def test_a_socket_gets_nothing_of_another_visitor(store):
    alice, eve = open_session(store), open_session(store)
    sock = socket(store)
    connect(sock, alice.token, "conn-alice")
    connect(sock, eve.token, "conn-eve")
    send(sock, "conn-alice", "c-1", "my order number is 1234")
    alice_customer = customer_of(store, alice.visitor_id)
    reply, _ = store.queue_message(
        alice_customer, SendMessageRequest(text="found it", channel=Channel.WEBCHAT)
    )
    # Eve names Alice's message: not hers, so not found (and not marked read).
    assert (
        frame(sock, "conn-eve", {"action": "read", "message_id": reply.id})["code"] == "not_found"
    )
    assert store.get_message(alice_customer, reply.id).status is MessageStatus.QUEUED
    assert frame(sock, "conn-eve", {"action": "history"})["messages"] == []
    # A frame that names Alice's visitor id changes nothing: the socket's session decides.
    answer = frame(
        sock,
        "conn-eve",
        {
            "action": "send",
            "client_message_id": "c-9",
            "text": "hi",
            "visitor_id": alice.visitor_id,
        },
    )
    assert customer_of(store, eve.visitor_id) != alice_customer
    assert answer["type"] == "ack"


def test_oversized_frames_and_fast_senders_get_error_frames(store):
    granted = open_session(store)
    sock = socket(store, rate_limit_per_minute=3)
    connect(sock, granted.token, "conn-fast")
    big = frame(
        sock, "conn-fast", {"action": "send", "client_message_id": "c", "text": "x" * 40000}
    )
    assert big["code"] == "frame_too_large"
    codes = [send(sock, "conn-fast", f"c-{i}", "spam").get("code") for i in range(3)]
    assert codes == [None, None, "rate_limited"]


def test_a_verified_visitor_joins_the_customer_who_owns_the_email(store):
    address = f"ada.{utc_now().timestamp()}@example.com"
    mail_customer = email_from(store, address)
    granted = open_session(
        store, {"email": address, "user_hash": user_hash(IDENTITY_SECRET, address)}
    )
    assert customer_of(store, granted.visitor_id) == mail_customer
    sock = socket(store)
    connect(sock, granted.token, "conn-verified")
    send(sock, "conn-verified", "c-1", "following up on my e-mail")
    channels = {m.channel for m in store.timeline(mail_customer).items}
    assert channels == {Channel.EMAIL, Channel.WEBCHAT}
    # A reply can go out on either channel.
    for channel in (Channel.EMAIL, Channel.WEBCHAT):
        queued, _ = store.queue_message(
            mail_customer, SendMessageRequest(text="hi", channel=channel)
        )
        assert queued.channel is channel


def test_a_verified_visitor_first_then_an_email_lands_on_one_customer(store):
    address, granted, sock = verified_visitor(store, "bea", "conn-bea")
    send(sock, "conn-bea", "c-1", "hello from the site")
    chat_customer = customer_of(store, granted.visitor_id)
    assert email_from(store, address) == chat_customer


def test_an_unverified_claim_never_links(store):
    address = f"cy.{utc_now().timestamp()}@example.com"
    mail_customer = email_from(store, address)
    granted = open_session(store, {"email": address})  # no user_hash
    sock = socket(store)
    connect(sock, granted.token, "conn-claim")
    send(sock, "conn-claim", "c-1", "I am Cy, honest")
    visitor_customer = customer_of(store, granted.visitor_id)
    assert visitor_customer != mail_customer
    identities = store.get_customer(visitor_customer).identities
    assert all(i.kind is IdentityKind.WEBCHAT for i in identities)
    session = store.get_item(webchat_pk(granted.visitor_id), WEBCHAT_SESSION_SK)
    assert session["claimed_email"] == address and session["verified"] is False


def test_a_forged_user_hash_is_refused(store):
    with pytest.raises(SignatureInvalid):
        open_session(
            store, {"email": "dee@example.com", "user_hash": user_hash("guess", "dee@example.com")}
        )


def test_required_verification_refuses_unverified_sessions_and_sockets(store):
    with pytest.raises(VerificationRequired):
        open_session(store, {"email": "eve@example.com"}, require_verification=True)
    anonymous = open_session(store)
    assert (
        connect(socket(store, require_verification=True), anonymous.token, "c-req")["statusCode"]
        == 403
    )


def test_a_returning_visitor_keeps_its_id_only_with_its_token(store):
    first = open_session(store)
    again = sessions(store).open(
        parse_session_request(json.dumps({"visitor_id": first.visitor_id}).encode()), first.token
    )
    assert again.visitor_id == first.visitor_id
    stranger = open_session(store, {"visitor_id": first.visitor_id})
    assert stranger.visitor_id != first.visitor_id


def _management(stack):
    return boto3.client("apigatewaymanagementapi", endpoint_url=stack.endpoint_url)


def _pushed(stack, connection_id: str) -> bytes:
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends[stack.aws.account_id][stack.aws.region]
    return backend.connections[connection_id].data


def test_a_reply_is_pushed_to_the_open_socket_and_marked_delivered_then_read(stack, store):
    granted = open_session(store)
    sock = socket(store)
    connect(sock, granted.token, "conn-push-1")
    send(sock, "conn-push-1", "c-1", "anyone there?")
    customer_id = customer_of(store, granted.visitor_id)
    sender = WebchatSender(store, settings(), management=lambda: _management(stack))
    reply, _ = store.queue_message(customer_id, SendMessageRequest(text="<b>yes</b>"))
    assert reply.channel is Channel.WEBCHAT  # the customer's latest channel
    outcome = Dispatcher(store, {Channel.WEBCHAT: sender}).dispatch(customer_id, reply.id)
    assert outcome is DispatchOutcome.SENT
    pushed = json.loads(_pushed(stack, "conn-push-1"))
    assert pushed["type"] == "message" and pushed["message"]["id"] == reply.id
    assert pushed["message"]["parts"] == [{"type": "text", "text": "<b>yes</b>"}]
    stored = store.get_message(customer_id, reply.id)
    assert [c.status for c in stored.status_history] == [
        MessageStatus.QUEUED,
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
    ]
    frame(sock, "conn-push-1", {"action": "read", "message_id": reply.id})
    assert store.get_message(customer_id, reply.id).status is MessageStatus.READ


def test_an_offline_verified_visitor_gets_the_reply_by_email_after_the_delay(stack, store):
    address, granted, sock = verified_visitor(store, "dan", "conn-dan")
    send(sock, "conn-dan", "c-1", "call me back")
    sock.handle({"requestContext": {"routeKey": "$disconnect", "connectionId": "conn-dan"}})
    customer_id = customer_of(store, granted.visitor_id)

    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"continuity-{granted.visitor_id[-8:]}")["QueueUrl"]
    sender = WebchatSender(
        store,
        settings(continuity_queue_url=queue_url, email_delay_seconds=0),
        management=lambda: _management(stack),
        sqs=lambda: sqs,
    )
    reply, _ = store.queue_message(customer_id, SendMessageRequest(text="we called"))
    Dispatcher(store, {Channel.WEBCHAT: sender}).dispatch(customer_id, reply.id)
    assert store.get_message(customer_id, reply.id).status is MessageStatus.SENT  # waits

    jobs = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    assert continuation_job(jobs[0]["Body"]) == (customer_id, reply.id)
    email_id = continue_by_email(store, customer_id, reply.id)
    assert email_id is not None
    email = store.get_message(customer_id, email_id)
    assert email.channel is Channel.EMAIL and email.recipient.value == address
    assert email.text.startswith("we called") and "e-mail" in email.text
    # A redelivered job queues it once.
    assert continue_by_email(store, customer_id, reply.id) == email_id


def test_an_anonymous_offline_visitor_is_not_emailed(store):
    granted = open_session(store, {"email": "claimed@example.com"})
    sock = socket(store)
    connect(sock, granted.token, "conn-anon")
    send(sock, "conn-anon", "c-1", "hi")
    customer_id = customer_of(store, granted.visitor_id)
    reply, _ = store.queue_message(customer_id, SendMessageRequest(text="hello"))
    assert continue_by_email(store, customer_id, reply.id) is None


def test_a_reply_seen_before_the_delay_is_not_emailed(store):
    _, granted, sock = verified_visitor(store, "eli", "conn-eli")
    send(sock, "conn-eli", "c-1", "hi")
    customer_id = customer_of(store, granted.visitor_id)
    reply, _ = store.queue_message(customer_id, SendMessageRequest(text="hello"))
    frame(sock, "conn-eli", {"action": "read", "message_id": reply.id})
    assert continue_by_email(store, customer_id, reply.id) is None
