"""Dispatch queue consumer: sends queued replies through their channel's provider."""

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

from threadline import aws
from threadline.logs import logger
from threadline.outbound import (
    Dispatcher,
    RetryLater,
    claim_timeout_from_env,
    job_from_queue_body,
)
from threadline.outbound_store import OutboundStore
from threadline.settings import required_env, store_settings
from threadline.telemetry import traced

# Report every failed record, even when all failed, so Lambda retries just those.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# Each channel's sender is built from the channel registry on its first reply.
dispatcher = Dispatcher(OutboundStore(store_settings()), claim_timeout=claim_timeout_from_env())
queue_url = required_env("DISPATCH_QUEUE_URL")


def dispatch_record(record: SQSRecord) -> None:
    customer_id, message_id = job_from_queue_body(record.body)
    attempt = int(record.attributes.approximate_receive_count)
    try:
        dispatcher.dispatch(customer_id, message_id, attempt=attempt)
    except RetryLater as retry:
        # Back off by hiding the job for a while; reporting it failed makes SQS keep it.
        aws.sqs().change_message_visibility(
            QueueUrl=queue_url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=int(retry.delay),
        )
        raise


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=dispatch_record, processor=processor, context=context
    )
