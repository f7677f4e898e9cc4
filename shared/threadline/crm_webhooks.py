"""Signed webhooks for CRMs: every event on the bus, POSTed to each subscriber.

The path (docs/events.md, "Signed webhooks"):

1. An EventBridge rule sends every threadline event to the FIFO events queue.
2. The fan-out worker reads the subscriptions once per batch and, for each
   subscription that wants the event, puts a :class:`DeliveryJob` on the FIFO
   delivery queue. Its message group is ``<subscription>:<customer>``: one
   customer's events reach one subscriber in order, and a subscriber that fails
   holds back only its own deliveries, never another subscriber's.
3. The delivery worker signs the event (Standard Webhooks, ``standardwebhooks``)
   and POSTs it through :mod:`threadline.http`. 2xx: delivered. 429, 5xx, timeouts
   and connection errors: retried with exponential backoff (``Retry-After``
   honoured) by hiding the job on the queue. 410: the subscription is disabled.
   Any other answer: a final failure. After ``max_attempts`` the job goes to the
   dead-letter queue. Every attempt is recorded (never the payload).

The webhook body is the event exactly as on the bus (its ``detail``), so it
validates against infra/schemas/event.<type>.v1.json; ``webhook-id`` is the
event's ``id``, the same on every retry, so a receiver can deduplicate.

An operator's redelivery (:func:`redeliver`) reopens failed deliveries in the table
and puts their stored jobs back on the same delivery queue: the same worker, the same
retries, the same ``webhook-id``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from threadline.errors import Conflict, NotFound
from threadline.items import new_id
from threadline.logs import logger
from threadline.model import Model
from threadline.schema import utc_now
from threadline.ssrf import Resolver, UrlNotAllowed, UrlUnresolvable, check_target, system_resolver
from threadline.subscriptions import (
    DeliveryAttempt,
    DeliveryStatus,
    SigningSecrets,
    Subscription,
    SubscriptionState,
    SubscriptionStore,
)

if TYPE_CHECKING:
    # The HTTP client (urllib3) is the delivery worker's alone: the fan-out and the API
    # import this module without it.
    from threadline.http import HttpClient

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_BASE_SECONDS = 5.0
BACKOFF_FACTOR = 4
# SQS cannot hide a message for longer than 12 hours.
MAX_RETRY_DELAY_SECONDS = 12 * 3600
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_ERROR_LENGTH = 300


class DeliveryJob(Model):
    """One event for one subscription: the body of a delivery-queue message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: str
    event_id: str
    event_type: str
    customer_id: str | None = None
    # The event JSON exactly as it will be signed and sent.
    payload: str = Field(repr=False)
    # 0 for the fan-out's job; n for an operator's n-th redelivery of the event.
    redelivery: int = Field(default=0, ge=0)

    @property
    def group_id(self) -> str:
        """The FIFO message group: one subscriber's view of one customer."""
        return f"{self.subscription_id}:{self.customer_id or '-'}"

    @property
    def deduplication_id(self) -> str:
        # A redelivery is a new message for SQS (its 5-minute deduplication would drop
        # it); a repeated request for the same redelivery is stopped by the table.
        suffix = f":r{self.redelivery}" if self.redelivery else ""
        return f"{self.subscription_id}:{self.event_id}{suffix}"


@dataclass
class RetryDelivery(Exception):
    """The receiver could not take the event now; try again after ``delay`` seconds."""

    delay: float
    reason: str


def backoff_seconds(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = DEFAULT_RETRY_BASE_SECONDS,
) -> int:
    """Seconds to wait after failed attempt ``attempt`` (1-based).

    ``base`` x 4^(attempt-1): with the default 5 s, retries come after 5 s, 20 s,
    80 s, about 5 min, 21 min, 85 min and 5.7 h (8 attempts over about 7.5 hours).
    A receiver's ``Retry-After`` replaces the schedule for that retry. Whole seconds
    (SQS visibility), at least 1, at most 12 hours.
    """
    delay = base * BACKOFF_FACTOR ** max(attempt - 1, 0) if retry_after is None else retry_after
    return int(min(max(math.ceil(delay), 1), MAX_RETRY_DELAY_SECONDS))


# --------------------------------------------------------------------- fan-out


