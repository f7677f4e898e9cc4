"""Table stream consumer: publishes committed changes as events on the threadline bus."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline import aws
from threadline.events import events_from_stream_record, publish
from threadline.logs import logger
from threadline.settings import required_env
from threadline.telemetry import traced

processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
)
bus_name = required_env("EVENT_BUS_NAME")


def publish_record(record: DynamoDBRecord) -> None:
    publish(events_from_stream_record(record.raw_event), bus_name, aws.events())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=publish_record, processor=processor, context=context
    )
