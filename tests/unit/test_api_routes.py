"""The /v1 API keeps its surface: every route registered, documented, and errors mapped once.

The resolver and its routers import without AWS: stores are built on first use, so
these tests resolve real API Gateway HTTP API events that never reach a store
(validation and routing fail first).
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from openapi_spec_validator import validate

from threadline import __version__
from threadline.api.resolver import (
    ROUTERS,
    ROUTERS_BY_RESOURCE,
    app,
    openapi_document,
    resource_of,
    routers_for,
)

# The surface CRMs integrate against (docs/api.md): (method, OpenAPI path).
API_ROUTES = {
    ("GET", "/v1/health"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/{customer_id}"),
    ("PATCH", "/v1/customers/{customer_id}"),
    ("DELETE", "/v1/customers/{customer_id}"),
    ("GET", "/v1/customers/{customer_id}/timeline"),
    ("POST", "/v1/customers/{customer_id}/messages"),
    ("GET", "/v1/customers/{customer_id}/messages/{message_id}/media/{index}"),
    ("GET", "/v1/customers/{customer_id}/conversations"),
    ("GET", "/v1/conversations/{conversation_id}"),
    ("POST", "/v1/conversations/{conversation_id}/close"),
    ("POST", "/v1/conversations/{conversation_id}/notes"),
    ("POST", "/v1/customers/{customer_id}/notes"),
    ("POST", "/v1/customers/{customer_id}/identities"),
    ("POST", "/v1/customers/{customer_id}/merge"),
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{subscription_id}"),
    ("DELETE", "/v1/subscriptions/{subscription_id}"),
    ("GET", "/v1/subscriptions/{subscription_id}/deliveries"),
    ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"),
    ("POST", "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver"),
    ("POST", "/v1/subscriptions/{subscription_id}/redeliver"),
    ("GET", "/v1/customers/{customer_id}/consent"),
    ("PUT", "/v1/customers/{customer_id}/consent"),
    ("POST", "/v1/customers/{customer_id}/exports"),
    ("GET", "/v1/customers/{customer_id}/exports/{job_id}"),
    ("GET", "/v1/customers/{customer_id}/erasure"),
}
UNDOCUMENTED_ROUTES = {("GET", "/v1/openapi.json")}


class LambdaContext:
    function_name = "api"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def resolve(method: str, path: str, query: str = "", body: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event through the resolver."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "api.example.test", "content-type": "application/json"},
        "requestContext": {
            "domainName": "api.example.test",
            "http": {"method": method, "path": path, "sourceIp": "203.0.113.10"},
            "requestId": "unit",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if body is not None:
        event["body"] = body
    result: dict[str, Any] = app.resolve(event, LambdaContext())
    return result


def registered_routes() -> set[tuple[str, str]]:
    app.include_routers()
    routes = app._static_routes + app._dynamic_routes
    return {(route.method, route.openapi_path) for route in routes}


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def test_every_route_of_the_api_is_registered_once():
    assert registered_routes() == API_ROUTES | UNDOCUMENTED_ROUTES
    routes = app._static_routes + app._dynamic_routes
    assert len(routes) == len(API_ROUTES | UNDOCUMENTED_ROUTES)


def _example_path(rule: str) -> str:
    """A concrete path for a powertools rule: each <name> becomes an id-like value."""
    return re.sub(r"<(\w+)>", lambda match: f"{match.group(1)}-1", rule)


def router_routes() -> list[tuple[str, str, str]]:
    """(router module, method, rule) of every route the routers declare."""
    routes = []
    for name in ROUTERS:
        router = importlib.import_module(f"threadline.api.{name}").router
        for key in router._routes:
            rule, methods = key[0], key[1]
            routes.extend((name, method.upper(), rule) for method in methods)
    return routes


def test_every_route_is_reached_through_the_routing_table():
    # The resolver includes only the routers the table names for a path; a route the
    # table sent elsewhere would answer 404 on a cold start.
    served: set[tuple[str, tuple[str, str | None] | None]] = set()
    for name, method, rule in router_routes():
        path = _example_path(rule)
        assert resource_of(path) in ROUTERS_BY_RESOURCE, (method, rule)
        assert name in routers_for(path), (method, rule, routers_for(path))
        served.add((name, resource_of(path)))
    # ...and names no router for a resource that router does not serve.
    for resource, names in ROUTERS_BY_RESOURCE.items():
        for name in names:
            assert (name, resource) in served, (resource, name)


def test_the_resolvers_own_routes_need_no_router_and_unknown_paths_get_all():
    assert routers_for("/v1/health") == ()
    assert routers_for("/v1/openapi.json") == ()
    assert routers_for("/v1/nothing-here") == ROUTERS
    assert routers_for("/v1/customers/c1/unknown") == ROUTERS
    assert routers_for("/elsewhere") == ROUTERS
    assert routers_for("") == ROUTERS


# A fresh interpreter: this one's resolver has every router included by now.
FIRST_REQUEST = """
import json, sys
from threadline.api.resolver import app
event = {{
    "version": "2.0", "rawPath": {path!r}, "rawQueryString": {query!r},
    "queryStringParameters": {params!r},
    "headers": {{"host": "api.example.test"}},
    "requestContext": {{"http": {{"method": {method!r}, "path": {path!r}}},
                        "requestId": "unit", "stage": "$default"}},
    "isBase64Encoded": False,
}}
class Context:
    function_name = "api"
    aws_request_id = "unit"
