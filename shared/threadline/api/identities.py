"""Identities: link one to a customer, and merge two customers (resumable)."""

from __future__ import annotations

import time
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from threadline.api.dependencies import customer_store
from threadline.api.errors import answers
from threadline.customers import MergeRequest, MergeStatus
from threadline.merge import MERGED
from threadline.schema import Customer, Identity

router = Router()  # type: ignore[no-untyped-call]


def _merge_deadline() -> float:
    """When a merge in this request must stop (resumable), leaving time to answer."""
    try:
        remaining = router.lambda_context.get_remaining_time_in_millis() / 1000
    except AttributeError:
        remaining = 10.0
    return time.monotonic() + max(1.0, remaining - 3.0)


@router.post(
    "/v1/customers/<customer_id>/identities",
    summary="Link an identity to a customer (201 new, 200 already linked or merged)",
    tags=["customers"],
    operation_id="linkIdentity",
    responses=answers(
        {
            200: "Already linked, or merged",
            201: "Linked",
            202: "merge=true began a merge that a repeated request finishes",
        },
        404,
        409,
        models={200: Customer, 201: Customer, 202: MergeStatus},
    ),
)
def link_identity(
    customer_id: Annotated[str, Path()],
    identity: Annotated[Identity, Body()],
    merge: Annotated[
        bool, Query(description="merge the customer that has the identity into this one")
    ] = False,
    force: Annotated[
        bool, Query(description="with merge: even when their external CRM ids differ")
    ] = False,
) -> Response[Customer | MergeStatus]:
    result = customer_store().link_identity(
        customer_id, identity, merge=merge, force=force, deadline=_merge_deadline()
    )
    if result.merge is not None and result.merge.state != MERGED:
        return Response(202, "application/json", MergeStatus.of(result.merge))
    return Response(201 if result.created else 200, "application/json", result.customer)


@router.post(
    "/v1/customers/<customer_id>/merge",
    summary="Merge another customer into this one (200 merged, 202 POST again to finish)",
    tags=["customers"],
    operation_id="mergeCustomers",
    responses=answers({200: "Merged", 202: "Still merging: POST again"}, 404, 409),
)
def merge_customers(
    customer_id: Annotated[str, Path()], request: Annotated[MergeRequest, Body()]
) -> Response[MergeStatus]:
    result = customer_store().merge(
        customer_id, request.source_customer_id, force=request.force, deadline=_merge_deadline()
    )
    return Response(
        200 if result.state == MERGED else 202, "application/json", MergeStatus.of(result)
    )
