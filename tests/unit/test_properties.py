"""Properties that hold for any input, not just the documented examples."""

from __future__ import annotations

import base64
import json

import phonenumbers
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.webhook_events import (
    AUTH_TOKEN,
    RecordingStore,
    http_api_event,
    sign,
    signed_event,
    url_for,
)
from threadline.channels.twilio.messaging import TwilioMessaging, normalize_form
from threadline.errors import MalformedRequest
from threadline.identity import canonical_phone
from threadline.logs import REDACTED, redact
from threadline.schema import Identity, IdentityKind
from threadline.settings import webhook_settings
from threadline.store import decode_cursor, encode_cursor
from threadline.webhook import handle_webhook

CHANNEL = TwilioMessaging(auth_token=lambda: AUTH_TOKEN)


@pytest.fixture(autouse=True, scope="module")
def no_public_base_url():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PUBLIC_BASE_URL", raising=False)
        webhook_settings.cache_clear()
        yield
    webhook_settings.cache_clear()


# ---------------------------------------------------------------- strategies

REGIONS = sorted(
    r
    for r in phonenumbers.SUPPORTED_REGIONS
    if phonenumbers.example_number_for_type(r, phonenumbers.PhoneNumberType.MOBILE)
)


@st.composite
def phone_numbers(draw) -> phonenumbers.PhoneNumber:
    region = draw(st.sampled_from(REGIONS))
    return phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)


def e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


TWILIO_KEYS = [
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "MediaUrl0",
    "MediaContentType0",
    "MediaUrl1",
    "ProfileName",
    "WaId",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "ButtonText",
    "ButtonPayload",
    "OriginalRepliedMessageSid",
    "MessageType",
    "FromCity",
]
short_text = st.text(max_size=40)
sids = st.one_of(
    st.builds(lambda n: f"SM{n:032x}", st.integers(min_value=0, max_value=2**128 - 1)),
    st.text(max_size=64),
)
addresses = st.one_of(
    phone_numbers().map(e164),
    phone_numbers().map(lambda n: "whatsapp:" + e164(n)),
    short_text,
)
twilio_values = {
    "MessageSid": sids,
    "From": addresses,
    "To": addresses,
    "NumMedia": st.one_of(st.sampled_from(["0", "1", "2", "10", "11", "-1", "x", ""]), short_text),
    "MediaUrl0": st.one_of(st.just("https://api.twilio.com/2010-04-01/x/Media/ME1"), short_text),
    "Latitude": st.one_of(st.floats(allow_nan=True).map(str), short_text),
    "Longitude": st.one_of(st.floats(allow_nan=True).map(str), short_text),
}
extra_params = st.dictionaries(
    st.one_of(st.sampled_from(TWILIO_KEYS), short_text), st.text(max_size=80), max_size=6
)
# Anything at all under Twilio-like and random keys: mostly refused as malformed.
random_forms = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries({}, optional=twilio_values),
    extra_params,
)
# A real message (a SID and a phone sender) with arbitrary other parameters: mostly stored.
message_forms = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {
            "MessageSid": sids.filter(bool),
            "From": st.one_of(
                phone_numbers().map(e164), phone_numbers().map(lambda n: "whatsapp:" + e164(n))
            ),
        },
        optional={"Body": st.text(max_size=200), "To": addresses, "ProfileName": short_text},
    ),
    extra_params,
)
forms = st.one_of(random_forms, message_forms)


# ---------------------------------------------------------------- webhook answers


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(form=forms)
def test_correctly_signed_form_is_answered_200_or_400_never_500(form):
    store = RecordingStore()
    response = handle_webhook(signed_event(form), CHANNEL, store)
    event(f"status {response['statusCode']}")
    assert response["statusCode"] in (200, 400)
    stored = 1 if response["statusCode"] == 200 else 0
    assert len(store.ingested) == stored
    assert len(store.raws) == stored


@settings(max_examples=300)
@given(
    body=st.binary(max_size=300),
    signature=st.one_of(st.none(), st.text(max_size=40), st.just(sign(url_for(), {}))),
    as_base64=st.booleans(),
)
def test_arbitrary_bytes_are_answered_400_or_403(body, signature, as_base64):
    if not as_base64:
        body = body.decode("latin-1").encode("utf-8")
    event = http_api_event(body, signature=signature, base64_encoded=as_base64)
    store = RecordingStore()
    assert handle_webhook(event, CHANNEL, store)["statusCode"] in (400, 403)
    assert store.calls == []


@settings(max_examples=200)
@given(body=st.text(max_size=200))
def test_arbitrary_event_body_that_is_not_base64_is_400_or_403(body):
    event = http_api_event("", signature="x")
    event["body"] = body
    assert handle_webhook(event, CHANNEL, RecordingStore())["statusCode"] in (400, 403)


# ---------------------------------------------------------------- identities


@given(st.one_of(st.text(), st.from_regex(r"\A\+?[0-9 ()\-.]{3,20}\Z")))
def test_canonical_phone_is_idempotent_or_refuses_with_value_error(text):
    try:
        once = canonical_phone(text)
    except ValueError:
        return
    assert canonical_phone(once) == once
    assert once.startswith("+") and once[1:].isascii() and once[1:].isdigit()


@given(phone_numbers(), st.data())
def test_formatting_and_whatsapp_variants_of_one_number_are_one_identity(number, data):
    canonical = e164(number)
    digits = canonical.removeprefix("+")
    variant = data.draw(
        st.sampled_from(
            [
                canonical,
                "whatsapp:" + canonical,
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.RFC3966)
                .removeprefix("tel:")
                .split(";")[0],
                digits,
                "00" + digits,
                f"  {canonical}  ",
            ]
        )
    )
    form = {"MessageSid": "SM" + "0" * 32, "From": variant, "Body": "hi"}
    assert normalize_form(form).sender == Identity(kind=IdentityKind.PHONE, value=canonical)


