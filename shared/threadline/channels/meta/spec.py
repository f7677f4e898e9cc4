"""Meta's own channels, Messenger and Instagram, and their page- and
Instagram-scoped user ids. (WhatsApp through Meta's Cloud API is the ``whatsapp``
channel Twilio's package declares: one channel, two providers.)"""

from __future__ import annotations

import re
from datetime import timedelta

from threadline.channels.registry import ChannelSpec, IdentityRule, SendWindow, Webhook

WEBHOOK = Webhook(
    "MetaWebhookFunction",
    "threadline.channels.meta.webhook:MetaWebhook",
    ("META_APP_SECRET", "META_VERIFY_TOKEN"),
)

# Messenger and Instagram take free-form replies for 24 hours after the customer's
# last message; the HUMAN_AGENT tag stretches that to 7 days; Messenger's other tags
# are not time-bound (Meta polices what they are used for). Instagram takes only
# HUMAN_AGENT.
_HUMAN_AGENT = {"HUMAN_AGENT": timedelta(days=7)}
MESSENGER_WINDOW = SendWindow(
    free_for=timedelta(hours=24),
    remedy="send with a message_tag",
    tags={
        **_HUMAN_AGENT,
        "ACCOUNT_UPDATE": None,
        "CONFIRMED_EVENT_UPDATE": None,
        "POST_PURCHASE_UPDATE": None,
    },
)
INSTAGRAM_WINDOW = SendWindow(
    free_for=timedelta(hours=24), remedy="send with a message_tag", tags=_HUMAN_AGENT
)

# Page-scoped (Messenger PSID) and Instagram-scoped (IGSID) user ids are decimal digits.
_SCOPED_ID = re.compile(r"^[0-9]{1,64}$")

IDENTITY_RULES = {
    "messenger": IdentityRule(
        pattern=_SCOPED_ID, hint="messenger identities are Meta's numeric scoped user ids"
    ),
    "instagram": IdentityRule(
        pattern=_SCOPED_ID, hint="instagram identities are Meta's numeric scoped user ids"
    ),
}

CHANNELS = (
    ChannelSpec(
        name="messenger",
        identity="messenger",
        provider="meta",
        webhooks=(WEBHOOK,),
        sender="threadline.channels.meta.senders:messenger_sender_from_env",
        sender_secrets=("META_PAGE_ACCESS_TOKEN",),
        window=MESSENGER_WINDOW,
    ),
    ChannelSpec(
        name="instagram",
        identity="instagram",
        provider="meta",
        webhooks=(WEBHOOK,),
        sender="threadline.channels.meta.senders:instagram_sender_from_env",
        sender_secrets=("META_PAGE_ACCESS_TOKEN",),
        window=INSTAGRAM_WINDOW,
    ),
)
