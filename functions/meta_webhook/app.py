"""GET|POST /webhooks/meta: WhatsApp Cloud API, Messenger and Instagram (handshake + events)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.channels.meta.webhook import MetaWebhook
from threadline.logs import logger
from threadline.secrets import get_secret
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced
from threadline.webhook import handle_webhook

channel = MetaWebhook(
    app_secret=lambda: get_secret("META_APP_SECRET"),
    verify_token=lambda: get_secret("META_VERIFY_TOKEN"),
)
store = TimelineStore(store_settings())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_webhook(event, channel, store)