def event_from_envelope(body: str) -> tuple[str, dict[str, Any]]:
    """(detail-type, detail) of an EventBridge event as the rule delivers it to SQS."""
    try:
        envelope = json.loads(body)
        detail_type, detail = envelope["detail-type"], envelope["detail"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError("not an EventBridge event") from exc
    if not isinstance(detail_type, str) or not isinstance(detail, dict):
        raise ValueError("an EventBridge event has a detail-type and a detail object")
    if not isinstance(detail.get("id"), str) or not detail["id"]:
        raise ValueError("a threadline event has an id")
    return detail_type, detail


def jobs_for(
    detail_type: str, detail: dict[str, Any], subscriptions: Iterable[Subscription]
) -> list[DeliveryJob]:
    """A delivery job for every subscription that wants this event."""
    wanted = [s for s in subscriptions if s.wants(detail_type)]
    if not wanted:
        return []
    payload = json.dumps(detail, separators=(",", ":"), ensure_ascii=False)
    customer_id = detail.get("customer_id")
    return [
        DeliveryJob(
            subscription_id=subscription.id,
            event_id=str(detail["id"]),
            event_type=detail_type,
            customer_id=str(customer_id) if customer_id else None,
            payload=payload,
        )
        for subscription in wanted
    ]


def enqueue(jobs: list[DeliveryJob], queue_url: str, sqs: Any) -> None:
    """Put ``jobs`` on the FIFO delivery queue, in order; raise if any was refused."""
    for start in range(0, len(jobs), 10):  # SendMessageBatch takes at most 10
        chunk = jobs[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {
                    "Id": str(index),
                    "MessageBody": job.model_dump_json(),
                    "MessageGroupId": job.group_id,
                    # A re-sent job (a retried fan-out) within 5 minutes is dropped
                    # by SQS; later ones by the delivery state's condition.
                    "MessageDeduplicationId": job.deduplication_id,
                }
                for index, job in enumerate(chunk)
            ],
        )
        if response.get("Failed"):
            codes = sorted({str(failure.get("Code")) for failure in response["Failed"]})
            raise RuntimeError(f"SQS refused {len(response['Failed'])} delivery jobs: {codes}")


# --------------------------------------------------------------------- delivery


def signed_headers(
    secret: str, event_id: str, payload: str, at: datetime, *, also: Sequence[str] = ()
) -> dict[str, str]:
    """The Standard Webhooks headers for ``payload`` sent at ``at``.

    ``also``: more secrets that sign it (a rotation's overlap); their signatures
    follow the first, space-separated, as Standard Webhooks allows.
    """
    from standardwebhooks import Webhook  # pure Python, imported where it is used

    signatures = [Webhook(key).sign(event_id, at, payload) for key in (secret, *also)]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base_seconds: float = DEFAULT_RETRY_BASE_SECONDS
    allow_private_targets: bool = False
    timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS


DeadLetter = Callable[[DeliveryJob, str], None]


