"""Telegram Bot API: updates in (:mod:`.inbound`), replies out (:mod:`.outbound`)."""

from threadline.channels.telegram.inbound import PROVIDER as PROVIDER
from threadline.channels.telegram.inbound import TelegramWebhook as TelegramWebhook
from threadline.channels.telegram.inbound import normalize_update as normalize_update
from threadline.channels.telegram.outbound import TelegramSender as TelegramSender
from threadline.channels.telegram.outbound import sender_from_env as sender_from_env
