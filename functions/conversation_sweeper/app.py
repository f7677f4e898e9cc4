"""Scheduled: closes the conversations whose quiet period has ended."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.logs import logger
from threadline.outbound_store import OutboundStore
from threadline.settings import store_settings
from threadline.telemetry import traced

# The outbound store: a resolved close may queue the satisfaction question.
store = OutboundStore(store_settings())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return {"closed": store.close_due_conversations()}