slack_ids = st.from_regex(r"\A[A-Za-z0-9]{1,12}:[A-Za-z0-9]{1,12}\Z")
telegram_ids = st.integers(min_value=1, max_value=2**52).map(str)
emails = st.emails().filter(lambda e: len(e) <= 320)
identity_inputs = st.one_of(
    st.tuples(st.just(IdentityKind.PHONE), phone_numbers().map(e164)),
    st.tuples(st.just(IdentityKind.EMAIL), emails),
    st.tuples(st.just(IdentityKind.SLACK), slack_ids),
    st.tuples(st.just(IdentityKind.TELEGRAM), telegram_ids),
    st.tuples(
        st.sampled_from([IdentityKind.MESSENGER, IdentityKind.INSTAGRAM]),
        st.from_regex(r"\A[0-9]{1,20}\Z"),
    ),
    # Web chat visitor ids are what POST /webchat/v1/sessions hands out.
    st.tuples(st.just(IdentityKind.WEBCHAT), st.from_regex(r"\A[A-Za-z0-9_-]{8,64}\Z")),
)


@given(identity_inputs)
def test_identity_parse_of_its_string_form_round_trips(kind_and_value):
    kind, value = kind_and_value
    identity = Identity(kind=kind, value=value)
    assert Identity.parse(str(identity)) == identity


# ---------------------------------------------------------------- cursors


@given(st.text(max_size=64))
def test_cursor_round_trips_a_message_sort_key(suffix):
    sort_key = "MSG#" + suffix
    assert decode_cursor(encode_cursor(sort_key)) == sort_key


@given(st.text())
def test_cursor_is_url_safe(suffix):
    cursor = encode_cursor("MSG#" + suffix)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(st.text().filter(lambda t: not t.startswith("MSG#")))
def test_cursor_for_another_kind_of_key_is_refused(sort_key):
    with pytest.raises(MalformedRequest):
        decode_cursor(encode_cursor(sort_key))


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(),
        st.from_regex(r"\A[A-Za-z0-9_\-]{0,80}\Z"),
        st.binary(max_size=80).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner)
            ),
        ).map(lambda doc: base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()),
    )
)
def test_arbitrary_cursor_decodes_to_a_message_key_or_is_malformed(cursor):
    try:
        sort_key = decode_cursor(cursor)
    except MalformedRequest:
        return
    assert sort_key.startswith("MSG#")


def test_deeply_nested_cursor_is_malformed_not_an_internal_error():
    cursor = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
    with pytest.raises(MalformedRequest):
        decode_cursor(cursor)


# ---------------------------------------------------------------- log redaction

e164_numbers = st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z")
plain_emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._%+\-]{0,20}\Z"),
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9\-]{0,20}\Z"),
    st.sampled_from(["com", "org", "example", "co.uk", "io"]),
)
secrets = st.one_of(e164_numbers, plain_emails)


@st.composite
def log_values(draw) -> tuple[object, list[str]]:
    """A log record-like structure with phone numbers and emails buried in its text.

    Each planted address is set off by spaces, as in prose: two addresses glued together
    ("a@b.coma@b.com") have no single right reading.
    """
    planted: list[str] = []

    def text_with_secrets(secret_list: list[str]) -> str:
        pieces = draw(st.lists(st.text(max_size=8), min_size=len(secret_list) + 1))
        out = pieces[0]
        for secret, piece in zip(secret_list, pieces[1:], strict=False):
            out += f" {secret} {piece}"
        return out

    def leaf() -> str:
        chosen = draw(st.lists(secrets, max_size=3))
        planted.extend(chosen)
        return text_with_secrets(chosen)

    keys = st.sampled_from(["message", "note", "from", "to", "exception", "customer", "x"])
    value = {
        draw(keys): leaf(),
        "nested": {draw(keys): leaf(), "items": [leaf(), (leaf(),)]},
    }
    return value, planted


@given(log_values())
def test_redact_lets_no_e164_number_or_email_through(value_and_planted):
    value, planted = value_and_planted
    rendered = json.dumps(redact(value), ensure_ascii=False)
    for secret in planted:
        assert secret not in rendered


@given(
    key=st.sampled_from(["body", "Body", "text"]),
    content=st.text(min_size=1),
    depth=st.integers(min_value=0, max_value=3),
)
def test_redact_replaces_message_content_wherever_it_sits(key, content, depth):
    value: object = {key: content}
    for _ in range(depth):
        value = {"wrapper": [value]}
    redacted = redact(value)
    for _ in range(depth):
        redacted = redacted["wrapper"][0]
    assert redacted == {key: REDACTED}


def test_redact_masks_identities_used_as_dict_keys():
    rendered = json.dumps(redact({"+15555550123": "cust-1", "jane@example.com": "cust-2"}))
    assert "+15555550123" not in rendered
    assert "jane@example.com" not in rendered


def test_redact_masks_emails_whose_local_part_ends_in_a_symbol():
    assert "jane!@example.com" not in redact("reply to jane!@example.com")


def test_a_number_that_loses_leading_zeros_is_refused_not_changed_twice():
    # Found by hypothesis: +49000000 became +4900000, then +490000 on the next pass.
    with pytest.raises(ValueError):
        canonical_phone("49000000")
