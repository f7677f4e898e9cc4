"""WhatsApp replies: two providers carry the channel, Twilio and Meta's Cloud API.

Inbound WhatsApp arrives through either webhook (:mod:`threadline.channels.twilio.messaging`,
:mod:`threadline.channels.meta.whatsapp`), and each records on the customer's
identity which one it came through (``reply_to["whatsapp_provider"]``). A reply goes
back the same way; the registry names :func:`sender_from_env` as WhatsApp's sender.
"""

from __future__ import annotations

from collections.abc import Mapping

from threadline.channels.base import Sender, SendResult
from threadline.schema import Message

# Where inbound messages record the provider a customer wrote through on a channel
# with several (docs/outbound.md).
PROVIDER_KEY = "whatsapp_provider"


class ProviderChoice:
    """Several providers carry one channel (WhatsApp: Twilio and Meta's Cloud API).

    A reply goes through the provider the customer last wrote through on the channel
    (``reply_to["whatsapp_provider"]``, recorded on their identity by every
    inbound WhatsApp message); a template needs Meta; else the default provider.
    """

    def __init__(self, senders: Mapping[str, Sender], default: str) -> None:
        if default not in senders:
            raise ValueError(f"default provider {default} has no sender")
        self.senders = dict(senders)
        self.default = default
        self.provider = default

    def pick(self, message: Message) -> Sender:
        reply_to = message.channel_data.get("reply_to") or {}
        wanted = reply_to.get(PROVIDER_KEY)
        if message.channel_data.get("template") and "meta" in self.senders:
            wanted = "meta"
        return self.senders.get(str(wanted), self.senders[self.default])

    def send(self, message: Message) -> SendResult:
        return self.pick(message).send(message)


def sender_from_env() -> ProviderChoice:
    """The provider the customer last wrote through, else Twilio when its WhatsApp
    sender is configured, else Meta's Cloud API (docs/outbound.md)."""
    from threadline.channels.meta.senders import whatsapp_sender_from_env
    from threadline.channels.twilio import messaging as twilio

    twilio_sender = twilio.sender_from_env()
    return ProviderChoice(
        {"twilio": twilio_sender, "meta": whatsapp_sender_from_env()},
        default="twilio" if twilio_sender.whatsapp_from else "meta",
    )