class Deliverer:
    """Delivers one job: one signed POST, one recorded attempt."""

    def __init__(
        self,
        store: SubscriptionStore,
        http: HttpClient,
        settings: DeliverySettings,
        *,
        dead_letter: DeadLetter,
        resolver: Resolver = system_resolver,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.http = http
        self.settings = settings
        self.dead_letter = dead_letter
        self.resolver = resolver
        self.clock = clock
        # Subscriptions read during one batch: a batch's jobs mostly share a few.
        self._batch: dict[str, tuple[Subscription, SigningSecrets] | None] = {}

    def start_batch(self) -> None:
        """Forget the subscriptions read for the previous batch (call once per invocation)."""
        self._batch.clear()

    def _subscription(self, subscription_id: str) -> tuple[Subscription, SigningSecrets] | None:
        if subscription_id not in self._batch:
            self._batch[subscription_id] = self.store.get_with_secrets(subscription_id)
        return self._batch[subscription_id]

    def deliver(self, job: DeliveryJob) -> DeliveryStatus | None:
        """Deliver ``job``; None when there was nothing to do (gone, disabled, done).

        Raises :class:`RetryDelivery` when the receiver should be tried again later.
        """
        from threadline.http import TransportError

        found = self._subscription(job.subscription_id)
        if found is None or found[0].state is not SubscriptionState.ENABLED:
            logger.info(
                "subscription deleted or disabled; event dropped",
                extra={"subscription_id": job.subscription_id, "event_id": job.event_id},
            )
            return None
        subscription, secrets = found
        now = self.clock()
        signing = secrets.at(now)
        attempt = self.store.claim_attempt(job.subscription_id, job.event_id, now=now)
        if attempt is None:
            logger.info(
                "event already delivered or failed for good; not sent again",
                extra={"subscription_id": job.subscription_id, "event_id": job.event_id},
            )
            return None
        started = time.perf_counter()
        status_code: int | None = None
        retry_after: float | None = None
        try:
            checked = check_target(
                subscription.url,
                allow_private=self.settings.allow_private_targets,
                resolver=self.resolver,
            )
            response = self.http.request(
                "POST",
                subscription.url,
                body=job.payload.encode(),
                headers=signed_headers(
                    signing[0], job.event_id, job.payload, now, also=signing[1:]
                ),
                timeout=self.settings.timeout_seconds,
                # The address just checked, not a second DNS answer (rebinding).
                connect_to=checked[0] if checked else None,
            )
        except UrlUnresolvable as error:
            outcome, reason = DeliveryStatus.RETRYING, error.message
        except UrlNotAllowed as error:
            outcome, reason = DeliveryStatus.FAILED, error.message
        except TransportError as error:
            outcome = DeliveryStatus.RETRYING
            reason = "timed out" if error.timed_out else str(error)
        else:
            status_code = response.status
            retry_after = response.retry_after() if response.status == 429 else None
            if response.ok:
                outcome, reason = DeliveryStatus.DELIVERED, ""
            elif response.status == 410:
                outcome, reason = DeliveryStatus.GONE, "the receiver answered 410 Gone"
            elif response.retryable:
                outcome, reason = DeliveryStatus.RETRYING, f"the receiver answered {status_code}"
            else:
                outcome, reason = DeliveryStatus.FAILED, f"the receiver answered {status_code}"
        duration_ms = int((time.perf_counter() - started) * 1000)
        last_attempt = attempt >= self.settings.max_attempts
        if outcome is DeliveryStatus.RETRYING and last_attempt:
            outcome = DeliveryStatus.FAILED
            reason = f"{reason}; gave up after {attempt} attempts"
        delay = (
            backoff_seconds(attempt, retry_after, base=self.settings.retry_base_seconds)
            if outcome is DeliveryStatus.RETRYING
            else None
        )
        record = DeliveryAttempt(
            id=new_id(now),
            subscription_id=job.subscription_id,
            event_id=job.event_id,
            event_type=job.event_type,
            customer_id=job.customer_id,
            attempt=attempt,
            status=outcome,
            response_status=status_code,
            duration_ms=duration_ms,
            error=reason[:MAX_ERROR_LENGTH] or None,
            attempted_at=now,
            next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None,
        )
        if outcome is DeliveryStatus.FAILED and last_attempt:
            # Kept for an operator (the alarm fires) before the history says failed.
            self.dead_letter(job, reason)
        self.store.record_attempt(
            record, payload=job.payload if outcome is DeliveryStatus.FAILED else None
        )
        if outcome is DeliveryStatus.GONE:
            self.store.disable(job.subscription_id, reason, now=now)
            self._batch[job.subscription_id] = None
        log_fields = {
            "subscription_id": job.subscription_id,
            "event_id": job.event_id,
            "attempt": attempt,
            "status": outcome.value,
            "response_status": status_code,
            "duration_ms": duration_ms,
        }
        if outcome is DeliveryStatus.DELIVERED:
            logger.info("webhook delivered", extra=log_fields)
        else:
            logger.warning(f"webhook not delivered: {reason}", extra=log_fields)
        if delay is not None:
            raise RetryDelivery(delay, reason)
        return outcome


# --------------------------------------------------------------------- redelivery


def redeliver(
    store: SubscriptionStore,
    subscription_id: str,
    event_ids: Iterable[str],
    put_jobs: Callable[[list[DeliveryJob]], None],
) -> int:
    """Put failed deliveries back on the delivery queue: how many were queued.

    Each is reopened in the table first (a condition: a repeated request, or one for
    an event not failed, reopens nothing), then queued; a job the queue refused is
    marked failed again, so a later request can retry it.
    """
    found = store.get(subscription_id)
    if found is None:
        raise NotFound("no such subscription")
    if found.state is not SubscriptionState.ENABLED:
        raise Conflict(
            "the subscription is disabled (its receiver answered 410); nothing is delivered",
            code="subscription_disabled",
        )
    jobs: list[DeliveryJob] = []
    for event_id in dict.fromkeys(event_ids):
        reopened = store.reopen_failed(subscription_id, event_id)
        if reopened is None:
            continue
        jobs.append(
            DeliveryJob(
                subscription_id=subscription_id,
                event_id=event_id,
                event_type=str(reopened["event_type"]),
                customer_id=reopened.get("customer_id"),
                payload=str(reopened["payload"]),
                redelivery=int(reopened["redeliveries"]),
            )
        )
    try:
        put_jobs(jobs)
    except Exception:
        for job in jobs:
            store.close_reopened(subscription_id, job.event_id)
        raise
    logger.info(
        "failed webhook deliveries queued again",
        extra={"subscription_id": subscription_id, "queued": len(jobs)},
    )
    return len(jobs)
