"""Webhook delivery: one signed POST per job, retried with backoff, recorded per attempt."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from threadline import aws
from threadline.crm_webhooks import (
    Deliverer,
    DeliveryJob,
    DeliverySettings,
    RetryDelivery,
)
from threadline.logs import logger
from threadline.settings import required_env, store_settings
from threadline.subscriptions import SubscriptionStore
from threadline.telemetry import traced

# A failed job holds back the later jobs of its message group (one subscriber, one
# customer) only; other groups in the batch carry on.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# Report every failed record, even when all failed, so only those come back (the
# FIFO processor takes no such argument).
processor.raise_on_entire_batch_failure = False
table_name = store_settings().table_name
queue_url = required_env("WEBHOOK_DELIVERY_QUEUE_URL")
dead_letter_url = required_env("WEBHOOK_DEAD_LETTER_QUEUE_URL")
settings = DeliverySettings(
    max_attempts=int(required_env("WEBHOOK_MAX_ATTEMPTS")),
    retry_base_seconds=float(required_env("WEBHOOK_RETRY_BASE_SECONDS")),
    allow_private_targets=os.environ.get("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false") == "true",
)
# This batch's jobs that asked to be retried: message id -> (group, seconds to wait).
retries: dict[str, tuple[str, int]] = {}
# A POST can take the whole HTTP timeout plus connecting; one that might not finish
# before Lambda's timeout is not started (its job comes straight back instead).
TIME_NEEDED_MS = int((settings.timeout_seconds + 5) * 1000)
invocation: dict[str, LambdaContext] = {}


def dead_letter(job: DeliveryJob, reason: str) -> None:
    aws.sqs().send_message(
        QueueUrl=dead_letter_url,
        MessageBody=json.dumps({"job": job.model_dump(mode="json"), "reason": reason}),
        MessageGroupId=job.group_id,
        MessageDeduplicationId=job.deduplication_id,
    )


@cache
def deliverer() -> Deliverer:
    """Built by the first batch: the HTTP client's pool (urllib3) is not a cold start's."""
    from threadline.http import http_client

    return Deliverer(
        SubscriptionStore(table_name),
        http_client(),
        settings,
        dead_letter=dead_letter,
    )


def deliver_record(record: SQSRecord) -> None:
    try:
        job = DeliveryJob.model_validate_json(record.body)
    except ValidationError:
        # Never deliverable: parked for an operator rather than retried for hours.
        group = record.attributes.message_group_id or "malformed"
        aws.sqs().send_message(
            QueueUrl=dead_letter_url,
            MessageBody=json.dumps({"body": record.body, "reason": "not a delivery job"}),
            MessageGroupId=group,
            MessageDeduplicationId=record.message_id,
        )
        logger.error("not a delivery job; dead-lettered", extra={"message_id": record.message_id})
        return
    context = invocation.get("context")
    try:
        if context is not None and context.get_remaining_time_in_millis() < TIME_NEEDED_MS:
            raise RetryDelivery(0, "not enough time left in this invocation")
        deliverer().deliver(job)
    except RetryDelivery as retry:
        retries[record.message_id] = (job.group_id, int(retry.delay))
        raise


def _reschedule(event: dict[str, Any], response: PartialItemFailureResponse) -> None:
    """Hide each job to be retried until its retry is due; release the jobs skipped
    behind it in its group at once.

    SQS hands out none of a FIFO group's jobs while one of them is in flight, so
    the skipped jobs come back after the retried one, in order, without waiting
    for the queue's visibility timeout. Jobs that failed otherwise (an exception)
    come back after the visibility timeout, as Lambda would have it.
    """
    failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
    retried_groups = {group for group, _ in retries.values()}
    entries: list[Any] = []
    for record in event.get("Records", []):
        message_id = record["messageId"]
        group = (record.get("attributes") or {}).get("MessageGroupId")
        if message_id not in failed:
            continue
        if message_id in retries:
            delay = retries[message_id][1]
        elif group in retried_groups:
            delay = 0
        else:
            continue
        entries.append(
            {
                "Id": str(len(entries)),
                "ReceiptHandle": record["receiptHandle"],
                "VisibilityTimeout": delay,
            }
        )
    for start in range(0, len(entries), 10):
        try:
            aws.sqs().change_message_visibility_batch(
                QueueUrl=queue_url, Entries=entries[start : start + 10]
            )
        except Exception:  # the jobs still come back, after the visibility timeout
            logger.exception("could not reschedule webhook jobs")


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    retries.clear()
    deliverer().start_batch()
    invocation["context"] = context
    response = process_partial_response(
        event=event, record_handler=deliver_record, processor=processor, context=context
    )
    _reschedule(event, response)
    return response
