"""Every channel threadline speaks, declared once, by the channel itself: the
registry the rest of the code reads.

Each channel package under ``threadline.channels`` has a ``spec`` module that
declares its channels (:class:`ChannelSpec`: identity kind, provider, webhooks and
their secrets, a lazy sender factory, media fetchers, send window, reply fallback)
and the identity kinds it introduces (:class:`IdentityRule`). This module finds
those ``spec`` modules by looking at the package's folders, so adding a channel
touches its own package and nothing here. The ``Channel`` and ``IdentityKind``
enums of the common schema are built from what the packages declare.

The dispatcher, the outbound rules (identity, provider, send window, where a reply to
a call goes), identity canonicalization, the API's media route and the template
checks all derive from the declarations; ``tests/unit/test_channel_registry.py``
fails when another module lists channels by hand. docs/channels.md ("Adding a
channel") walks through it.

Importing this module is cheap on purpose (``threadline.schema`` imports it): a
``spec`` module imports nothing but this module's dataclasses, and names senders,
adapters and media fetchers as ``"module:attribute"`` strings that are imported only
when first used, so no handler pays for twilio, slack_sdk or urllib3 before it sends.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import EnumMeta, StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from threadline.channels.base import Sender
    from threadline.media import MediaFetcher

# ---------------------------------------------------------------- what a spec declares


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

    name: str
    """The channel's value in the common schema (``Channel(name)``)."""
    identity: str
    """The identity kind that reaches a customer on this channel."""
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
    reply_via: str | None = None
    """The channel a reply goes by when this one carries no written reply (voice: sms)."""
    feedback_blocks: bool = False
    """The provider's delivery feedback can stop sends to an identity (SES bounces
    and complaints): checked when queueing and again before sending."""
    repeat_is_harmless: bool = False
    """Sending the same reply twice shows it once (the web chat widget keeps one
    entry per message id), so a dispatcher that died while calling the provider
    sends it again instead of failing it ``send_outcome_unknown``."""

    @property
    def channel(self) -> Channel:
        return Channel(self.name)

    @property
    def identity_kind(self) -> IdentityKind:
        return IdentityKind(self.identity)

    @property
    def reply_channel(self) -> Channel | None:
        return Channel(self.reply_via) if self.reply_via else None


# ---------------------------------------------------------------- the declarations

SPEC_MODULE = "spec"
"""The module of a channel package that declares it: ``CHANNELS`` (a tuple of
:class:`ChannelSpec`) and, for identity kinds it introduces, ``IDENTITY_RULES``."""


def _spec_modules(root: str, package: str) -> list[Any]:
    """Every ``<package>.<folder>.spec`` under ``root``, in folder-name order. A folder
    listing rather than pkgutil: it is what runs on every cold start."""
    folders = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and os.path.isfile(os.path.join(entry.path, f"{SPEC_MODULE}.py"))
    )
    return [importlib.import_module(f"{package}.{name}.{SPEC_MODULE}") for name in folders]


def declared(
    root: str = os.path.dirname(__file__), package: str = __package__ or "threadline.channels"
) -> tuple[tuple[ChannelSpec, ...], dict[str, IdentityRule]]:
    """The channels (sorted by name) and identity rules the ``spec`` modules of the
    packages under ``root`` declare; ValueError when two declare the same channel or
    identity kind, or a channel's identity kind has no rule."""
    specs: list[ChannelSpec] = []
    rules: dict[str, IdentityRule] = {}
    for module in _spec_modules(root, package):
        specs += getattr(module, "CHANNELS", ())
        for kind, rule in getattr(module, "IDENTITY_RULES", {}).items():
            if kind in rules:
                raise ValueError(f"identity kind {kind!r} is declared twice ({module.__name__})")
            rules[kind] = rule
    names = [spec.name for spec in specs]
    if len(names) != len(set(names)):
        raise ValueError(f"a channel is declared twice: {sorted(names)}")
    missing = {spec.identity for spec in specs} - set(rules)
    if missing:
        raise ValueError(f"identity kinds without an IDENTITY_RULES entry: {sorted(missing)}")
    return tuple(sorted(specs, key=lambda spec: spec.name)), dict(sorted(rules.items()))


_SPECS, _RULES = declared()

# The two enums are the common schema's (threadline.schema re-exports them, and the
# JSON Schemas under infra/schemas list their values), built from the declarations.
# mypy cannot see members made at run time: the stand-ins below let it type
# ``Channel.SMS`` as a Channel; a misspelt member still fails the first test to run it.
_EnumT = TypeVar("_EnumT")

if TYPE_CHECKING:

    class _DeclaredMembers(EnumMeta):
        def __getattr__(cls: type[_EnumT], name: str) -> _EnumT: ...

    class Channel(StrEnum, metaclass=_DeclaredMembers):
        """A channel some package declares."""

    class IdentityKind(StrEnum, metaclass=_DeclaredMembers):
        """An identity kind some package declares."""

else:
    Channel = StrEnum(
        "Channel",
        [(spec.name.upper(), spec.name) for spec in _SPECS],
        module=__name__,
        qualname="Channel",
    )
    IdentityKind = StrEnum(
        "IdentityKind",
        [(kind.upper(), kind) for kind in _RULES],
        module=__name__,
        qualname="IdentityKind",
    )

CHANNELS: tuple[ChannelSpec, ...] = _SPECS
IDENTITY_RULES: Mapping[IdentityKind, IdentityRule] = {
    IdentityKind(kind): rule for kind, rule in _RULES.items()
}
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
