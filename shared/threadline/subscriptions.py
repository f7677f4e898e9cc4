"""Webhook subscriptions of CRMs and the history of every delivery attempt.

Items (docs/storage.md):

* ``SUBS`` / ``SUB#<ulid>``: a subscription (URL, event types, signing secret,
  state). All subscriptions share one partition, so the fan-out reads them with a
  single Query (no scan); a stack has tens of subscribers, not millions.
* ``SUB#<id>`` / ``EVT#<event id>``: one event's delivery to one subscription:
  how many attempts were made and, once final, the outcome. Its condition makes
  a redelivered job (SQS is at least once) POST nothing after a success.
* ``SUB#<id>`` / ``DLV#<ulid>``: one attempt, for ``GET .../deliveries`` (newest
  first). Never the payload: status, attempt, response code, duration, error.

History and delivery state expire after ``HISTORY_DAYS`` (the table's TTL).

The signing secret lives in the subscription item, under the table's encryption
at rest, not in Secrets Manager: the worker needs it for every delivery, and one
GetItem already reads the subscription (URL, state). Secrets Manager would add a
call (or a cache that outlives a rotation) and a per-secret monthly charge for each
subscriber. The API returns the secret once, in the answer to the POST (and a new
one in the answer to a rotation).

Rotation keeps the previous secret in the item until ``previous_secret_until``:
during that overlap every delivery is signed with both (Standard Webhooks allows
several space-separated signatures), so a receiver can switch secrets at its pace.

A delivery that failed for good keeps its payload in its ``EVT#`` item (only failed
ones: a delivered event's payload is not stored), so an operator can redeliver it
through the delivery queue: the item is reopened (outcome removed, attempts reset)
under a condition, which makes a repeated redelivery request queue nothing twice.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, field_validator

from threadline.dal.base import Delete, Put, Update, Write, WriteCancelled, put_once
from threadline.dal.dynamodb import DynamoTable
from threadline.errors import Conflict, NotFound, ThreadlineError
from threadline.items import IDEMPOTENCY_SK, expires_at, new_id
from threadline.model import Model
from threadline.schema import utc_now

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SUBS_PK = "SUBS"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32
HISTORY_DAYS = 30
MAX_PAGE_SIZE = 100
MAX_SUBSCRIPTIONS = 100
# An Idempotency-Key is remembered a week (DynamoDB TTL), as for sending a reply.
IDEMPOTENCY_DAYS = 7
# How long a rotated-out secret keeps signing deliveries next to the new one.
DEFAULT_ROTATION_OVERLAP_HOURS = 24
MAX_ROTATION_OVERLAP_HOURS = 7 * 24

# Every detail-type a subscription may name: the design's catalog. A filter with a
# typo would otherwise match nothing, silently.
KNOWN_EVENT_TYPES = frozenset(
    {
        "message.received",
        "message.queued",
        "message.note_added",
        "message.sent",
        "message.status_changed",
        "conversation.opened",
        "conversation.channel_switched",
        "conversation.closed",
        "conversation.reopened",
        "conversation.rated",
        "customer.created",
        "customer.identity_linked",
        "customer.merged",
        "customer.erased",
    }
)


class TooManySubscriptions(ThreadlineError):
    status = 422
    code = "too_many_subscriptions"


class SubscriptionState(StrEnum):
    ENABLED = "enabled"
    # The receiver answered 410 Gone; nothing more is delivered.
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    # This attempt failed; another follows at next_attempt_at.
    RETRYING = "retrying"
    # Final: a 4xx, a refused URL, or the last attempt failed (then also dead-lettered).
    FAILED = "failed"
    # The receiver answered 410: the subscription is disabled.
    GONE = "gone"


class _Model(Model):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SubscriptionRequest(_Model):
    """``POST /v1/subscriptions``."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="where events are POSTed; https, public host (no private addresses)",
    )
    event_types: list[str] = Field(
        default_factory=list,
        max_length=len(KNOWN_EVENT_TYPES),
        description="detail-types to deliver, e.g. message.received; empty or absent: all",
    )
    description: str | None = Field(default=None, max_length=256)

    def fingerprint(self) -> str:
        """What a retry with the same Idempotency-Key must repeat exactly."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, values: list[str]) -> list[str]:
        unknown = sorted(set(values) - KNOWN_EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {sorted(KNOWN_EVENT_TYPES)}")
        return sorted(set(values))


class Subscription(_Model):
    id: str
    url: str
    event_types: list[str] = Field(description="empty: every event type")
    description: str | None = None
    state: SubscriptionState
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def wants(self, event_type: str) -> bool:
        return self.state is SubscriptionState.ENABLED and (
            not self.event_types or event_type in self.event_types
        )


class CreatedSubscription(Subscription):
    secret: str = Field(
        description="Standard Webhooks signing secret (whsec_ + base64); shown only here"
    )


class RotatedSecret(_Model):
    subscription_id: str
    secret: str = Field(description="the new signing secret (whsec_ + base64); shown only here")
    previous_secret_expires_at: datetime | None = Field(
        description="until then deliveries carry a signature with the previous secret too"
    )


class Redelivery(_Model):
    queued: int = Field(ge=0, description="failed deliveries put back on the delivery queue")


@dataclass(frozen=True)
class SigningSecrets:
    """A subscription's secret and, during a rotation's overlap, the one before it."""

    current: str
    previous: str | None = None
    previous_until: datetime | None = None

    def at(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery made at ``now``: the current one first."""
        if self.previous and self.previous_until and now < self.previous_until:
            return [self.current, self.previous]
        return [self.current]


