"""The API's resolver: every router included, the one error mapping, the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    APIKeyIn,
    HTTPBearer,
    SecurityScheme,
)

from threadline import __version__
from threadline.api import conversations, customers, identities, messages, privacy, subscriptions
from threadline.api.errors import ERROR_BODY_SCHEMA, ERROR_SCHEMA, error_response
from threadline.errors import ThreadlineError
from threadline.model import Model

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


class Health(Model):
    status: Literal["ok"]
    version: str


@app.get("/v1/health", summary="Liveness check", tags=["meta"], operation_id="getHealth")
def health() -> Health:
    return Health(status="ok", version=__version__)


# How a caller proves who it is: the deployed API takes one of the two (template.yaml's
# ApiAuth parameter); the local stack takes a bearer token.
SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    "sigv4": APIKey(
        name="Authorization",
        in_=APIKeyIn.header,
        description=(
            "AWS Signature Version 4 with IAM credentials allowed execute-api:Invoke on "
            "the API (ApiAuth=iam, the default): sign every request with service "
            "`execute-api`, e.g. botocore's SigV4Auth or aws-sigv4 in your language."
        ),
    ),
    "jwt": HTTPBearer(
        bearerFormat="JWT",
        description=(
            "An OAuth 2.0 access token from the issuer named by JwtIssuer, for the "
            "audience JwtAudience (ApiAuth=jwt), e.g. Amazon Cognito client credentials. "
            "Scope threadline/read reads; threadline/write also changes (docs/deployment.md)."
        ),
    ),
}


def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title="threadline API",
            version=__version__,
            description=(
                "Customer timelines across every channel. Deployed, every route needs "
                "SigV4-signed IAM credentials (sigv4), or with ApiAuth=jwt an OAuth 2.0 "
                "access token (jwt) with scope threadline/read (GET) or threadline/write; "
                "the local stack accepts a bearer token when THREADLINE_API_TOKEN is set."
            ),
            security_schemes=SECURITY_SCHEMES,
            security=[{"sigv4": []}, {"jwt": []}],
        )
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    # Powertools documents a 422 HTTPValidationError on every route; this API answers
    # invalid requests with 400 and the error body, so only routes that declare their own
    # 422 (with the error body) keep one.
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                del responses["422"]
            for status, response in responses.items():
                if status == "204" or response.get("content") == {"application/json": {}}:
                    response.pop("content", None)
    if "ResponseValidationError" not in json.dumps(document["paths"]):
        for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
            schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    schemas["ErrorBody"] = ERROR_BODY_SCHEMA
    return document


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return openapi_document()
