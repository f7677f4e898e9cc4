"""SNS notifications from SES (bounces, complaints, deliveries) for the replies we sent."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.email_feedback import handle_sns_event
from threadline.logs import logger
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced

store = TimelineStore(store_settings())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A storage failure raises: SNS invoked us asynchronously and Lambda retries it.
    outcomes = handle_sns_event(event, store)
    return {"applied": [o.kind for o in outcomes]}
