"""Twilio's documented inbound parameters become the right normalized message."""

from __future__ import annotations

import pytest

from tests.unit import twilio_payloads as tw
from threadline.channels.twilio.messaging import normalize_form
from threadline.errors import MalformedRequest
from threadline.schema import (
    Channel,
    Identity,
    IdentityKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    TextPart,
)

CUSTOMER = Identity(kind=IdentityKind.PHONE, value=tw.CUSTOMER)
BUSINESS = Identity(kind=IdentityKind.PHONE, value=tw.BUSINESS)

# Parameters whose meaning the normalized message carries in its own fields
# (written from Twilio's parameter list, not from the package's own table).
CARRIED = {"MessageSid", "SmsSid", "SmsMessageSid", "From", "To", "Body", "NumMedia"}
CARRIED_WHATSAPP = CARRIED | {
    "ProfileName",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "ButtonText",
    "ButtonPayload",
    "OriginalRepliedMessageSid",
}


def _unmapped(form: dict[str, str], carried: set[str]) -> dict[str, str]:
    return {
        k: v
        for k, v in form.items()
        if k not in carried and not k.startswith(("MediaUrl", "MediaContentType"))
    }


# ---------------------------------------------------------------- documented cases


def test_plain_sms_is_one_text_part_from_customer_to_us():
    message = normalize_form(tw.SMS)
    assert message.channel is Channel.SMS
    assert message.provider == "twilio"
    assert message.provider_message_id == tw.SMS_SID
    assert message.sender == CUSTOMER
    assert message.recipient == BUSINESS
    assert message.parts == [TextPart(text=tw.SMS["Body"])]
    assert message.in_reply_to is None
    assert message.sender_display_name is None


def test_plain_sms_keeps_every_unmapped_parameter_in_channel_data():
    channel_data = normalize_form(tw.SMS).channel_data
    assert channel_data == _unmapped(tw.SMS, CARRIED)
    for key in ("AccountSid", "MessagingServiceSid", "FromCity", "ToZip", "NumSegments"):
        assert channel_data[key] == tw.SMS[key]


def test_plain_sms_channel_data_leaves_out_what_the_message_carries():
    channel_data = normalize_form(tw.SMS).channel_data
    assert not CARRIED & channel_data.keys()


def test_mms_text_then_media_in_twilio_order_with_content_types_and_urls():
    message = normalize_form(tw.MMS)
    assert message.channel is Channel.SMS
    assert message.provider_message_id == tw.MMS_SID
    assert message.parts == [
        TextPart(text=tw.MMS["Body"]),
        MediaPart(content_type="image/jpeg", url=tw.MMS["MediaUrl0"]),
        MediaPart(content_type="image/png", url=tw.MMS["MediaUrl1"]),
    ]


def test_mms_media_parameters_are_not_duplicated_in_channel_data():
    channel_data = normalize_form(tw.MMS).channel_data
    assert not [k for k in channel_data if k.startswith(("MediaUrl", "MediaContentType"))]
    assert channel_data == _unmapped(tw.MMS, CARRIED)


def test_media_only_mms_has_no_text_part():
    form = {**tw.MMS, "Body": ""}
    assert [p.type for p in normalize_form(form).parts] == ["media", "media"]


def test_whatsapp_text_is_whatsapp_channel_with_prefix_stripped_identities():
    message = normalize_form(tw.WHATSAPP_TEXT)
    assert message.channel is Channel.WHATSAPP
    assert message.sender == CUSTOMER
    assert message.recipient == BUSINESS
    assert message.parts == [TextPart(text=tw.WHATSAPP_TEXT["Body"])]
    assert message.sender_display_name == "Jane Doe"


def test_whatsapp_and_sms_from_one_number_are_one_sender():
    assert normalize_form(tw.WHATSAPP_TEXT).sender == normalize_form(tw.SMS).sender


def test_whatsapp_text_keeps_wa_id_and_flags_in_channel_data_but_not_profile_name():
    channel_data = normalize_form(tw.WHATSAPP_TEXT).channel_data
    assert channel_data["WaId"] == tw.CUSTOMER.removeprefix("+")
    assert channel_data["Forwarded"] == "true"
    assert channel_data["MessageType"] == "text"
    assert "ProfileName" not in channel_data
    assert channel_data == _unmapped(tw.WHATSAPP_TEXT, CARRIED_WHATSAPP)


def test_whatsapp_location_is_one_location_part_with_label_and_address():
    message = normalize_form(tw.WHATSAPP_LOCATION)
    assert message.channel is Channel.WHATSAPP
    assert message.parts == [
        LocationPart(
            latitude=37.7749295,
            longitude=-122.4194155,
            name="Acme Warehouse",
            address="1 Market St, San Francisco, CA 94105",
        )
    ]


def test_whatsapp_location_fields_are_not_repeated_in_channel_data():
    channel_data = normalize_form(tw.WHATSAPP_LOCATION).channel_data
    assert not {"Latitude", "Longitude", "Address", "Label"} & channel_data.keys()
    assert channel_data["MessageType"] == "location"


