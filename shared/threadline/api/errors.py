"""The API's one error body, `{"error": {"code", "message", "details"?}}`, and its OpenAPI text.

Every 4xx/5xx answer of a route carries this body (never RFC 9457 problem details: the
body predates the OpenAPI document and CRMs already parse it). Each route documents the
statuses it really answers with `answers(...)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error answer of the API: a stable code, a readable message.",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "$ref": "#/components/schemas/ErrorBody",
        }
    },
}
ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {
            "type": "string",
            "description": "machine-readable, e.g. not_found, invalid_request, opted_out",
        },
        "message": {"type": "string", "description": "for people; may change"},
        "details": {"description": "optional, code-specific (e.g. which fields are invalid)"},
    },
}


def error_response_doc(description: str) -> OpenAPIResponse:
    """An OpenAPI response whose body is the error body."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


# What each error status means across the API (threadline.errors names the codes).
ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid request: a parameter or the body does not validate (details name them)",
    404: "No such customer, conversation, message, job or subscription",
    409: "Conflicts with the data: opted out of this channel or purpose, the e-mail "
    "address bounced or complained, an identity or external id held by another "
    "customer (details name it), merge refused",
    503: "Storage or the job queue is unavailable; retry",
}
# Every route can meet a request it cannot read and a storage outage.
COMMON_ERRORS = (400, 503)


def answers(
    success: Mapping[int, str],
    *errors: int,
    explained: Mapping[int, str] | None = None,
    models: Mapping[int, type] | None = None,
) -> dict[int, OpenAPIResponse]:
    """A route's documented answers: its 2xx and the error statuses it really gives.

    A 2xx's body is the route's return annotation unless `models` names another (a
    route answering two shapes); `explained` gives a route's own wording for a status.
    """
    documented: dict[int, OpenAPIResponse] = {}
    for status, description in success.items():
        documented[status] = {"description": description}
        if models and status in models:
            documented[status]["content"] = {"application/json": {"model": models[status]}}
    meanings = {**ERROR_MEANINGS, **(explained or {})}
    for status in sorted({*COMMON_ERRORS, *errors, *(explained or {})}):
        documented[status] = error_response_doc(meanings[status])
    return documented


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return Response(status, "application/json", json.dumps({"error": error}))
