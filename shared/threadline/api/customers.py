"""Customers: find one by identity or CRM id, read it and its timeline, patch its profile."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from threadline.api.dependencies import NoteIdempotencyKey, customer_store
from threadline.api.errors import answers
from threadline.customers import ProfilePatch, parse_external_id
from threadline.errors import MalformedRequest, NotFound
from threadline.notes import NoteRequest, add_note
from threadline.schema import Customer, Identity, Message, TimelinePage
from threadline.store import MAX_PAGE_SIZE

router = Router()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/customers",
    summary="Find the customer who owns an identity",
    tags=["customers"],
    operation_id="findCustomer",
    responses=answers({200: "The customer"}, 404),
)
def find_customer(
    identity: Annotated[
        str | None,
        Query(description="kind:value, e.g. phone:+15551234567 or email:ana@example.com"),
    ] = None,
    external_id: Annotated[
        str | None, Query(description="system:id of a CRM, e.g. salesforce:0035e00000AbCdE")
    ] = None,
) -> Customer:
    if (identity is None) == (external_id is None):
        raise MalformedRequest(
            "give exactly one of identity or external_id", code="invalid_request"
        )
    store = customer_store()
    if external_id is not None:
        try:
            system, value = parse_external_id(external_id)
        except ValueError as exc:
            raise MalformedRequest(str(exc), code="invalid_external_id") from exc
        found = store.find_by_external_id(system, value)
        if found is None:
            raise NotFound("no customer has this external id")
        return found
    try:
        parsed = Identity.parse(identity or "")
    except ValueError as exc:
        raise MalformedRequest(f"identity is not valid: {exc}", code="invalid_identity") from exc
    customer_id = store.find_customer_id(parsed)
    profile = store.resolve_profile(customer_id) if customer_id else None
    if profile is None:
        raise NotFound("no customer has this identity")
    return profile.customer


@router.get(
    "/v1/customers/<customer_id>",
    summary="Get a customer",
    tags=["customers"],
    operation_id="getCustomer",
    responses=answers({200: "The customer (the survivor, for a merged-away id)"}, 404),
)
def get_customer(customer_id: Annotated[str, Path()]) -> Customer:
    # The id of a merged-away customer is an alias: the survivor answers (its own id).
    profile = customer_store().resolve_profile(customer_id)
    if profile is None:
        raise NotFound("no such customer")
    return profile.customer


@router.get(
    "/v1/customers/<customer_id>/timeline",
    summary="A customer's messages on every channel, newest first",
    tags=["customers"],
    operation_id="getTimeline",
    responses=answers({200: "A page of the timeline"}, 404),
)
def get_timeline(
    customer_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> TimelinePage:
    store = customer_store()
    profile = store.resolve_profile(customer_id)
    if profile is None:
        raise NotFound("no such customer")
    return store.timeline(profile.customer.id, limit=limit, cursor=cursor)


@router.patch(
    "/v1/customers/<customer_id>",
    summary="Change profile attributes (JSON merge patch: null removes)",
    tags=["customers"],
    operation_id="patchCustomer",
    responses=answers({200: "The customer as patched"}, 404, 409),
)
def patch_customer(
    customer_id: Annotated[str, Path()], patch: Annotated[ProfilePatch, Body()]
) -> Customer:
    return customer_store().patch_profile(customer_id, patch)


@router.post(
    "/v1/customers/<customer_id>/notes",
    summary="Add an internal agent note to a customer's timeline (never sent to them)",
    tags=["customers"],
    status_code=201,
    operation_id="addCustomerNote",
    responses=answers(
        {201: "The note as stored on the timeline"},
        404,
        explained={422: "An Idempotency-Key reused for another note"},
    ),
)
def add_customer_note(
    customer_id: Annotated[str, Path()],
    request: Annotated[NoteRequest, Body()],
    idempotency_key: NoteIdempotencyKey = None,
) -> Response[Message]:
    # Joins the open conversation, else the customer's latest one.
    note, _ = add_note(customer_store(), customer_id, request, idempotency_key=idempotency_key)
    return Response(201, "application/json", note)
