"""POST /webhooks/slack/events: Slack Events API (messages, mentions, DMs, edits)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.channels.slack.events import SlackEvents, directory_from_env
from threadline.logs import logger
from threadline.secrets import get_secret
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced
from threadline.webhook import handle_webhook

channel = SlackEvents(
    signing_secret=lambda: get_secret("SLACK_SIGNING_SECRET"), directory=directory_from_env()
)
store = TimelineStore(store_settings())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_webhook(event, channel, store)
