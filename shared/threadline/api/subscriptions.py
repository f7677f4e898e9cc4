"""Signed webhooks: subscriptions and their delivery history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query

from threadline.api.dependencies import (
    private_webhook_targets_allowed,
    subscription_store,
    webhook_delivery_queue_url,
)
from threadline.api.errors import answers
from threadline.errors import MalformedRequest, NotFound
from threadline.logs import logger
from threadline.ssrf import check_target
from threadline.subscriptions import (
    DEFAULT_ROTATION_OVERLAP_HOURS,
    MAX_ROTATION_OVERLAP_HOURS,
    CreatedSubscription,
    DeliveryPage,
    Redelivery,
    RotatedSecret,
    Subscription,
    SubscriptionList,
    SubscriptionRequest,
)

router = Router()  # type: ignore[no-untyped-call]


@router.post(
    "/v1/subscriptions",
    summary="Subscribe a URL to signed webhooks (the signing secret is shown only here)",
    tags=["webhooks"],
    status_code=201,
    operation_id="createSubscription",
    responses=answers(
        {201: "The subscription with its signing secret"},
        explained={
            422: "The URL is not a public https address that resolves, the limit of "
            "subscriptions is reached, or an Idempotency-Key was reused for another body"
        },
    ),
)
def create_subscription(
    request: Annotated[SubscriptionRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            max_length=255,
            description="retrying with the same key returns the first answer, secret included",
        ),
    ] = None,
) -> Response[CreatedSubscription]:
    check_target(request.url, allow_private=private_webhook_targets_allowed())
    created = subscription_store().create(request, idempotency_key=idempotency_key)
    logger.info("webhook subscription created", extra={"subscription_id": created.id})
    return Response(201, "application/json", created)


@router.get(
    "/v1/subscriptions",
    summary="Every webhook subscription (without secrets)",
    tags=["webhooks"],
    operation_id="listSubscriptions",
    responses=answers({200: "Every subscription"}),
)
def list_subscriptions() -> SubscriptionList:
    return SubscriptionList(items=subscription_store().all())


@router.get(
    "/v1/subscriptions/<subscription_id>",
    summary="Get a webhook subscription (without its secret)",
    tags=["webhooks"],
    operation_id="getSubscription",
    responses=answers({200: "The subscription"}, 404),
)
def get_subscription(subscription_id: Annotated[str, Path()]) -> Subscription:
    found = subscription_store().get(subscription_id)
    if found is None:
        raise NotFound("no such subscription")
    return found


@router.delete(
    "/v1/subscriptions/<subscription_id>",
    summary="Delete a webhook subscription; events not yet delivered to it are dropped",
    tags=["webhooks"],
    status_code=204,
    operation_id="deleteSubscription",
    responses=answers({204: "Deleted (or there was none)"}),
)
def delete_subscription(subscription_id: Annotated[str, Path()]) -> Response[str]:
    subscription_store().delete(subscription_id)
    logger.info("webhook subscription deleted", extra={"subscription_id": subscription_id})
    return Response(204, "application/json", "")


@router.get(
    "/v1/subscriptions/<subscription_id>/deliveries",
    summary="A subscription's delivery attempts, newest first",
    tags=["webhooks"],
    operation_id="listDeliveries",
    responses=answers({200: "A page of delivery attempts"}, 404),
)
def list_deliveries(
    subscription_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> DeliveryPage:
    subscriptions = subscription_store()
    if subscriptions.get(subscription_id) is None:
        raise NotFound("no such subscription")
    return subscriptions.deliveries(subscription_id, limit=limit, cursor=cursor)


@router.post(
    "/v1/subscriptions/<subscription_id>/rotate-secret",
    summary="A new signing secret; the old one keeps signing too during the overlap",
    tags=["webhooks"],
    operation_id="rotateSubscriptionSecret",
    responses=answers(
        {200: "The new secret (shown only here) and when the previous one stops signing"},
        404,
        409,
    ),
)
def rotate_secret(
    subscription_id: Annotated[str, Path()],
    overlap_hours: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_ROTATION_OVERLAP_HOURS,
            description="hours during which deliveries carry signatures with both secrets; "
            "0 drops the old secret at once",
        ),
    ] = DEFAULT_ROTATION_OVERLAP_HOURS,
) -> RotatedSecret:
    rotated = subscription_store().rotate_secret(
        subscription_id, overlap=timedelta(hours=overlap_hours)
    )
    logger.info("webhook secret rotated", extra={"subscription_id": subscription_id})
    return rotated


def _redeliver(subscription_id: str, event_ids: list[str]) -> Response[Redelivery]:
    # Imported here: the delivery module (and its HTTP client) is for these two routes.
    from threadline import aws
    from threadline.crm_webhooks import enqueue, redeliver

    queued = redeliver(
        subscription_store(),
        subscription_id,
        event_ids,
        lambda jobs: enqueue(jobs, webhook_delivery_queue_url(), aws.sqs()),
    )
    return Response(202, "application/json", Redelivery(queued=queued))


@router.post(
    "/v1/subscriptions/<subscription_id>/deliveries/<delivery_id>/redeliver",
    summary="Deliver a failed delivery's event again (idempotent: queued once)",
    tags=["webhooks"],
    status_code=202,
    operation_id="redeliverDelivery",
    responses=answers(
        {202: "queued 1, or 0 when it is not failed (delivered, or already queued again)"},
        404,
        explained={409: "The subscription is disabled"},
    ),
)
def redeliver_one(
    subscription_id: Annotated[str, Path()], delivery_id: Annotated[str, Path()]
) -> Response[Redelivery]:
    attempt = subscription_store().attempt(subscription_id, delivery_id)
    if attempt is None:
        raise NotFound("no such delivery")
    return _redeliver(subscription_id, [attempt.event_id])


@router.post(
    "/v1/subscriptions/<subscription_id>/redeliver",
    summary="Deliver again every delivery that failed for good since a time",
    tags=["webhooks"],
    status_code=202,
    operation_id="redeliverFailed",
    responses=answers(
        {202: "How many failed deliveries were queued again"},
        404,
        explained={409: "The subscription is disabled"},
    ),
)
def redeliver_failed(
    subscription_id: Annotated[str, Path()],
    since: Annotated[
        datetime,
        Query(description="ISO 8601 with a zone; deliveries last tried at or after it"),
    ],
) -> Response[Redelivery]:
    if since.tzinfo is None:
        raise MalformedRequest(
            "since needs a time zone, e.g. 2026-12-01T00:00:00Z", code="invalid_request"
        )
    store = subscription_store()
    if store.get(subscription_id) is None:
        raise NotFound("no such subscription")
    return _redeliver(subscription_id, store.failed_event_ids(subscription_id, since=since))
