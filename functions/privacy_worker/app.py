"""Privacy queue consumer: builds customers' exports and carries out erasures."""

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

from threadline.logs import logger
from threadline.privacy import JobKind, PrivacyService, PrivacySettings, job_from_queue_body
from threadline.settings import store_settings
from threadline.store import TimelineStore
from threadline.telemetry import traced

# A failed job is reported and redelivered; every job resumes where it stopped.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
service = PrivacyService(TimelineStore(store_settings()), PrivacySettings.from_env())


def run_record(record: SQSRecord) -> None:
    kind, customer_id, job_id = job_from_queue_body(record.body)
    if kind is JobKind.EXPORT:
        service.run_export(customer_id, job_id)
    else:
        service.run_erasure(customer_id, job_id)


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=run_record, processor=processor, context=context
    )
