"""The /v1 REST API for CRMs and helpdesks, with its OpenAPI document."""

from __future__ import annotations

import json
import time
from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from threadline import __version__
from threadline import privacy as privacy_consent
from threadline.customers import (
    CustomerStore,
    MergeRequest,
    MergeStatus,
    ProfilePatch,
    parse_external_id,
)
from threadline.errors import MalformedRequest, NotFound, ThreadlineError
from threadline.logs import logger
from threadline.media import MediaFetcher, MediaLink, media_link
from threadline.merge import MERGED
from threadline.outbound import SendMessageRequest
from threadline.outcomes import CloseRequest
from threadline.privacy import (
    ConsentUpdate,
    CustomerConsent,
    JobState,
    PrivacyJob,
    PrivacyService,
    PrivacySettings,
)
from threadline.schema import (
    Conversation,
    ConversationPage,
    Customer,
    Identity,
    Message,
    TimelinePage,
)
from threadline.settings import required_env, store_settings
from threadline.ssrf import check_target
from threadline.store import MAX_PAGE_SIZE
from threadline.subscriptions import (
    CreatedSubscription,
    DeliveryPage,
    Subscription,
    SubscriptionList,
    SubscriptionRequest,
    SubscriptionStore,
)
from threadline.telemetry import traced

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
        409: "Conflicts with the data: opted out of this channel or purpose, the e-mail "
        "address bounced or complained, an identity or external id held by another "
        "customer (details name it), merge refused",
        422: "The message cannot be sent to this customer as asked",
        503: "Storage or the job queue is unavailable; retry",
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


