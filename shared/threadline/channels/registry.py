"""Every channel threadline speaks, declared once: the registry the rest of the code reads.

Adding a channel is one entry here (its ``Channel`` and ``IdentityKind`` values, its
identity rule and its :class:`ChannelSpec`) beside its own module under
``threadline.channels``; the dispatcher, the outbound rules (identity, provider,
send window, where a reply to a call goes), identity canonicalization, the API's
media route and the template checks all derive from what is written below, and
``tests/unit/test_channel_registry.py`` fails when another module lists channels by
hand. docs/channels.md ("Adding a channel") walks through it.

Importing this module is cheap on purpose (``threadline.schema`` imports it): it
names senders, adapters and media fetchers as ``"module:attribute"`` strings that
are imported only when first used, so no handler pays for twilio, slack_sdk or
urllib3 before it sends.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from threadline.identity import canonical_email, canonical_phone

if TYPE_CHECKING:
    from threadline.channels.base import Sender
    from threadline.media import MediaFetcher

# The two enums are the common schema's (threadline.schema re-exports them, and the
# JSON Schemas under infra/schemas list their values): they live here so that a
# channel's values and its rules are written in one place.


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"
    EMAIL = "email"
    SLACK = "slack"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


class IdentityKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    SLACK = "slack"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


# ---------------------------------------------------------------- identity kinds


@dataclass(frozen=True)
class IdentityRule:
    """How values of one identity kind are spelled canonically.

    Either ``canonical`` (a function that returns the one spelling or raises
    ValueError), or ``pattern`` (after stripping, and upper-casing when ``upper``)
    with ``hint`` as the error when a value does not match.
    """

    canonical: Callable[[str], str] | None = None
    pattern: re.Pattern[str] | None = None
    upper: bool = False
    hint: str = ""

    def apply(self, value: str) -> str:
        if self.canonical is not None:
            return self.canonical(value)
        text = value.strip()
        if self.upper:
            text = text.upper()
        if self.pattern is not None and not self.pattern.match(text):
            raise ValueError(self.hint)
        if not text:
            raise ValueError("empty identity")
        return text


# Page-scoped (Messenger PSID) and Instagram-scoped (IGSID) user ids are decimal digits.
_META_SCOPED_ID = re.compile(r"^[0-9]{1,64}$")

IDENTITY_RULES: Mapping[IdentityKind, IdentityRule] = {
    IdentityKind.PHONE: IdentityRule(canonical=canonical_phone),
    IdentityKind.EMAIL: IdentityRule(canonical=canonical_email),
    IdentityKind.SLACK: IdentityRule(
        pattern=re.compile(r"^[A-Z0-9]+:[A-Z0-9]+$"),
        upper=True,
        hint="slack identities are team:user, e.g. T0001:U0002",
    ),
    IdentityKind.MESSENGER: IdentityRule(
        pattern=_META_SCOPED_ID, hint="messenger identities are Meta's numeric scoped user ids"
    ),
    IdentityKind.INSTAGRAM: IdentityRule(
        pattern=_META_SCOPED_ID, hint="instagram identities are Meta's numeric scoped user ids"
    ),
    # Telegram user ids are positive integers below 2**52 (the Bot API's own bound).
    IdentityKind.TELEGRAM: IdentityRule(
        pattern=re.compile(r"^[1-9][0-9]{0,15}$"),
        hint="telegram identities are the user's numeric id, e.g. 123456789",
    ),
    # Visitor ids are what POST /webchat/v1/sessions hands out.
    IdentityKind.WEBCHAT: IdentityRule(
        pattern=re.compile(r"^[A-Za-z0-9_-]{8,64}$"),
        hint="webchat identities are visitor ids (8-64 of A-Z a-z 0-9 _ -)",
    ),
}


# ---------------------------------------------------------------- send windows


@dataclass(frozen=True)
class SendWindow:
    """When a provider takes free-form replies: ``hours`` after the customer's last
    message on the channel. ``templates`` lift it entirely (WhatsApp's approved
    templates); a message tag in ``tags`` stretches it to its timedelta, or lifts it
    when that is None (Messenger's update tags are not time-bound)."""

    free_for: timedelta
    remedy: str
    """What the refusal tells the caller to do instead."""
    label: str = ""
    """How the refusal names the channel (default: its value)."""
    templates: bool = False
    tags: Mapping[str, timedelta | None] = field(default_factory=dict)

    def refusal(
        self,
        channel: Channel,
        last_inbound: datetime | None,
        channel_data: Mapping[str, Any],
        now: datetime,
    ) -> tuple[str, str] | None:
        """(error code, reason) when a message with ``channel_data`` may not go now."""
        if self.templates and channel_data.get("template"):
            return None
        tag = channel_data.get("message_tag")
        limit = self.free_for
        if tag and tag in self.tags:
            stretched = self.tags[tag]
            if stretched is None:
                return None
            limit = stretched
        if last_inbound is not None and now - last_inbound < limit:
            return None
        hours = int(limit.total_seconds() // 3600)
        remedy = f"too late even for {tag}" if tag else self.remedy
        return (
            f"{channel.value}_window_closed",
            f"more than {hours} hours since the customer's last "
            f"{self.label or channel.value} message: {remedy}",
        )


# WhatsApp accepts free-form business messages only within 24 hours of the
# customer's last message to us; outside it only approved templates.
WHATSAPP_WINDOW = SendWindow(
    free_for=timedelta(hours=24),
    remedy="only a template can be sent",
    label="WhatsApp",
    templates=True,
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


# ---------------------------------------------------------------- channels


@dataclass(frozen=True)
class Webhook:
    """A function that receives this channel's messages (template.yaml logical id),
    the object that turns its requests into messages, and the secrets it reads."""

    function: str
    adapter: str
    """``"module:attribute"`` of the channel adapter (or the handler's entry point)."""
    secrets: tuple[str, ...] = ()
    """Names given to ``get_secret`` (``<name>_PARAM`` in the function's environment)."""


@dataclass(frozen=True)
class ChannelSpec:
    """Everything the rest of threadline needs to know about one channel."""

    channel: Channel
    identity_kind: IdentityKind
    """The identity that reaches a customer on this channel."""
    provider: str
    """Who carries replies by default (recorded on a queued reply; the sender may
    pick another, see :attr:`sender`)."""
    webhooks: tuple[Webhook, ...] = ()
    sender: str | None = None
    """``"module:factory"`` of a zero-argument factory returning the channel's
    :class:`~threadline.channels.base.Sender`, called on the channel's first
    dispatch. None: replies cannot go out on this channel."""
    sender_secrets: tuple[str, ...] = ()
    """What the sender reads with ``get_secret``: the dispatcher's template block
    must name each as ``<name>_PARAM`` (a test checks)."""
    media_fetchers: Mapping[str, str] = field(default_factory=dict)
    """Provider name -> ``"module:factory"`` of a MediaFetcher for media that arrived
    as a provider id only (WhatsApp Cloud API), downloaded on demand by the API."""
    window: SendWindow | None = None
    reply_channel: Channel | None = None
    """Where a reply goes when this channel carries no written reply (voice: SMS)."""
    feedback_blocks: bool = False
    """The provider's delivery feedback can stop sends to an identity (SES bounces
    and complaints): checked when queueing and again before sending."""
    repeat_is_harmless: bool = False
    """Sending the same reply twice shows it once (the web chat widget keeps one
    entry per message id), so a dispatcher that died while calling the provider
    sends it again instead of failing it ``send_outcome_unknown``."""


_TWILIO_MESSAGING = Webhook(
    "TwilioMessagingFunction", "threadline.channels.twilio:TwilioMessaging", ("TWILIO_AUTH_TOKEN",)
)
_META = Webhook(
    "MetaWebhookFunction",
    "threadline.channels.meta.webhook:MetaWebhook",
    ("META_APP_SECRET", "META_VERIFY_TOKEN"),
)
_META_MEDIA = {"meta": "threadline.channels.meta.media:media_client_from_env"}

CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        Channel.SMS,
        IdentityKind.PHONE,
        "twilio",
        webhooks=(_TWILIO_MESSAGING,),
        sender="threadline.channels.twilio:sender_from_env",
        sender_secrets=("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    ),
    ChannelSpec(
        Channel.WHATSAPP,
        IdentityKind.PHONE,
        "twilio",
        webhooks=(_TWILIO_MESSAGING, _META),
        # Twilio or Meta's Cloud API, whichever the customer last wrote through.
        sender="threadline.channels.whatsapp:sender_from_env",
        sender_secrets=("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "META_ACCESS_TOKEN"),
        media_fetchers=_META_MEDIA,
        window=WHATSAPP_WINDOW,
    ),
    ChannelSpec(
        Channel.VOICE,
        IdentityKind.PHONE,
        "twilio",
        webhooks=(
            Webhook(
                "TwilioVoiceFunction",
                "threadline.channels.twilio_voice:TwilioVoice",
                ("TWILIO_AUTH_TOKEN",),
            ),
        ),
        reply_channel=Channel.SMS,
    ),
    ChannelSpec(
        Channel.EMAIL,
        IdentityKind.EMAIL,
        "ses",
        webhooks=(Webhook("EmailInboundFunction", "threadline.email_inbound:handle_s3_event"),),
        sender="threadline.channels.email.outbound:sender_from_env",
        feedback_blocks=True,
    ),
    ChannelSpec(
        Channel.SLACK,
        IdentityKind.SLACK,
        "slack",
        webhooks=(
            Webhook(
                "SlackEventsFunction",
                "threadline.channels.slack:SlackEvents",
                ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"),
            ),
        ),
        sender="threadline.channels.slack:sender_from_env",
        sender_secrets=("SLACK_BOT_TOKEN",),
    ),
    ChannelSpec(
        Channel.MESSENGER,
        IdentityKind.MESSENGER,
        "meta",
        webhooks=(_META,),
        sender="threadline.channels.meta.senders:messenger_sender_from_env",
        sender_secrets=("META_PAGE_ACCESS_TOKEN",),
        window=MESSENGER_WINDOW,
    ),
    ChannelSpec(
        Channel.INSTAGRAM,
        IdentityKind.INSTAGRAM,
        "meta",
        webhooks=(_META,),
        sender="threadline.channels.meta.senders:instagram_sender_from_env",
        sender_secrets=("META_PAGE_ACCESS_TOKEN",),
        window=INSTAGRAM_WINDOW,
    ),
    ChannelSpec(
        Channel.TELEGRAM,
        IdentityKind.TELEGRAM,
        "telegram",
        webhooks=(
            Webhook(
                "TelegramWebhookFunction",
                "threadline.channels.telegram:TelegramWebhook",
                ("TELEGRAM_SECRET_TOKEN",),
            ),
        ),
        sender="threadline.channels.telegram:sender_from_env",
        sender_secrets=("TELEGRAM_BOT_TOKEN",),
    ),
    ChannelSpec(
        Channel.WEBCHAT,
        IdentityKind.WEBCHAT,
        "webchat",
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
        repeat_is_harmless=True,
    ),
)

_BY_CHANNEL: Mapping[Channel, ChannelSpec] = {spec.channel: spec for spec in CHANNELS}


# ---------------------------------------------------------------- lookups


def channel_spec(channel: Channel) -> ChannelSpec:
    """The declaration of ``channel`` (KeyError for a channel nobody declared)."""
    return _BY_CHANNEL[channel]


def identity_rule(kind: IdentityKind | str) -> IdentityRule:
    return IDENTITY_RULES[IdentityKind(kind)]


def template_channels() -> list[Channel]:
    return [s.channel for s in CHANNELS if s.window is not None and s.window.templates]


def tagged_channels() -> list[Channel]:
    return [s.channel for s in CHANNELS if s.window is not None and s.window.tags]


def resolve(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names, importing its module now."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def sender_factory(channel: Channel) -> Callable[[], Sender] | None:
    """What builds the channel's sender (imported now, called by the dispatcher on the
    channel's first reply); None when replies cannot go out on the channel."""
    reference = channel_spec(channel).sender
    factory: Callable[[], Sender] | None = resolve(reference) if reference else None
    return factory


def media_fetchers() -> dict[str, MediaFetcher]:
    """Provider -> media fetcher, for every channel whose media is downloaded on demand."""
    references = {p: r for spec in CHANNELS for p, r in spec.media_fetchers.items()}
    return {provider: resolve(reference)() for provider, reference in references.items()}
