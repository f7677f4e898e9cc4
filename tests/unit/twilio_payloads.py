"""Twilio Programmable Messaging inbound webhooks, as Twilio posts them.

Written from Twilio's documentation of its request to an incoming-message webhook
("Twilio's request to your incoming message Webhook URL",
https://www.twilio.com/docs/messaging/guides/webhook-request, and the older
https://www.twilio.com/docs/api/twiml/sms/twilio_request): every value is a string,
form-encoded; ``SmsSid``/``SmsMessageSid`` repeat ``MessageSid``; geographic
``From*``/``To*`` fields are sent when Twilio can look them up; media come as
``NumMedia`` plus ``MediaContentType{N}``/``MediaUrl{N}`` (N from 0); WhatsApp adds
``ProfileName``, ``WaId``, ``Forwarded``/``FrequentlyForwarded``, ``ButtonText``/
``ButtonPayload`` for quick replies, ``Latitude``/``Longitude``/``Address``/``Label``
for a shared location, ``Referral*`` for Click-to-WhatsApp ads and
``OriginalRepliedMessageSender``/``OriginalRepliedMessageSid`` for a reply to a
message. ``MessageType`` and ``ReferralNumMedia`` appear in captured WhatsApp
webhooks.

Every SID, number and name here is fake: 555 numbers, SIDs of two letters and 32 hex
digits that no account has.
"""

from __future__ import annotations

ACCOUNT_SID = "AC" + "0" * 24 + "deadbeef"
MESSAGING_SERVICE_SID = "MG" + "0" * 24 + "5e55a9e5"

CUSTOMER = "+15555550123"
"""The customer's phone (E.164), on SMS and on WhatsApp alike."""
BUSINESS = "+15555550100"
"""Our Twilio number."""


def sid(prefix: str, n: int) -> str:
    """A fake 34-character SID: two letters, then 32 hex digits."""
    return f"{prefix}{n:032x}"


def media_url(message_sid: str, media_sid: str) -> str:
    return (
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"
        f"/Messages/{message_sid}/Media/{media_sid}"
    )


def _ids(message_sid: str) -> dict[str, str]:
    return {"MessageSid": message_sid, "SmsSid": message_sid, "SmsMessageSid": message_sid}


SMS_SID = sid("SM", 1)
SMS: dict[str, str] = {
    **_ids(SMS_SID),
    "AccountSid": ACCOUNT_SID,
    "MessagingServiceSid": MESSAGING_SERVICE_SID,
    "From": CUSTOMER,
    "To": BUSINESS,
    "Body": "Hi, my order #4521 hasn't arrived yet",
    "NumMedia": "0",
    "NumSegments": "1",
    "SmsStatus": "received",
    "ApiVersion": "2010-04-01",
    "FromCity": "SAN FRANCISCO",
    "FromState": "CA",
    "FromZip": "94105",
    "FromCountry": "US",
    "ToCity": "OAKLAND",
    "ToState": "CA",
    "ToZip": "94607",
    "ToCountry": "US",
}

MMS_SID = sid("MM", 2)
MMS_MEDIA = (
    ("image/jpeg", media_url(MMS_SID, sid("ME", 21))),
    ("image/png", media_url(MMS_SID, sid("ME", 22))),
)
MMS: dict[str, str] = {
    **_ids(MMS_SID),
    "AccountSid": ACCOUNT_SID,
    "MessagingServiceSid": MESSAGING_SERVICE_SID,
    "From": CUSTOMER,
    "To": BUSINESS,
    "Body": "Here is the damaged box",
    "NumMedia": "2",
    "MediaContentType0": MMS_MEDIA[0][0],
    "MediaUrl0": MMS_MEDIA[0][1],
    "MediaContentType1": MMS_MEDIA[1][0],
    "MediaUrl1": MMS_MEDIA[1][1],
    "NumSegments": "1",
    "SmsStatus": "received",
    "ApiVersion": "2010-04-01",
    "FromCountry": "US",
    "ToCountry": "US",
}


def _whatsapp(message_sid: str, **params: str) -> dict[str, str]:
    return {
        **_ids(message_sid),
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{CUSTOMER}",
        "To": f"whatsapp:{BUSINESS}",
        "ProfileName": "Jane Doe",
        "WaId": CUSTOMER.removeprefix("+"),
        "NumMedia": "0",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        **params,
    }


WHATSAPP_TEXT_SID = sid("SM", 3)
WHATSAPP_TEXT = _whatsapp(
    WHATSAPP_TEXT_SID,
    Body="Hola! Is the store open on Sunday?",
    MessageType="text",
    Forwarded="true",
)

WHATSAPP_LOCATION_SID = sid("SM", 4)
WHATSAPP_LOCATION = _whatsapp(
    WHATSAPP_LOCATION_SID,
    Body="",
    MessageType="location",
    Latitude="37.7749295",
    Longitude="-122.4194155",
    Address="1 Market St, San Francisco, CA 94105",
    Label="Acme Warehouse",
)

# The message we sent that carried the quick-reply buttons / that the customer quoted.
OUR_TEMPLATE_SID = sid("SM", 100)

WHATSAPP_BUTTON_SID = sid("SM", 5)
WHATSAPP_BUTTON = _whatsapp(
    WHATSAPP_BUTTON_SID,
    Body="Track my order",
    MessageType="button",
    ButtonText="Track my order",
    ButtonPayload="track_order:4521",
    OriginalRepliedMessageSender=f"whatsapp:{BUSINESS}",
    OriginalRepliedMessageSid=OUR_TEMPLATE_SID,
)

WHATSAPP_REPLY_SID = sid("SM", 6)
WHATSAPP_REPLY = _whatsapp(
    WHATSAPP_REPLY_SID,
    Body="Yes, that's the right address",
    MessageType="text",
    OriginalRepliedMessageSender=f"whatsapp:{BUSINESS}",
    OriginalRepliedMessageSid=OUR_TEMPLATE_SID,
)

WHATSAPP_AD_REFERRAL_SID = sid("SM", 7)
WHATSAPP_AD_REFERRAL = _whatsapp(
    WHATSAPP_AD_REFERRAL_SID,
    Body="Hi, I saw your ad about free shipping",
    MessageType="text",
    ReferralBody="Free shipping on every order this week",
    ReferralHeadline="Acme spring sale",
    ReferralSourceId="120210000000000001",
    ReferralSourceType="ad",
    ReferralSourceUrl="https://fb.me/acme-spring-sale",
    ReferralCtwaClid="ARAkLkfakeclickid",
)

ALL: dict[str, dict[str, str]] = {
    "sms": SMS,
    "mms": MMS,
    "whatsapp_text": WHATSAPP_TEXT,
    "whatsapp_location": WHATSAPP_LOCATION,
    "whatsapp_button": WHATSAPP_BUTTON,
    "whatsapp_reply": WHATSAPP_REPLY,
    "whatsapp_ad_referral": WHATSAPP_AD_REFERRAL,
}
