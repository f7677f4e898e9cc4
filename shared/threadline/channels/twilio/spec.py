"""Twilio's channels: SMS, WhatsApp (also carried by Meta's Cloud API) and voice, and
the ``phone`` identity they share (E.164, ``threadline.identity.canonical_phone``)."""

from __future__ import annotations

from datetime import timedelta

from threadline.channels.meta.spec import WEBHOOK as META_WEBHOOK
from threadline.channels.registry import ChannelSpec, IdentityRule, SendWindow, Webhook
from threadline.identity import canonical_phone

MESSAGING = Webhook(
    "TwilioMessagingFunction",
    "threadline.channels.twilio.messaging:TwilioMessaging",
    ("TWILIO_AUTH_TOKEN",),
)

# WhatsApp accepts free-form business messages only within 24 hours of the
# customer's last message to us; outside it only approved templates.
WHATSAPP_WINDOW = SendWindow(
    free_for=timedelta(hours=24),
    remedy="only a template can be sent",
    label="WhatsApp",
    templates=True,
)

IDENTITY_RULES = {"phone": IdentityRule(canonical=canonical_phone)}

CHANNELS = (
    ChannelSpec(
        name="sms",
        identity="phone",
        provider="twilio",
        webhooks=(MESSAGING,),
        sender="threadline.channels.twilio.messaging:sender_from_env",
        sender_secrets=("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    ),
    ChannelSpec(
        name="whatsapp",
        identity="phone",
        provider="twilio",
        # WhatsApp through Meta's Cloud API arrives on Meta's webhook.
        webhooks=(MESSAGING, META_WEBHOOK),
        # Twilio or Meta's Cloud API, whichever the customer last wrote through.
        sender="threadline.channels.twilio.whatsapp:sender_from_env",
        sender_secrets=("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "META_ACCESS_TOKEN"),
        media_fetchers={"meta": "threadline.channels.meta.media:media_client_from_env"},
        window=WHATSAPP_WINDOW,
    ),
    ChannelSpec(
        name="voice",
        identity="phone",
        provider="twilio",
        webhooks=(
            Webhook(
                "TwilioVoiceFunction",
                "threadline.channels.twilio.voice:TwilioVoice",
                ("TWILIO_AUTH_TOKEN",),
            ),
        ),
        # A call carries no written reply: replies to it go by SMS.
        reply_via="sms",
    ),
)
