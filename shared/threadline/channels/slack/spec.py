"""Slack: the Events API in, chat.postMessage out, and ``slack:TEAM:USER`` identities."""

from __future__ import annotations

import re

from threadline.channels.registry import ChannelSpec, IdentityRule, Webhook

IDENTITY_RULES = {
    "slack": IdentityRule(
        pattern=re.compile(r"^[A-Z0-9]+:[A-Z0-9]+$"),
        upper=True,
        hint="slack identities are team:user, e.g. T0001:U0002",
    ),
}

CHANNELS = (
    ChannelSpec(
        name="slack",
        identity="slack",
        provider="slack",
        webhooks=(
            Webhook(
                "SlackEventsFunction",
                "threadline.channels.slack.events:SlackEvents",
                ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"),
            ),
        ),
        sender="threadline.channels.slack.outbound:sender_from_env",
        sender_secrets=("SLACK_BOT_TOKEN",),
    ),
)
