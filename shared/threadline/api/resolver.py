"""The API's resolver: every router included, the one error mapping, the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from threadline import __version__
from threadline.api import conversations, customers, identities, messages, privacy, subscriptions
from threadline.api.errors import ERROR_SCHEMA, error_response
from threadline.errors import ThreadlineError

app = APIGatewayHttpResolver(enable_validation=True)
for router in (
    customers.router,
    messages.router,
    conversations.router,
    subscriptions.router,
    privacy.router,
    identities.router,
):
    app.include_router(router)


# ------------------------------------------------------- the one error mapping
# Every router raises threadline.errors; only here do they become answers.


@app.exception_handler(ThreadlineError)  # type: ignore[untyped-decorator]
def _threadline_error(error: ThreadlineError) -> Response[str]:
    return error_response(error.status, error.code, error.message, getattr(error, "details", None))


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _validation_error(error: RequestValidationError) -> Response[str]:
    details = [
        {"location": list(e.get("loc", ())), "message": e.get("msg")} for e in error.errors()
    ]
    return error_response(400, "invalid_request", "the request is not valid", details)


@app.not_found
def _not_found(_: Exception) -> Response[str]:
    return error_response(404, "not_found", "no such route")


# ------------------------------------------------------------------------- meta


@app.get("/v1/health", summary="Liveness check", tags=["meta"])
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


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
    document.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    return document


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return openapi_document()
