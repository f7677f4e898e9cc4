"""E-mail: SES receipt rules in, SES v2 out, and the ``email`` identity."""

from __future__ import annotations

from threadline.channels.registry import ChannelSpec, IdentityRule, Webhook
from threadline.identity import canonical_email

IDENTITY_RULES = {"email": IdentityRule(canonical=canonical_email)}

CHANNELS = (
    ChannelSpec(
        name="email",
        identity="email",
        provider="ses",
        webhooks=(Webhook("EmailInboundFunction", "threadline.email_inbound:handle_s3_event"),),
        sender="threadline.channels.email.outbound:sender_from_env",
        # SES bounces and complaints stop sends to an address.
        feedback_blocks=True,
    ),
)