@app.get(
    "/v1/customers/<customer_id>/conversations",
    summary="A customer's conversations, newest first",
    tags=["conversations"],
    responses=ERROR_RESPONSES,
)
def list_conversations(
    customer_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ConversationPage:
    if store.get_customer(customer_id) is None:
        raise NotFound("no such customer")
    return store.conversations(customer_id, limit=limit, cursor=cursor)


@app.get(
    "/v1/conversations/<conversation_id>",
    summary="Get a conversation with its metrics",
    tags=["conversations"],
    responses=ERROR_RESPONSES,
)
def get_conversation(conversation_id: Annotated[str, Path()]) -> Conversation:
    conversation = store.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound("no such conversation")
    return conversation


@app.post(
    "/v1/conversations/<conversation_id>/close",
    summary="Close a conversation (idempotent: a closed one is answered as it is)",
    tags=["conversations"],
    responses=ERROR_RESPONSES,
)
def close_conversation(conversation_id: Annotated[str, Path()]) -> Conversation:
    # The body is optional ({"resolution": ..., "agent_id": ...}): closing without
    # one records "resolved" (docs/analytics.md).
    raw = app.current_event.body
    try:
        request = CloseRequest.model_validate_json(raw) if raw else CloseRequest()
    except ValidationError as exc:
        raise MalformedRequest(f"close request is not valid: {exc}", code="invalid_close") from exc
    conversation = store.close_conversation(conversation_id, outcome=request.outcome())
    if conversation is None:
        raise NotFound("no such conversation")
    return conversation


# ---------------------------------------------------------------- media on demand
# WhatsApp Cloud API media is downloaded the first time someone asks for it (never in
# the webhook), kept in the raw bucket, and served as a short-lived presigned URL.


@cache
def media_fetchers() -> dict[str, MediaFetcher]:
    # Built from the channel registry on the first media request (the Graph client and
    # urllib3 under it): the API's other routes should not pay for it at cold start.
    from threadline.channels import registry

    return registry.media_fetchers()


@app.get(
    "/v1/customers/<customer_id>/messages/<message_id>/media/<index>",
    summary="Where to fetch a message's media part: a short-lived URL",
    tags=["messages"],
    responses={
        **ERROR_RESPONSES,
        502: {
            "description": "The provider did not hand over the media",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    },
)
def get_media(
    customer_id: Annotated[str, Path()],
    message_id: Annotated[str, Path()],
    index: Annotated[int, Path(ge=0, le=99, description="the part's position in parts")],
) -> MediaLink:
    return media_link(store, customer_id, message_id, index, media_fetchers())


# --- Signed webhooks: subscriptions and their delivery history ---------------------

subscriptions = SubscriptionStore(store_settings().table_name)
allow_private_webhook_targets = required_env("WEBHOOK_ALLOW_PRIVATE_TARGETS") == "true"


@app.post(
    "/v1/subscriptions",
    summary="Subscribe a URL to signed webhooks (the signing secret is shown only here)",
    tags=["webhooks"],
    status_code=201,
    responses=ERROR_RESPONSES,
)
def create_subscription(
    request: Annotated[SubscriptionRequest, Body()],
) -> Response[CreatedSubscription]:
    check_target(request.url, allow_private=allow_private_webhook_targets)
    created = subscriptions.create(request)
    logger.info("webhook subscription created", extra={"subscription_id": created.id})
    return Response(201, "application/json", created)


@app.get(
    "/v1/subscriptions",
    summary="Every webhook subscription (without secrets)",
    tags=["webhooks"],
    responses=ERROR_RESPONSES,
)
def list_subscriptions() -> SubscriptionList:
    return SubscriptionList(items=subscriptions.all())


@app.get(
    "/v1/subscriptions/<subscription_id>",
    summary="Get a webhook subscription (without its secret)",
    tags=["webhooks"],
    responses=ERROR_RESPONSES,
)
def get_subscription(subscription_id: Annotated[str, Path()]) -> Subscription:
    found = subscriptions.get(subscription_id)
    if found is None:
        raise NotFound("no such subscription")
    return found


@app.delete(
    "/v1/subscriptions/<subscription_id>",
    summary="Delete a webhook subscription; events not yet delivered to it are dropped",
    tags=["webhooks"],
    status_code=204,
    responses=ERROR_RESPONSES,
)
def delete_subscription(subscription_id: Annotated[str, Path()]) -> Response[str]:
    subscriptions.delete(subscription_id)
    logger.info("webhook subscription deleted", extra={"subscription_id": subscription_id})
    return Response(204, "application/json", "")


@app.get(
    "/v1/subscriptions/<subscription_id>/deliveries",
    summary="A subscription's delivery attempts, newest first",
    tags=["webhooks"],
    responses=ERROR_RESPONSES,
)
def list_deliveries(
    subscription_id: Annotated[str, Path()],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> DeliveryPage:
    if subscriptions.get(subscription_id) is None:
        raise NotFound("no such subscription")
    return subscriptions.deliveries(subscription_id, limit=limit, cursor=cursor)


# --- consent, export and erasure (threadline.privacy; docs/api.md) --------------------
_privacy: PrivacyService | None = None


def privacy() -> PrivacyService:
    global _privacy
    if _privacy is None:
        _privacy = PrivacyService(store, PrivacySettings.from_env())
    return _privacy


@app.get(
    "/v1/customers/<customer_id>/consent",
    summary="The customer's consent per identity and purpose",
    tags=["privacy"],
    responses=ERROR_RESPONSES,
)
def get_consent(customer_id: Annotated[str, Path()]) -> CustomerConsent:
    return privacy_consent.get_consent(store, customer_id)


@app.put(
    "/v1/customers/<customer_id>/consent",
    summary="Record a grant or withdrawal of consent for one identity and purpose",
    tags=["privacy"],
    responses=ERROR_RESPONSES,
)
def put_consent(
    customer_id: Annotated[str, Path()], update: Annotated[ConsentUpdate, Body()]
) -> CustomerConsent:
    return privacy_consent.set_consent(store, customer_id, update)


@app.post(
    "/v1/customers/<customer_id>/exports",
    summary="Start building an archive of everything held about the customer",
    tags=["privacy"],
    status_code=202,
    responses=ERROR_RESPONSES,
)
def start_export(customer_id: Annotated[str, Path()]) -> Response[PrivacyJob]:
    job = privacy().request_export(customer_id)
    location = f"/v1/customers/{customer_id}/exports/{job.job_id}"
    return Response(202, "application/json", job, headers={"Location": location})


@app.get(
    "/v1/customers/<customer_id>/exports/<job_id>",
    summary="An export's progress; when done, a short-lived download URL of the zip",
    tags=["privacy"],
    responses=ERROR_RESPONSES,
)
def export_status(
    customer_id: Annotated[str, Path()], job_id: Annotated[str, Path()]
) -> PrivacyJob:
    return privacy().export_status(customer_id, job_id)


@app.delete(
    "/v1/customers/<customer_id>",
    summary="Erase the customer: everything in the table and the buckets",
    tags=["privacy"],
    status_code=202,
    responses=ERROR_RESPONSES,
)
def erase_customer(
    customer_id: Annotated[str, Path()],
    mode: Annotated[
        Literal["delete", "anonymize"],
        Query(
            description="delete: everything; anonymize: keep the history (channels, "
            "directions, times) without bodies, identities or names"
        ),
    ] = "delete",
) -> Response[PrivacyJob]:
    job, _ = privacy().request_erasure(customer_id, mode=mode)
    location = f"/v1/customers/{customer_id}/erasure"
    status = 200 if job.state is JobState.DONE else 202
    return Response(status, "application/json", job, headers={"Location": location})


@app.get(
    "/v1/customers/<customer_id>/erasure",
    summary="The erasure of a customer: progress, then the audit record (ids and counts)",
    tags=["privacy"],
    responses=ERROR_RESPONSES,
)
def erasure_status(customer_id: Annotated[str, Path()]) -> PrivacyJob:
    return privacy().erasure_status(customer_id)


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


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
