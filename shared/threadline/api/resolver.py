"""The API's resolver: the routers included on first use, the one error mapping, the
OpenAPI document.

A cold start imports no router: the first request for a resource imports and includes
the routers that serve it (each router module pulls in its part of the domain), so a
timeline read does not load subscriptions, privacy or merges. The OpenAPI document,
and its pydantic models, are built only when `/v1/openapi.json` is asked for.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from threadline import __version__
from threadline.api.errors import ERROR_BODY_SCHEMA, ERROR_SCHEMA, error_response
from threadline.errors import ThreadlineError
from threadline.model import Model

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme
    from aws_lambda_powertools.utilities.typing import LambdaContext

# The router modules under threadline.api, in the order they are included when all are
# (the OpenAPI document, a path the table below does not know).
ROUTERS = ("customers", "messages", "conversations", "subscriptions", "privacy", "identities")

# Which routers serve a path, by the resource it names: /v1/<collection>[/<id>[/<part>...]]
# is keyed (collection, part). Two routers share /v1/customers/<id> (GET and PATCH in
# customers, DELETE in privacy); the resolver's own routes need none. test_api_routes
# checks every route of every router against this table.
ROUTERS_BY_RESOURCE: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("health", None): (),
    ("openapi.json", None): (),
    ("customers", None): ("customers", "privacy"),
    ("customers", "timeline"): ("customers",),
    ("customers", "notes"): ("customers",),
    ("customers", "messages"): ("messages",),
    ("customers", "conversations"): ("conversations",),
    ("customers", "identities"): ("identities",),
    ("customers", "merge"): ("identities",),
    ("customers", "consent"): ("privacy",),
    ("customers", "exports"): ("privacy",),
    ("customers", "erasure"): ("privacy",),
    ("conversations", None): ("conversations",),
    ("conversations", "close"): ("conversations",),
    ("conversations", "notes"): ("conversations",),
    ("subscriptions", None): ("subscriptions",),
    ("subscriptions", "deliveries"): ("subscriptions",),
    ("subscriptions", "rotate-secret"): ("subscriptions",),
    ("subscriptions", "redeliver"): ("subscriptions",),
}


def resource_of(path: str) -> tuple[str, str | None] | None:
    """The (collection, part) key of a /v1 path; None for any other path."""
    segments = path.split("/")
    if len(segments) < 3 or segments[:2] != ["", "v1"]:
        return None
    return segments[2], segments[4] if len(segments) > 4 else None


def routers_for(path: str) -> tuple[str, ...]:
    """The routers a request for ``path`` may need. A path the table does not know gets
    every router, so routing (and its 404s) is as if all were included."""
    resource = resource_of(path)
    if resource is None:
        return ROUTERS
    return ROUTERS_BY_RESOURCE.get(resource, ROUTERS)


class ApiResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver that includes the routers a request needs first."""

    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        self.included: list[str] = []

    def include_routers(self, names: tuple[str, ...] = ROUTERS) -> None:
        for name in names:
            if name not in self.included:
                module = importlib.import_module(f"threadline.api.{name}")
                self.include_router(module.router)
                self.included.append(name)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.include_routers(routers_for(str(event.get("rawPath") or "")))
        return super().resolve(event, context)


app = ApiResolver()


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


def security_schemes() -> dict[str, SecurityScheme]:
    """How a caller proves who it is: the deployed API takes one of the two (template.yaml's
    ApiAuth parameter); the local stack takes a bearer token."""
    # Powertools' OpenAPI models cost more to import than the rest of the API: only the
    # document needs them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    return {
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
    app.include_routers()
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
            security_schemes=security_schemes(),
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
    # Powertools lists paths in the order routes were added, which here depends on the
    # requests this environment served first; sorted, the document is the same bytes.
    document["paths"] = dict(sorted(document["paths"].items()))
    return document


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return openapi_document()
