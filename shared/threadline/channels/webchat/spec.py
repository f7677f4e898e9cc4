"""Web chat: the site's widget over an API Gateway WebSocket API, and the visitor
ids ``POST /webchat/v1/sessions`` hands out."""

from __future__ import annotations

import re

from threadline.channels.registry import ChannelSpec, IdentityRule, Webhook

IDENTITY_RULES = {
    "webchat": IdentityRule(
        pattern=re.compile(r"^[A-Za-z0-9_-]{8,64}$"),
        hint="webchat identities are visitor ids (8-64 of A-Z a-z 0-9 _ -)",
    ),
}

CHANNELS = (
    ChannelSpec(
        name="webchat",
        identity="webchat",
        provider="webchat",
        webhooks=(
            Webhook(
                "WebchatSessionsFunction",
                "threadline.channels.webchat.sessions:WebchatSessions",
                ("WEBCHAT_TOKEN_SECRET", "WEBCHAT_IDENTITY_SECRET"),
            ),
            Webhook(
                "WebchatSocketFunction",
                "threadline.channels.webchat.socket:WebchatSocket",
                ("WEBCHAT_TOKEN_SECRET",),
            ),
        ),
        # Pushes with PostToConnection to every open socket of the visitor.
        sender="threadline.channels.webchat.sender:build_sender",
        # The widget keeps one entry per message id: a repeated push shows once.
        repeat_is_harmless=True,
    ),
)
