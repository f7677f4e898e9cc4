"""Privacy: consent per identity and purpose, exports, erasure (threadline.privacy; docs/api.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from threadline import privacy as privacy_domain
from threadline.api.dependencies import customer_store, privacy_service
from threadline.api.errors import answers
from threadline.privacy import ConsentUpdate, CustomerConsent, JobState, PrivacyJob

router = Router()  # type: ignore[no-untyped-call]


@router.get(
    "/v1/customers/<customer_id>/consent",
    summary="The customer's consent per identity and purpose",
    tags=["privacy"],
    operation_id="getConsent",
    responses=answers({200: "Consent per identity and purpose"}, 404),
)
def get_consent(customer_id: Annotated[str, Path()]) -> CustomerConsent:
    return privacy_domain.get_consent(customer_store(), customer_id)


@router.put(
    "/v1/customers/<customer_id>/consent",
    summary="Record a grant or withdrawal of consent for one identity and purpose",
    tags=["privacy"],
    operation_id="putConsent",
    responses=answers(
        {200: "Consent after the change"},
        404,
        409,
        explained={422: "The identity is not the customer's"},
    ),
)
def put_consent(
    customer_id: Annotated[str, Path()], update: Annotated[ConsentUpdate, Body()]
) -> CustomerConsent:
    return privacy_domain.set_consent(customer_store(), customer_id, update)


@router.post(
    "/v1/customers/<customer_id>/exports",
    summary="Start building an archive of everything held about the customer",
    tags=["privacy"],
    status_code=202,
    operation_id="startExport",
    responses=answers({202: "The export job; Location names its status"}, 404),
)
def start_export(customer_id: Annotated[str, Path()]) -> Response[PrivacyJob]:
    job = privacy_service().request_export(customer_id)
    location = f"/v1/customers/{customer_id}/exports/{job.job_id}"
    return Response(202, "application/json", job, headers={"Location": location})


@router.get(
    "/v1/customers/<customer_id>/exports/<job_id>",
    summary="An export's progress; when done, a short-lived download URL of the zip",
    tags=["privacy"],
    operation_id="getExport",
    responses=answers({200: "The export job"}, 404),
)
def export_status(
    customer_id: Annotated[str, Path()], job_id: Annotated[str, Path()]
) -> PrivacyJob:
    return privacy_service().export_status(customer_id, job_id)


@router.delete(
    "/v1/customers/<customer_id>",
    summary="Erase the customer: everything in the table and the buckets",
    tags=["privacy"],
    status_code=202,
    operation_id="eraseCustomer",
    responses=answers(
        {
            200: "Already erased: the audit record",
            202: "Erasure started; Location names its status",
        },
        404,
        409,
    ),
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
    job, _ = privacy_service().request_erasure(customer_id, mode=mode)
    location = f"/v1/customers/{customer_id}/erasure"
    status = 200 if job.state is JobState.DONE else 202
    return Response(status, "application/json", job, headers={"Location": location})


@router.get(
    "/v1/customers/<customer_id>/erasure",
    summary="The erasure of a customer: progress, then the audit record (ids and counts)",
    tags=["privacy"],
    operation_id="getErasure",
    responses=answers({200: "The erasure job"}, 404),
)
def erasure_status(customer_id: Annotated[str, Path()]) -> PrivacyJob:
    return privacy_service().erasure_status(customer_id)