answer = app.resolve(event, Context())
loaded = sorted(m for m in sys.modules if m.startswith("threadline.api.") or m in (
    "threadline.customers", "threadline.subscriptions", "threadline.privacy",
    "aws_lambda_powertools.event_handler.openapi.models"))
print(json.dumps({{"status": answer["statusCode"], "included": app.included, "loaded": loaded}}))
"""


def first_request(method: str, path: str, query: str = "") -> dict[str, Any]:
    params = dict(p.split("=", 1) for p in query.split("&")) if query else None
    code = FIRST_REQUEST.format(method=method, path=path, query=query, params=params)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return answer


def test_a_cold_request_includes_only_the_routers_its_path_needs():
    answer = first_request("GET", "/v1/customers/c1/timeline", "limit=0")
    assert answer["status"] == 400  # validation answered: the route was found
    assert answer["included"] == ["customers"]
    for elsewhere in ("subscriptions", "privacy", "identities", "messages"):
        assert f"threadline.api.{elsewhere}" not in answer["loaded"]
    assert "threadline.subscriptions" not in answer["loaded"]
    assert "aws_lambda_powertools.event_handler.openapi.models" not in answer["loaded"]


def test_a_health_check_includes_no_router():
    answer = first_request("GET", "/v1/health")
    assert answer["status"] == 200
    assert answer["included"] == []
    assert not {f"threadline.api.{name}" for name in ROUTERS} & set(answer["loaded"])


def test_a_cold_request_for_an_unknown_path_is_the_same_404():
    answer = first_request("GET", "/v1/customers/c1/unknown")
    assert answer["status"] == 404
    assert answer["included"] == list(ROUTERS)


def test_the_openapi_document_describes_every_route_and_is_valid_openapi():
    document = openapi_document()
    validate(document)
    assert documented_routes(document) == API_ROUTES
    assert document["info"]["version"] == __version__
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_every_documented_error_answer_is_the_error_body():
    document = openapi_document()
    for method, path, operation in operations(document):
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        if path != "/v1/health":
            assert {"400", "503"} <= set(errors), (method, path)
        for response in errors.values():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path)
    assert "HTTPValidationError" not in json.dumps(document)


def test_only_the_routes_that_can_refuse_as_unprocessable_document_a_422():
    document = openapi_document()
    with_422 = {op["operationId"] for _, _, op in operations(document) if "422" in op["responses"]}
    assert with_422 == {
        "sendMessage",
        "createSubscription",
        "putConsent",
        "addConversationNote",
        "addCustomerNote",
    }
    descriptions = {
        op["responses"]["422"]["description"]
        for _, _, op in operations(document)
        if "422" in op["responses"]
    }
    assert len(descriptions) == 4


def test_every_operation_declares_its_success_body_and_a_readable_operation_id():
    document = openapi_document()
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(set(ids)) == len(ids)
    assert {"getTimeline", "sendMessage", "findCustomer", "createSubscription"} <= set(ids)
    for method, path, operation in operations(document):
        assert operation["operationId"].isalnum(), operation["operationId"]
        assert operation["tags"], (method, path)
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, (method, path)
        for status, response in successes.items():
            if status == "204":
                assert "content" not in response
            else:
                assert "$ref" in response["content"]["application/json"]["schema"], (
                    method,
                    path,
                    status,
                )


def test_the_document_names_both_ways_to_authenticate():
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["sigv4"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schemes["sigv4"]["description"],
    }
    assert schemes["jwt"]["scheme"] == "bearer"
    assert schemes["jwt"]["bearerFormat"] == "JWT"
    assert document["security"] == [{"sigv4": []}, {"jwt": []}]


def test_health_answers_without_aws():
    answer = resolve("GET", "/v1/health")
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"status": "ok", "version": __version__}


def test_the_served_document_is_the_openapi_document():
    answer = resolve("GET", "/v1/openapi.json")
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == openapi_document()


def test_an_unknown_route_is_a_404_error_body():
    answer = resolve("GET", "/v1/nothing-here")
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"]) == {
        "error": {"code": "not_found", "message": "no such route"}
    }


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "location"),
    [
        ("GET", "/v1/customers/c1/timeline", "limit=0", None, ["query", "limit"]),
        ("GET", "/v1/subscriptions/s1/deliveries", "limit=101", None, ["query", "limit"]),
        ("GET", "/v1/customers/c1/messages/m1/media/100", "", None, ["path", "index"]),
        ("POST", "/v1/customers/c1/messages", "", '{"text": ""}', ["body", "text"]),
        ("PUT", "/v1/customers/c1/consent", "", '{"surprise": 1}', ["body", "identity"]),
        ("DELETE", "/v1/customers/c1", "mode=shred", None, ["query", "mode"]),
    ],
)
def test_an_invalid_request_is_a_400_naming_the_field(method, path, query, body, location):
    answer = resolve(method, path, query, body)
    assert answer["statusCode"] == 400
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "invalid_request"
    assert location in [detail["location"] for detail in error["details"]]


def test_a_lookup_needs_exactly_one_of_identity_or_external_id():
    answer = resolve("GET", "/v1/customers")
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "invalid_request"
