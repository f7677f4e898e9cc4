"""X-Twilio-Signature is checked against exactly the URL and parameters Twilio signed."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from twilio import request_validator

from tests.unit import twilio_payloads as tw
from tests.unit.webhook_events import (
    API_HOST,
    AUTH_TOKEN,
    PATH,
    http_api_event,
    sign,
    signed_event,
    url_for,
)
from threadline.channels.base import WebhookRequest
from threadline.channels.twilio.messaging import TwilioMessaging
from threadline.errors import SignatureInvalid

PUBLIC = "https://hooks.example.com"
PUBLIC_URL = PUBLIC + PATH


def verify(event, public_base_url=None, token=AUTH_TOKEN):
    request = WebhookRequest.from_http_api_event(event, public_base_url)
    TwilioMessaging(auth_token=lambda: token).verify(request)


def test_request_signed_with_the_auth_token_passes():
    verify(signed_event(tw.SMS))


@pytest.mark.parametrize("name", sorted(tw.ALL))
def test_every_documented_payload_verifies_when_signed(name):
    verify(signed_event(tw.ALL[name]))


def test_wrong_auth_token_is_refused():
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS, token="f" * 32))


def test_verifier_uses_the_token_it_is_given():
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS), token="f" * 32)


def test_tampered_parameter_is_refused():
    signature = sign(url_for(), tw.SMS)
    tampered = {**tw.SMS, "Body": "Please refund me $5000"}
    with pytest.raises(SignatureInvalid):
        verify(http_api_event(urlencode(tampered), signature=signature))


def test_added_parameter_is_refused():
    signature = sign(url_for(), tw.SMS)
    extended = {**tw.SMS, "MediaUrl0": "https://evil.example/x.jpg"}
    with pytest.raises(SignatureInvalid):
        verify(http_api_event(urlencode(extended), signature=signature))


def test_missing_signature_header_is_refused():
    with pytest.raises(SignatureInvalid):
        verify(http_api_event(urlencode(tw.SMS)))


def test_empty_signature_header_is_refused():
    with pytest.raises(SignatureInvalid):
        verify(http_api_event(urlencode(tw.SMS), signature=""))


@pytest.mark.parametrize(
    "signed_url",
    [
        url_for(host="other.example.com"),
        url_for(path="/webhooks/twilio/status"),
        url_for(scheme="http"),
        url_for(query="a=1"),
    ],
    ids=["other-host", "other-path", "other-scheme", "added-query"],
)
def test_signature_for_a_different_url_is_refused(signed_url):
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS, signed_url=signed_url))


def test_mixed_case_signature_header_is_found():
    event = signed_event(tw.SMS)
    event["headers"]["X-Twilio-Signature"] = event["headers"].pop("x-twilio-signature")
    verify(event)


# ---------------------------------------------------------------- the URL Twilio signed

QUERY = "b=2&a=1&note=caf%C3%A9%20au%20lait"


def test_query_string_signed_byte_for_byte_passes():
    verify(signed_event(tw.SMS, query=QUERY))


def test_request_url_keeps_the_raw_query_string():
    request = WebhookRequest.from_http_api_event(signed_event(tw.SMS, query=QUERY))
    assert request.url == f"https://{API_HOST}{PATH}?{QUERY}"


@pytest.mark.parametrize(
    "signed_query",
    ["a=1&b=2&note=caf%C3%A9%20au%20lait", "b=2&a=1&note=caf%C3%A9+au+lait"],
    ids=["reordered", "re-encoded"],
)
def test_query_string_signed_differently_is_refused(signed_query):
    event = signed_event(tw.SMS, query=QUERY, signed_url=url_for(query=signed_query))
    with pytest.raises(SignatureInvalid):
        verify(event)


def test_public_base_url_replaces_the_api_gateway_host():
    event = signed_event(tw.SMS, signed_url=PUBLIC_URL)
    verify(event, public_base_url=PUBLIC)
    assert WebhookRequest.from_http_api_event(event, PUBLIC).url == PUBLIC_URL


def test_public_base_url_with_trailing_slash_gives_the_same_url():
    verify(signed_event(tw.SMS, signed_url=PUBLIC_URL), public_base_url=PUBLIC + "/")


def test_with_public_base_url_a_signature_for_the_gateway_host_is_refused():
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS), public_base_url=PUBLIC)


def test_without_public_base_url_a_signature_for_the_public_host_is_refused():
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS, signed_url=PUBLIC_URL))


def test_forwarded_proto_sets_the_scheme_of_the_signed_url():
    headers = {"x-forwarded-proto": "http"}
    event = signed_event(tw.SMS, signed_url=url_for(scheme="http"), headers=headers)
    verify(event)
    assert WebhookRequest.from_http_api_event(event).url.startswith("http://")


def test_forwarded_proto_http_refuses_a_signature_for_https():
    event = signed_event(tw.SMS, headers={"x-forwarded-proto": "http"})
    with pytest.raises(SignatureInvalid):
        verify(event)


# ---------------------------------------------------------------- HMAC-SHA256

needs_sha256 = pytest.mark.skipif(
    not hasattr(request_validator, "HMAC_SHA256"),
    reason="installed twilio has no HMAC_SHA256 webhook signatures",
)
SETTINGS = "x-twilio-webhooks-signature-settings"


@needs_sha256
def test_hmac_sha256_named_in_signature_settings_passes():
    headers = {SETTINGS: "key=webhooks_sharedkey_0000,algorithm=HMAC_SHA256"}
    verify(signed_event(tw.SMS, algorithm="HMAC_SHA256", headers=headers))


@needs_sha256
def test_hmac_sha256_signature_without_settings_header_is_refused():
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS, algorithm="HMAC_SHA256"))


@needs_sha256
def test_sha1_signature_claiming_sha256_is_refused():
    headers = {SETTINGS: "key=webhooks_sharedkey_0000,algorithm=HMAC_SHA256"}
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS, headers=headers))


@needs_sha256
def test_unknown_signature_algorithm_is_refused():
    headers = {SETTINGS: "key=webhooks_sharedkey_0000,algorithm=HMAC_MD5"}
    with pytest.raises(SignatureInvalid):
        verify(signed_event(tw.SMS, headers=headers))
