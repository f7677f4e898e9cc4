"""S3 ObjectCreated on the inbound mail bucket (SES receipt rule): raw mail onto the timeline."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.email_inbound import handle_s3_event
from threadline.logs import logger
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced

store = TimelineStore(store_settings())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A storage failure raises: S3 invoked us asynchronously and Lambda retries it.
    outcomes = handle_s3_event(event, store)
    return {
        "filed": sum(1 for o in outcomes if o.result is not None),
        "skipped": [o.skipped for o in outcomes if o.skipped],
    }
