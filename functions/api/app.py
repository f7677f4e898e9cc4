"""The /v1 REST API for CRMs and helpdesks, with its OpenAPI document."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline import __version__
from threadline.customers import (
    CustomerStore,
    MergeRequest,
    MergeStatus,
    ProfilePatch,
    parse_external_id,
)
from threadline.errors import MalformedRequest, NotFound, ThreadlineError
from threadline.logs import logger
from threadline.merge import MERGED
from threadline.outbound import SendMessageRequest
from threadline.schema import Customer, Identity, Message, TimelinePage
from threadline.settings import store_settings
from threadline.store import MAX_PAGE_SIZE

app = APIGatewayHttpResolver(enable_validation=True)
store = CustomerStore(store_settings())

ERROR_RESPONSES: dict[int, Any] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for status, description in {
        400: "Invalid request",
        404: "Not found",
        409: "Conflicts with the data: opted out, identity or external id held by another "
        "customer (details name it), merge refused",
        422: "The message cannot be sent to this customer as asked",
    }.items()
}


def _error(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return Response(status, "application/json", json.dumps({"error": error}))


@app.exception_handler(ThreadlineError)  # type: ignore[untyped-decorator]
def _threadline_error(error: ThreadlineError) -> Response[str]:
    return _error(error.status, error.code, error.message, getattr(error, "details", None))


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _validation_error(error: RequestValidationError) -> Response[str]:
    details = [
        {"location": list(e.get("loc", ())), "message": e.get("msg")} for e in error.errors()
    ]
    return _error(400, "invalid_request", "the request is not valid", details)


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    return _error(404, "not_found", "no such route")


@app.get("/v1/health", summary="Liveness check", tags=["meta"])
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@app.get(
    "/v1/customers",
    summary="Find the customer who owns an identity",
    tags=["customers"],
    responses=ERROR_RESPONSES,
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


@app.get(
    "/v1/customers/<customer_id>",
    summary="Get a customer",
    tags=["customers"],
    responses=ERROR_RESPONSES,
)
def get_customer(customer_id: Annotated[str, Path()]) -> Customer:
    # The id of a merged-away customer is an alias: the survivor answers (its own id).
    profile = store.resolve_profile(customer_id)
    if profile is None:
        raise NotFound("no such customer")
    return profile.customer


@app.get(
    "/v1/customers/<customer_id>/timeline",
    summary="A customer's messages on every channel, newest first",
    tags=["customers"],
    responses=ERROR_RESPONSES,
)
def get_timeline(
    customer_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> TimelinePage:
    profile = store.resolve_profile(customer_id)
    if profile is None:
        raise NotFound("no such customer")
    return store.timeline(profile.customer.id, limit=limit, cursor=cursor)


@app.post(
    "/v1/customers/<customer_id>/messages",
    summary="Send a reply: queued now, sent by the dispatcher",
    tags=["messages"],
    status_code=202,
    responses=ERROR_RESPONSES,
)
def send_message(
    customer_id: Annotated[str, Path()],
    request: Annotated[SendMessageRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            max_length=255,
            description="retrying with the same key returns the first answer and sends once",
        ),
    ] = None,
) -> Response[Message]:
    message, _ = store.queue_message(customer_id, request, idempotency_key=idempotency_key)
    return Response(202, "application/json", message)


# ------------------------------------------------------------------ identity and profile


def _merge_deadline() -> float:
    """When a merge in this request must stop (resumable), leaving time to answer."""
    try:
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000
    except AttributeError:
        remaining = 10.0
    return time.monotonic() + max(1.0, remaining - 3.0)


@app.patch(
    "/v1/customers/<customer_id>",
    summary="Change profile attributes (JSON merge patch: null removes)",
    tags=["customers"],
    responses=ERROR_RESPONSES,
)
def patch_customer(
    customer_id: Annotated[str, Path()], patch: Annotated[ProfilePatch, Body()]
) -> Customer:
    return store.patch_profile(customer_id, patch)


@app.post(
    "/v1/customers/<customer_id>/identities",
    summary="Link an identity to a customer (201 new, 200 already linked or merged)",
    tags=["customers"],
    responses={
        **ERROR_RESPONSES,
        202: {"description": "merge=true began a merge that a repeated request finishes"},
    },
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
    result = store.link_identity(
        customer_id, identity, merge=merge, force=force, deadline=_merge_deadline()
    )
    if result.merge is not None and result.merge.state != MERGED:
        return Response(202, "application/json", MergeStatus.of(result.merge))
    return Response(201 if result.created else 200, "application/json", result.customer)


@app.post(
    "/v1/customers/<customer_id>/merge",
    summary="Merge another customer into this one (200 merged, 202 POST again to finish)",
    tags=["customers"],
    responses={**ERROR_RESPONSES, 202: {"description": "still merging: POST again"}},
)
def merge_customers(
    customer_id: Annotated[str, Path()], request: Annotated[MergeRequest, Body()]
) -> Response[MergeStatus]:
    result = store.merge(
        customer_id, request.source_customer_id, force=request.force, deadline=_merge_deadline()
    )
    return Response(
        200 if result.state == MERGED else 202, "application/json", MergeStatus.of(result)
    )


def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title="threadline API",
            version=__version__,
            description=(
                "Customer timelines across every channel. Deployed, every route needs "
                "SigV4-signed IAM credentials; the local stack accepts a bearer token "
                "when THREADLINE_API_TOKEN is set."
            ),
        )
    )
    document.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    }
    return document


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return openapi_document()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