def test_whatsapp_quick_reply_is_a_button_reply_not_a_duplicate_text():
    message = normalize_form(tw.WHATSAPP_BUTTON)
    assert message.parts == [
        InteractiveReplyPart(kind="button", reply_id="track_order:4521", title="Track my order")
    ]


def test_whatsapp_quick_reply_points_at_the_message_that_carried_the_buttons():
    message = normalize_form(tw.WHATSAPP_BUTTON)
    assert message.in_reply_to == tw.OUR_TEMPLATE_SID
    assert message.channel_data["OriginalRepliedMessageSender"] == f"whatsapp:{tw.BUSINESS}"
    assert not {"ButtonText", "ButtonPayload", "OriginalRepliedMessageSid"} & (
        message.channel_data.keys()
    )


def test_whatsapp_reply_to_a_message_sets_in_reply_to():
    message = normalize_form(tw.WHATSAPP_REPLY)
    assert message.in_reply_to == tw.OUR_TEMPLATE_SID
    assert message.parts == [TextPart(text=tw.WHATSAPP_REPLY["Body"])]


def test_click_to_whatsapp_ad_referral_lands_in_channel_data():
    channel_data = normalize_form(tw.WHATSAPP_AD_REFERRAL).channel_data
    for key in ("ReferralBody", "ReferralHeadline", "ReferralSourceId", "ReferralCtwaClid"):
        assert channel_data[key] == tw.WHATSAPP_AD_REFERRAL[key]


@pytest.mark.parametrize("name", sorted(tw.ALL))
def test_every_parameter_is_either_carried_or_kept(name):
    form = tw.ALL[name]
    channel_data = normalize_form(form).channel_data
    for key, value in form.items():
        if key in CARRIED_WHATSAPP or key.startswith(("MediaUrl", "MediaContentType")):
            assert key not in channel_data
        else:
            assert channel_data[key] == value


def test_message_sid_falls_back_to_legacy_sms_sid():
    form = {k: v for k, v in tw.SMS.items() if k != "MessageSid"}
    assert normalize_form(form).provider_message_id == tw.SMS_SID


def test_short_code_recipient_is_kept_in_channel_data_not_refused():
    message = normalize_form({**tw.SMS, "To": "22395"})
    assert message.recipient is None
    assert message.channel_data["To"] == "22395"
    assert message.sender == CUSTOMER


def test_six_digit_short_code_is_not_mistaken_for_a_phone_number():
    message = normalize_form({**tw.SMS, "To": "446622"})
    assert message.recipient is None
    assert message.channel_data["To"] == "446622"


# ---------------------------------------------------------------- malformed


def _without(form: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in keys}


def test_missing_message_sid_is_malformed():
    with pytest.raises(MalformedRequest):
        normalize_form(_without(tw.SMS, "MessageSid", "SmsSid", "SmsMessageSid"))


def test_missing_from_is_malformed():
    with pytest.raises(MalformedRequest):
        normalize_form(_without(tw.SMS, "From"))


@pytest.mark.parametrize("sender", ["hello", "whatsapp:", "whatsapp:jane", "+1", "client:alice"])
def test_from_that_is_not_a_phone_is_malformed(sender):
    with pytest.raises(MalformedRequest):
        normalize_form({**tw.SMS, "From": sender})


@pytest.mark.parametrize("count", ["two", "1.5", "-1", "11"])
def test_num_media_not_a_count_up_to_ten_is_malformed(count):
    with pytest.raises(MalformedRequest):
        normalize_form({**tw.MMS, "NumMedia": count})


def test_ten_media_items_are_accepted():
    form = {**tw.SMS, "NumMedia": "10"}
    for i in range(10):
        form[f"MediaUrl{i}"] = tw.media_url(tw.SMS_SID, tw.sid("ME", i))
        form[f"MediaContentType{i}"] = "image/jpeg"
    assert len([p for p in normalize_form(form).parts if p.type == "media"]) == 10


def test_media_url_missing_for_a_counted_item_is_malformed():
    with pytest.raises(MalformedRequest):
        normalize_form(_without(tw.MMS, "MediaUrl1"))


def test_latitude_without_longitude_is_malformed():
    with pytest.raises(MalformedRequest):
        normalize_form(_without(tw.WHATSAPP_LOCATION, "Longitude"))


def test_longitude_without_latitude_is_malformed():
    with pytest.raises(MalformedRequest):
        normalize_form(_without(tw.WHATSAPP_LOCATION, "Latitude"))


@pytest.mark.parametrize(("lat", "lon"), [("north", "-122.4"), ("91", "0"), ("0", "181")])
def test_location_outside_the_globe_or_not_a_number_is_malformed(lat, lon):
    with pytest.raises(MalformedRequest):
        normalize_form({**tw.WHATSAPP_LOCATION, "Latitude": lat, "Longitude": lon})


def test_overlong_message_sid_is_malformed_not_an_internal_error():
    with pytest.raises(MalformedRequest):
        normalize_form({**tw.SMS, "MessageSid": "SM" + "0" * 300})


def test_unparseable_date_sent_is_ignored_not_an_internal_error():
    form = {**tw.SMS, "DateSent": "Mon, 01 Jan 2024 00:00:00 +99999999999999999999"}
    assert normalize_form(form).sent_at is None
