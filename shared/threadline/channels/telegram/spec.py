"""Telegram: Bot API updates in, sendMessage out, and the user's numeric id."""

from __future__ import annotations

import re

from threadline.channels.registry import ChannelSpec, IdentityRule, Webhook

IDENTITY_RULES = {
    # Telegram user ids are positive integers below 2**52 (the Bot API's own bound).
    "telegram": IdentityRule(
        pattern=re.compile(r"^[1-9][0-9]{0,15}$"),
        hint="telegram identities are the user's numeric id, e.g. 123456789",
    ),
}

CHANNELS = (
    ChannelSpec(
        name="telegram",
        identity="telegram",
        provider="telegram",
        webhooks=(
            Webhook(
                "TelegramWebhookFunction",
                "threadline.channels.telegram.inbound:TelegramWebhook",
                ("TELEGRAM_SECRET_TOKEN",),
            ),
        ),
        sender="threadline.channels.telegram.outbound:sender_from_env",
        sender_secrets=("TELEGRAM_BOT_TOKEN",),
    ),
)
