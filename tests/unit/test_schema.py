"""The common schema: strict, discriminated, canonical identities, exportable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from threadline.schema import (
    ContactPart,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    Message,
    ReactionPart,
    TextPart,
)

NOW = datetime(2026, 11, 23, 7, 16, 49, tzinfo=UTC)


def message_fields(**overrides):
    fields = {
        "id": "01JDQ6N4KX0000000000000000",
        "customer_id": "01JDQ6N4KX00000000000000C1",
        "conversation_id": "01JDQ6N4KX00000000000000V1",
        "channel": "sms",
        "direction": "inbound",
        "provider": "twilio",
        "provider_message_id": "SM" + "0" * 31 + "1",
        "author_role": "customer",
        "sender": {"kind": "phone", "value": "+15555550123"},
        "received_at": NOW,
        "status": "received",
    }
    return {**fields, **overrides}


# ---------------------------------------------------------------- strictness


def test_minimal_message_is_valid_and_versioned():
    message = Message.model_validate(message_fields())
    assert message.schema_version == "1"
    assert message.parts == []
    assert message.channel_data == {}


def test_message_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="extra"):
        Message.model_validate(message_fields(colour="blue"))


def test_message_rejects_unknown_fields_in_nested_models():
    sender = {"kind": "phone", "value": "+15555550123", "verified": True}
    with pytest.raises(ValidationError):
        Message.model_validate(message_fields(sender=sender))


def test_message_rejects_an_unknown_channel():
    with pytest.raises(ValidationError):
        Message.model_validate(message_fields(channel="carrier-pigeon"))


def test_message_rejects_another_schema_version():
    with pytest.raises(ValidationError):
        Message.model_validate(message_fields(schema_version="2"))


def test_message_is_frozen():
    message = Message.model_validate(message_fields())
    with pytest.raises(ValidationError):
        message.status = "read"


def test_message_survives_a_json_round_trip():
    message = Message.model_validate(
        message_fields(parts=[{"type": "text", "text": "hi"}], channel_data={"NumSegments": "1"})
    )
    assert Message.model_validate_json(message.model_dump_json()) == message


# ---------------------------------------------------------------- parts


def test_parts_are_discriminated_by_type():
    parts = [
        {"type": "text", "text": "see photo"},
        {"type": "media", "content_type": "image/png", "url": "https://example.com/a.png"},
        {"type": "location", "latitude": 37.77, "longitude": -122.42, "name": "HQ"},
        {"type": "contact", "name": "Bob", "phones": ["+15555550199"]},
        {"type": "interactive_reply", "kind": "button", "reply_id": "yes", "title": "Yes"},
        {"type": "reaction", "emoji": "\N{THUMBS UP SIGN}", "target_provider_message_id": "SM1"},
    ]
    message = Message.model_validate(message_fields(parts=parts))
    assert [type(p) for p in message.parts] == [
        TextPart,
        MediaPart,
        LocationPart,
        ContactPart,
        InteractiveReplyPart,
        ReactionPart,
    ]


def test_part_with_unknown_type_is_rejected():
    with pytest.raises(ValidationError):
        Message.model_validate(message_fields(parts=[{"type": "hologram", "text": "x"}]))


def test_part_without_type_is_rejected():
    with pytest.raises(ValidationError):
        Message.model_validate(message_fields(parts=[{"text": "x"}]))


def test_part_fields_must_match_its_type():
    with pytest.raises(ValidationError):
        Message.model_validate(message_fields(parts=[{"type": "text", "url": "https://x"}]))


@pytest.mark.parametrize(("lat", "lon"), [(90.1, 0), (-90.1, 0), (0, 180.1), (0, -180.1)])
def test_location_outside_the_globe_is_rejected(lat, lon):
    with pytest.raises(ValidationError):
        LocationPart(latitude=lat, longitude=lon)


def test_media_size_cannot_be_negative():
    with pytest.raises(ValidationError):
        MediaPart(size=-1)


def test_text_joins_only_text_parts():
    message = Message.model_validate(
        message_fields(
            parts=[
                {"type": "text", "text": "one"},
                {"type": "media", "url": "https://example.com/a.png"},
                {"type": "text", "text": "two"},
            ]
        )
    )
    assert message.text == "one\ntwo"


# ---------------------------------------------------------------- identities


@pytest.mark.parametrize(
    "written",
    [
        "+15555550123",
        "+1 555-555-0123",
        "+1 (555) 555-0123",
        "15555550123",
        "1.555.555.0123",
        "0015555550123",
        "  +15555550123 ",
    ],
)
def test_phone_identity_is_e164_however_it_is_written(written):
    assert Identity(kind="phone", value=written).value == "+15555550123"


def test_phone_identity_keeps_the_country_code():
    assert Identity(kind="phone", value="+44 7700 900123").value == "+447700900123"


@pytest.mark.parametrize("written", ["hello", "+1", "555-CALL-NOW", "whatsapp:+15555550123"])
def test_phone_identity_refuses_what_is_not_a_phone_number(written):
    with pytest.raises(ValidationError):
        Identity(kind="phone", value=written)


def test_email_identity_is_lower_cased_and_trimmed():
    assert Identity(kind="email", value=" Jane.Doe@Example.COM ").value == "jane.doe@example.com"


@pytest.mark.parametrize("written", ["jane", "jane@", "@example.com", "jane@localhost", "a b@c.de"])
def test_email_identity_refuses_what_is_not_an_address(written):
    with pytest.raises(ValidationError):
        Identity(kind="email", value=written)


def test_slack_identity_is_upper_cased_team_colon_user():
    assert Identity(kind="slack", value="t0001:u0002").value == "T0001:U0002"


@pytest.mark.parametrize("written", ["U0002", "T0001:", "T0001:U0002:X", "T 1:U2"])
def test_slack_identity_refuses_a_user_without_its_team(written):
    with pytest.raises(ValidationError):
        Identity(kind="slack", value=written)


def test_free_form_identity_is_trimmed_and_not_empty():
    assert Identity(kind="telegram", value=" 123456789 ").value == "123456789"
    with pytest.raises(ValidationError):
        Identity(kind="telegram", value="   ")


def test_identities_of_one_person_written_differently_are_equal():
    assert Identity(kind="phone", value="+1 555 555 0123") == Identity(
        kind="phone", value="15555550123"
    )


def test_identity_parse_reads_kind_colon_value():
    assert Identity.parse("phone:+15555550123") == Identity(
        kind=IdentityKind.PHONE, value="+15555550123"
    )
    assert Identity.parse("slack:T0001:U0002").value == "T0001:U0002"


@pytest.mark.parametrize("text", ["+15555550123", "phone:", "fax:+15555550123"])
def test_identity_parse_refuses_malformed_text(text):
    with pytest.raises(ValueError):
        Identity.parse(text)


# ---------------------------------------------------------------- JSON Schema


def test_message_json_schema_builds_with_every_part_type():
    schema = Message.model_json_schema()
    assert schema["type"] == "object"
    assert {"id", "channel", "received_at", "status"} <= set(schema["required"])
    parts = schema["properties"]["parts"]["items"]
    assert set(parts["discriminator"]["mapping"]) == {
        "text",
        "media",
        "location",
        "contact",
        "interactive_reply",
        "reaction",
    }


def test_message_json_schema_forbids_additional_properties():
    assert Message.model_json_schema()["additionalProperties"] is False
