"""POST /webhooks/telegram: Telegram Bot API updates (messages, edits, media, button taps)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.channels.telegram.inbound import TelegramWebhook
from threadline.logs import logger
from threadline.secrets import get_secret
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced
from threadline.webhook import handle_webhook

channel = TelegramWebhook(secret_token=lambda: get_secret("TELEGRAM_SECRET_TOKEN"))
store = TimelineStore(store_settings())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_webhook(event, channel, store)
