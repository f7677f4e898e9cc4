"""Web chat: session tokens, user_hash verification and client frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.channels.webchat.sessions import (
    SessionRequest,
    parse_session_request,
    verified_subject,
)
from threadline.channels.webchat.settings import MAX_FRAME_BYTES
from threadline.channels.webchat.socket import (
    FrameError,
    HistoryFrame,
    ReadFrame,
    SendFrame,
    parse_frame,
    public_message,
)
from threadline.channels.webchat.tokens import (
    InvalidToken,
    read_token,
    sign_token,
    user_hash,
    user_hash_matches,
)
from threadline.errors import MalformedRequest, SignatureInvalid
from threadline.schema import Identity

SECRET = "token-signing-key-for-tests-0123456789"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
VISITOR = "v_visitor000001"


# ---------------------------------------------------------------- tokens


def test_a_token_names_its_visitor_until_it_expires():
    token, expires = sign_token(SECRET, VISITOR, verified=True, now=NOW, ttl_seconds=3600)
    claims = read_token(SECRET, token, now=NOW + timedelta(minutes=59))
    assert claims.visitor_id == VISITOR
    assert claims.verified is True
    assert claims.expires_at == expires == NOW + timedelta(hours=1)


def test_an_expired_token_is_refused_unless_within_the_grace_given():
    token, _ = sign_token(SECRET, VISITOR, verified=False, now=NOW, ttl_seconds=60)
    later = NOW + timedelta(minutes=2)
    with pytest.raises(InvalidToken) as refused:
        read_token(SECRET, token, now=later)
    assert refused.value.code == "token_expired"
    assert read_token(SECRET, token, now=later, grace=timedelta(days=1)).visitor_id == VISITOR


def test_a_token_signed_with_another_key_is_refused():
    token, _ = sign_token("another-key", VISITOR, verified=False, now=NOW, ttl_seconds=60)
    with pytest.raises(InvalidToken):
        read_token(SECRET, token, now=NOW)


def test_a_token_whose_payload_was_changed_is_refused():
    token, _ = sign_token(SECRET, VISITOR, verified=False, now=NOW, ttl_seconds=60)
    _, _, signature = token.partition(".")
    other, _ = sign_token(SECRET, "v_someone_else", verified=True, now=NOW, ttl_seconds=60)
    with pytest.raises(InvalidToken):
        read_token(SECRET, other.partition(".")[0] + "." + signature, now=NOW)


@given(st.text(max_size=600))
def test_any_string_is_a_valid_token_or_invalid_token(text):
    try:
        claims = read_token(SECRET, text, now=NOW)
    except InvalidToken:
        return
    assert claims.visitor_id  # only a token we signed gets here


def test_the_token_carries_no_personal_data():
    token, _ = sign_token(SECRET, VISITOR, verified=True, now=NOW, ttl_seconds=60)
    import base64

    payload = token.partition(".")[0]
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(document) == {"sub", "exp", "ver"}


# ---------------------------------------------------------------- user_hash


def test_user_hash_is_hmac_sha256_in_hex():
    # RFC 4231, test case 2.
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert user_hash("Jefe", "what do ya want for nothing?") == expected
    assert user_hash_matches("Jefe", "what do ya want for nothing?", expected.upper())
    assert not user_hash_matches("Jefe", "what do ya want for something?", expected)


def test_a_valid_hash_verifies_the_email_it_was_made_for():
    request = SessionRequest(email="Ada@Example.com", user_hash=user_hash("k", "ada@example.com"))
    assert verified_subject(request, lambda: "k") == ("email", "ada@example.com")


def test_a_hash_for_another_email_is_refused():
    request = SessionRequest(email="eve@example.com", user_hash=user_hash("k", "ada@example.com"))
    with pytest.raises(SignatureInvalid):
        verified_subject(request, lambda: "k")


def test_the_external_id_is_verified_when_there_is_no_email():
    request = SessionRequest(external_id="crm:42", user_hash=user_hash("k", "crm:42"))
    assert verified_subject(request, lambda: "k") == ("external_id", "crm:42")


def test_no_hash_is_an_anonymous_visitor_whatever_it_claims():
    assert verified_subject(SessionRequest(email="ada@example.com"), lambda: "k") is None


def test_a_hash_with_nothing_to_verify_is_malformed():
    with pytest.raises(MalformedRequest):
        verified_subject(SessionRequest(user_hash="a" * 64), lambda: "k")


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"not json",
        b'{"email": "not an address"}',
        b'{"visitor_id": "../../etc"}',
        b'{"user_hash": "xyz"}',
        b'{"unknown": 1}',
        b'{"name": "' + b"x" * 5000 + b'"}',
    ],
)
def test_malformed_session_requests_are_400(body):
    with pytest.raises(MalformedRequest):
        parse_session_request(body)


def test_an_empty_session_request_is_an_anonymous_visitor():
    assert parse_session_request(b"") == SessionRequest()


# ---------------------------------------------------------------- frames


def test_a_send_frame():
    frame = parse_frame('{"action":"send","client_message_id":"c-1","text":"Hi"}')
    assert frame == SendFrame(client_message_id="c-1", text="Hi")


def test_read_and_history_frames():
    assert parse_frame('{"action":"read","message_id":"01ABC"}') == ReadFrame("01ABC")
    assert parse_frame('{"action":"history"}') == HistoryFrame()
    assert parse_frame('{"action":"history","before":"abc"}') == HistoryFrame("abc")


def test_a_frame_over_32_kb_is_refused_before_it_is_parsed():
    text = "x" * MAX_FRAME_BYTES
    with pytest.raises(FrameError) as refused:
        parse_frame(json.dumps({"action": "send", "client_message_id": "c", "text": text}))
    assert refused.value.code == "frame_too_large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", "malformed_frame"),
        ("[1]", "malformed_frame"),
        ('{"action":"send","client_message_id":"c"}', "malformed_frame"),
        ('{"action":"send","client_message_id":"c","text":"   "}', "malformed_frame"),
        ('{"action":"send","client_message_id":"a b","text":"x"}', "malformed_frame"),
        ('{"action":"send","client_message_id":"c","text":"' + "x" * 4097 + '"}', "text_too_long"),
        ('{"action":"read"}', "malformed_frame"),
        ('{"action":"delete"}', "unknown_action"),
    ],
)
def test_bad_frames_get_their_error_code(body, code):
    with pytest.raises(FrameError) as refused:
        parse_frame(body)
    assert refused.value.code == code


@given(st.binary(max_size=2048) | st.text(max_size=2048))
def test_any_input_is_a_frame_or_a_frame_error(body):
    try:
        parse_frame(body)
    except FrameError as error:
        assert error.status == 400


@given(
    st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
    st.text(min_size=1, max_size=4096).filter(str.strip),
)
def test_send_frames_carry_the_text_exactly(client_id, text):
    body = json.dumps({"action": "send", "client_message_id": client_id, "text": text})
    if len(body.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        return
    assert parse_frame(body) == SendFrame(client_message_id=client_id, text=text)


def test_the_browser_sees_no_internal_fields():
    from threadline.schema import Channel, Direction, Message, MessageStatus, TextPart

    message = Message(
        id="01ABC",
        customer_id="c1",
        conversation_id="conv",
        channel=Channel.WEBCHAT,
        direction=Direction.OUTBOUND,
        provider="webchat",
        provider_message_id="v:01ABC",
        author_role="agent",
        author_id="agent-7",
        recipient=Identity(kind="webchat", value=VISITOR),
        received_at=NOW,
        parts=[TextPart(text="<img src=x onerror=alert(1)>")],
        status=MessageStatus.QUEUED,
        channel_data={"purpose": "transactional"},
    )
    shown = public_message(message)
    assert shown["parts"] == [{"type": "text", "text": "<img src=x onerror=alert(1)>"}]
    for internal in ("customer_id", "author_id", "channel_data", "raw", "provider_message_id"):
        assert internal not in shown


def test_webchat_identities_are_visitor_ids():
    assert str(Identity(kind="webchat", value=VISITOR)) == f"webchat:{VISITOR}"
    with pytest.raises(ValueError):
        Identity(kind="webchat", value="has spaces in it")
