"""Twilio fallback queue consumer: files messages the fallback route parked on SQS.

A queued request is verified and stored exactly as the messaging webhook would do
it. A request that can never be filed (bad signature, malformed) is dropped with a
warning; anything else (storage down) is reported failed, so SQS keeps it and
offers it again, until the dead-letter queue takes it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.channels.twilio.messaging import TwilioMessaging
from threadline.errors import ThreadlineError
from threadline.logs import logger
from threadline.secrets import get_secret
from threadline.settings import store_settings, webhook_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced
from threadline.webhook import process_request, request_from_queue

# The route Twilio called, and so the URL it signed.
FALLBACK_PATH = "/webhooks/twilio/fallback"

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
channel = TwilioMessaging(auth_token=lambda: get_secret("TWILIO_AUTH_TOKEN"))
store = TimelineStore(store_settings())


def file_record(record: SQSRecord) -> None:
    attributes = {
        name: value.string_value or "" for name, value in (record.message_attributes or {}).items()
    }
    request = request_from_queue(
        record.body or "",
        attributes,
        FALLBACK_PATH,
        signature_header="X-Twilio-Signature",
        public_base_url=webhook_settings().public_base_url,
    )
    try:
        process_request(request, channel, store)
    except ThreadlineError as error:
        if error.status >= 500:
            raise
        # Retrying cannot make a forged or malformed request valid.
        logger.warning(
            "queued webhook dropped",
            extra={"provider": channel.provider, "status": error.status, "code": error.code},
        )


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=file_record, processor=processor, context=context
    )
