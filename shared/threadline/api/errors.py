"""The API's one error body, `{"error": {"code", "message", "details"?}}`, and its OpenAPI text."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse


ERROR_SCHEMA: dict[str, Any] = {
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


def error_response_doc(description: str) -> OpenAPIResponse:
    """An OpenAPI response whose body is the error body."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


# The errors every route can answer (threadline.errors names the codes).
ERROR_RESPONSES: dict[int, OpenAPIResponse] = {
    status: error_response_doc(description)
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


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return Response(status, "application/json", json.dumps({"error": error}))
