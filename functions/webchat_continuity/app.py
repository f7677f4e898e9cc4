"""Web chat replies the visitor did not see, sent on by e-mail after a delay (SQS)."""

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

from threadline.channels.webchat.sender import continuation_job, continue_by_email
from threadline.logs import logger
from threadline.outbound_store import OutboundStore
from threadline.settings import store_settings
from threadline.telemetry import traced

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# The outbound store is all a continuation needs (read, resolve, queue); the customer
# store's profile writes and merges are the API's.
store = OutboundStore(store_settings())


def continue_record(record: SQSRecord) -> None:
    customer_id, message_id = continuation_job(record.body)
    continue_by_email(store, customer_id, message_id)


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=continue_record, processor=processor, context=context
    )
