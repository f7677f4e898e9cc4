"""Webhook fan-out: each event on the bus becomes one delivery job per subscriber."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline import aws
from threadline.crm_webhooks import enqueue, event_from_envelope, jobs_for
from threadline.logs import logger
from threadline.settings import required_env, store_settings
from threadline.subscriptions import Subscription, SubscriptionStore
from threadline.telemetry import traced

# In order: once one event fails, the rest of the batch is reported failed too, so
# no event overtakes an earlier one.
processor = SqsFifoPartialProcessor()
# Report every failed record, even when all failed, so only those come back (the
# FIFO processor takes no such argument).
processor.raise_on_entire_batch_failure = False
store = SubscriptionStore(store_settings().table_name)
queue_url = required_env("WEBHOOK_DELIVERY_QUEUE_URL")
# Read once per batch (consistent: a subscription made a moment ago gets its events).
subscriptions: list[Subscription] = []


def fan_out_record(record: SQSRecord) -> None:
    try:
        detail_type, detail = event_from_envelope(record.body)
    except ValueError:
        # It can never become deliverable; failing it would hold back every later
        # event (one FIFO group) until the queue's redrive moved it.
        logger.error("not a threadline event; skipped", extra={"message_id": record.message_id})
        return
    enqueue(jobs_for(detail_type, detail, subscriptions), queue_url, aws.sqs())


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    subscriptions[:] = store.all(consistent=True)
    return process_partial_response(
        event=event, record_handler=fan_out_record, processor=processor, context=context
    )