class SubscriptionList(_Model):
    items: list[Subscription]


class DeliveryAttempt(_Model):
    id: str
    subscription_id: str
    event_id: str = Field(description="also the webhook-id header: stable across retries")
    event_type: str
    customer_id: str | None = None
    attempt: int = Field(ge=1)
    status: DeliveryStatus
    response_status: int | None = Field(default=None, description="the receiver's HTTP status")
    duration_ms: int = Field(ge=0)
    error: str | None = None
    attempted_at: datetime
    next_attempt_at: datetime | None = None


class DeliveryPage(_Model):
    items: list[DeliveryAttempt]
    next_cursor: str | None = None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def subscription_idempotency_pk(key: str) -> str:
    return f"IDEMPOTENCY#SUBSCRIPTION#{key}"


def subscription_pk(subscription_id: str) -> str:
    return f"SUB#{subscription_id}"


def _subscription_from_item(item: dict[str, Any]) -> Subscription:
    return Subscription(
        id=item["subscription_id"],
        url=item["url"],
        event_types=sorted(item.get("event_types") or []),
        description=item.get("description"),
        state=SubscriptionState(item["state"]),
        created_at=datetime.fromisoformat(item["created_at"]),
        disabled_at=(
            datetime.fromisoformat(item["disabled_at"]) if item.get("disabled_at") else None
        ),
        disabled_reason=item.get("disabled_reason"),
    )


class SubscriptionStore:
    """Subscriptions and delivery history in the threadline table."""

    def __init__(self, table: str, *, dynamodb: DynamoDBClient | None = None) -> None:
        self.table = table
        self.data = DynamoTable(table, dynamodb=dynamodb)

    @property
    def dynamodb(self) -> DynamoDBClient:
        return self.data.dynamodb

    # --- subscriptions -------------------------------------------------------------

    # Hardening (issue 16): one transaction for the subscription, its secret and its
    # Idempotency-Key, so a retried request answers the stored result.
    def create(
        self,
        request: SubscriptionRequest,
        *,
        idempotency_key: str | None = None,
        now: datetime | None = None,
    ) -> CreatedSubscription:
        """Store a new subscription with its secret; the stored one for a repeated key.

        The subscription and its secret are one item, written in one transaction with
        the Idempotency-Key's record: a client whose first answer was lost (a timeout,
        a 5xx after the write) retries with the same key and gets the same
        subscription and secret, never a second subscription whose secret nobody has.
        botocore's own retries of the transaction reuse its ClientRequestToken, so
        DynamoDB applies it once.
        """
        now = now or utc_now()
        if idempotency_key:
            stored = self._created_for_key(idempotency_key, request)
            if stored is not None:
                return stored
        if len(self._subscription_items(True)) >= MAX_SUBSCRIPTIONS:
            raise TooManySubscriptions(
                f"a stack has at most {MAX_SUBSCRIPTIONS} subscriptions; delete one first"
            )
        created = CreatedSubscription(
            id=new_id(now),
            url=request.url,
            event_types=request.event_types,
            description=request.description,
            state=SubscriptionState.ENABLED,
            created_at=now,
            secret=new_secret(),
        )
        item = {
            "pk": SUBS_PK,
            "sk": subscription_pk(created.id),
            "type": "webhook_subscription",
            "subscription_id": created.id,
            "url": created.url,
            # A list, not a set: DynamoDB refuses empty sets.
            "event_types": created.event_types,
            "description": created.description,
            "state": created.state.value,
            "created_at": now.isoformat(),
            "secret": created.secret,
        }
        writes: list[Write] = [put_once(item)]
        if idempotency_key:
            writes.append(
                put_once(
                    {
                        "pk": subscription_idempotency_pk(idempotency_key),
                        "sk": IDEMPOTENCY_SK,
                        "type": "idempotency",
                        "subscription_id": created.id,
                        "fingerprint": request.fingerprint(),
                        "created_at": now.isoformat(),
                        "expires_at": expires_at(now, IDEMPOTENCY_DAYS),
                    }
                )
            )
        try:
            self.data.write(writes)
        except WriteCancelled:
            if idempotency_key:
                # The same key raced us: answer what the winner stored.
                stored = self._created_for_key(idempotency_key, request)
                if stored is not None:
                    return stored
            raise
        return created

    def _created_for_key(
        self, idempotency_key: str, request: SubscriptionRequest
    ) -> CreatedSubscription | None:
        """The subscription an earlier request with ``idempotency_key`` created, if any."""
        record = self.data.get(
            (subscription_idempotency_pk(idempotency_key), IDEMPOTENCY_SK), consistent=True
        )
        if record is None:
            return None
        if record.get("fingerprint") != request.fingerprint():
            # The one error for a key reused with another body (sending a reply has it);
            # imported here, as outbound is heavy for the delivery worker.
            from threadline.outbound import IdempotencyKeyReused

            raise IdempotencyKeyReused("this Idempotency-Key was used for a different subscription")
        found = self._get_item(str(record["subscription_id"]))
        if found is None:
            raise NotFound("the subscription created with this Idempotency-Key was deleted")
        subscription = _subscription_from_item(found)
        return CreatedSubscription(**subscription.model_dump(), secret=str(found["secret"]))

    def all(self, *, consistent: bool = False) -> list[Subscription]:
        return [_subscription_from_item(item) for item in self._subscription_items(consistent)]

    def list_with_secrets(self) -> list[tuple[Subscription, str]]:
        """Every subscription with its secret (consistent, so a new one is seen at once)."""
        return [
            (_subscription_from_item(item), str(item["secret"]))
            for item in self._subscription_items(True)
        ]

    def _subscription_items(self, consistent: bool) -> list[dict[str, Any]]:
        return self.data.query_all(SUBS_PK, "SUB#", consistent=consistent)

    def get(self, subscription_id: str) -> Subscription | None:
        found = self._get_item(subscription_id)
        return _subscription_from_item(found) if found else None

    def get_with_secrets(self, subscription_id: str) -> tuple[Subscription, SigningSecrets] | None:
        found = self._get_item(subscription_id)
        if found is None:
            return None
        until = found.get("previous_secret_until")
        secrets_ = SigningSecrets(
            current=str(found["secret"]),
            previous=found.get("previous_secret"),
            previous_until=datetime.fromisoformat(until) if until else None,
        )
        return _subscription_from_item(found), secrets_

    def rotate_secret(
        self,
        subscription_id: str,
        *,
        overlap: timedelta = timedelta(hours=DEFAULT_ROTATION_OVERLAP_HOURS),
        now: datetime | None = None,
    ) -> RotatedSecret:
        """A new signing secret; the current one keeps signing too for ``overlap``.

        Rotating again within the overlap drops the oldest secret: at most two sign.
        The condition on the secret read makes two concurrent rotations one winner and
        one 409, never a secret that nobody was shown.
        """
        now = now or utc_now()
        found = self._get_item(subscription_id)
        if found is None:
            raise NotFound("no such subscription")
        new = new_secret()
        until = now + overlap
        values: dict[str, Any] = {":new": new, ":old": found["secret"]}
        if overlap > timedelta(0):
            expression = "SET secret = :new, previous_secret = :old, previous_secret_until = :until"
            values[":until"] = until.isoformat()
        else:
            expression = "SET secret = :new REMOVE previous_secret, previous_secret_until"
        rotate = Update(
            key=(SUBS_PK, subscription_pk(subscription_id)),
            expression=expression,
            condition="secret = :old",
            values=values,
        )
        try:
            self.data.write([rotate])
        except WriteCancelled:
            raise Conflict(
                "the subscription was rotated or deleted meanwhile", code="rotation_conflict"
            ) from None
        return RotatedSecret(
            subscription_id=subscription_id,
            secret=new,
            previous_secret_expires_at=until if overlap > timedelta(0) else None,
        )

    def _get_item(self, subscription_id: str) -> dict[str, Any] | None:
        return self.data.get((SUBS_PK, subscription_pk(subscription_id)), consistent=True)

    def delete(self, subscription_id: str) -> None:
        """Delete the subscription; its history expires with the table's TTL."""
        key = (SUBS_PK, subscription_pk(subscription_id))
        try:
            self.data.write([Delete(key, condition="attribute_exists(pk)")])
        except WriteCancelled:
            raise NotFound("no such subscription") from None

    def disable(self, subscription_id: str, reason: str, *, now: datetime | None = None) -> None:
        now = now or utc_now()
        disable = Update(
            key=(SUBS_PK, subscription_pk(subscription_id)),
            expression="SET #state = :disabled, disabled_at = :at, disabled_reason = :why",
            condition="attribute_exists(pk)",
            names={"#state": "state"},
            values={
                ":disabled": SubscriptionState.DISABLED.value,
                ":at": now.isoformat(),
                ":why": reason,
            },
        )
        # A subscription deleted meanwhile has nothing left to disable.
        with contextlib.suppress(WriteCancelled):
            self.data.write([disable])

    # --- deliveries ----------------------------------------------------------------

    def claim_attempt(
        self, subscription_id: str, event_id: str, *, now: datetime | None = None
    ) -> int | None:
        """Count one more attempt; None when the event's delivery is already final."""
        now = now or utc_now()
        claim = Update(
            key=(subscription_pk(subscription_id), f"EVT#{event_id}"),
            expression=(
                "ADD attempts :one SET #type = :type, last_attempt_at = :at, expires_at = :exp"
            ),
            condition="attribute_not_exists(outcome)",
            names={"#type": "type"},
            values={
                ":one": 1,
                ":type": "webhook_delivery",
                ":at": now.isoformat(),
                ":exp": _expires_at(now),
            },
        )
        try:
            return int(self.data.update_returning(claim)["attempts"])
        except WriteCancelled:
            return None

    def record_attempt(self, attempt: DeliveryAttempt, *, payload: str | None = None) -> None:
        """Write the attempt to the history, and the outcome when it is final.

        A final failure keeps ``payload`` (the signed body) for a redelivery.
        """
        history = {
            "pk": subscription_pk(attempt.subscription_id),
            "sk": f"DLV#{attempt.id}",
            "type": "webhook_attempt",
            "attempt": attempt.model_dump_json(),
            "expires_at": _expires_at(attempt.attempted_at),
        }
        writes: list[Write] = [Put(history)]
        if attempt.status is DeliveryStatus.FAILED and payload is not None:
            writes.append(
                Update(
                    key=(subscription_pk(attempt.subscription_id), f"EVT#{attempt.event_id}"),
                    expression=(
                        "SET outcome = :outcome, payload = :payload, event_type = :type, "
                        "customer_id = :customer"
                    ),
                    values={
                        ":outcome": attempt.status.value,
                        ":payload": payload,
                        ":type": attempt.event_type,
                        ":customer": attempt.customer_id,
                    },
                )
            )
        elif attempt.status is not DeliveryStatus.RETRYING:
            writes.append(
                Update(
                    key=(subscription_pk(attempt.subscription_id), f"EVT#{attempt.event_id}"),
                    expression="SET outcome = :outcome",
                    values={":outcome": attempt.status.value},
                )
            )
        self.data.write(writes)

    def attempt(self, subscription_id: str, delivery_id: str) -> DeliveryAttempt | None:
        """One recorded attempt (a delivery id of ``GET .../deliveries``)."""
        found = self.data.get((subscription_pk(subscription_id), f"DLV#{delivery_id}"))
        return DeliveryAttempt.model_validate_json(found["attempt"]) if found else None

    def failed_event_ids(self, subscription_id: str, *, since: datetime) -> list[str]:
        """The events whose delivery failed for good, last tried at ``since`` or later."""
        items = self.data.query_all(
            subscription_pk(subscription_id),
            "EVT#",
            consistent=True,
            attributes=("sk", "outcome", "last_attempt_at"),
        )
        return [
            str(item["sk"]).removeprefix("EVT#")
            for item in items
            if item.get("outcome") == DeliveryStatus.FAILED.value
            and datetime.fromisoformat(str(item["last_attempt_at"])) >= since
        ]

    def reopen_failed(self, subscription_id: str, event_id: str) -> dict[str, Any] | None:
        """Reopen a failed delivery for one more round of attempts: its stored job.

        None when it is not (or no longer) failed: delivered, already reopened by an
        earlier request, or failed before payloads were kept. The condition makes a
        repeated request reopen nothing twice.
        """
        reopen = Update(
            key=(subscription_pk(subscription_id), f"EVT#{event_id}"),
            expression=(
                "REMOVE outcome SET attempts = :zero, "
                "redeliveries = if_not_exists(redeliveries, :zero) + :one"
            ),
            condition="outcome = :failed AND attribute_exists(payload)",
            values={":zero": 0, ":one": 1, ":failed": DeliveryStatus.FAILED.value},
        )
        try:
            return self.data.update_returning(reopen)
        except WriteCancelled:
            return None

    def close_reopened(self, subscription_id: str, event_id: str) -> None:
        """Mark a reopened delivery failed again (its job could not be queued)."""
        close = Update(
            key=(subscription_pk(subscription_id), f"EVT#{event_id}"),
            expression="SET outcome = :failed",
            condition="attribute_not_exists(outcome)",
            values={":failed": DeliveryStatus.FAILED.value},
        )
        with contextlib.suppress(WriteCancelled):
            self.data.write([close])

    def deliveries(
        self, subscription_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> DeliveryPage:
        """One page of the subscription's delivery attempts, newest first."""
        page = self.data.newest_first(
            subscription_pk(subscription_id),
            "DLV#",
            limit=max(1, min(limit, MAX_PAGE_SIZE)),
            cursor=cursor,
        )
        return DeliveryPage(
            items=[DeliveryAttempt.model_validate_json(item["attempt"]) for item in page.items],
            next_cursor=page.next_cursor,
        )


def _expires_at(now: datetime) -> int:
    return int((now + timedelta(days=HISTORY_DAYS)).timestamp())
