"""HTTP API routes from the functions' ``HttpApi`` events, matched as API Gateway does.

API Gateway picks the most specific route: a full match of path and method beats
a greedy ``{proxy+}`` match, which beats ``$default``; a route's own method beats
``ANY``. Unmatched requests get API Gateway's 404 ``{"message":"Not Found"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.functions import FunctionSpec
from devstack.resources import StackResources
from devstack.template import TemplateError

DEFAULT_ROUTE = "$default"
# SAM's implicit API, used by HttpApi events that name no ApiId.
IMPLICIT_API = "ServerlessHttpApi"
OPEN = "NONE"


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # /webhooks/twilio/messaging, /v1/{proxy+}, or $default
    function: str  # logical id
    authorizer: str | None = None  # effective: AWS_IAM, a named authorizer, or None (open)
    api: str = IMPLICIT_API
    # A service integration (devstack.integrations) that answers instead of a function;
    # ``function`` then names the integration resource.
    integration: Any = field(default=None, compare=False)
    segments: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        segments = () if self.path == DEFAULT_ROUTE else tuple(self.path.strip("/").split("/"))
        object.__setattr__(self, "segments", segments)
        for index, segment in enumerate(segments):
            if segment.endswith("+}") and index != len(segments) - 1:
                raise TemplateError(f"route {self.key}: a greedy variable must come last")

    @property
    def key(self) -> str:
        """API Gateway's routeKey: ``POST /webhooks/twilio/messaging``."""
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    @property
    def protected(self) -> bool:
        return self.authorizer is not None

    @property
    def greedy(self) -> bool:
        return bool(self.segments) and self.segments[-1].endswith("+}")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if this route takes ``method path``, else None."""
        if self.method not in {"ANY", method}:
            return None
        if self.path == DEFAULT_ROUTE:
            return {}
        parts = path.strip("/").split("/") if path.strip("/") else [""]
        parameters: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if _is_variable(segment) and segment.endswith("+}"):
                rest = "/".join(parts[index:])
                if not rest:
                    return None
                parameters[segment[1:-2]] = rest
                return parameters
            if index >= len(parts):
                return None
            if _is_variable(segment):
                if not parts[index]:
                    return None
                parameters[segment[1:-1]] = parts[index]
            elif segment != parts[index]:
                return None
        return parameters if len(parts) == len(self.segments) else None

    def priority(self) -> tuple[int, int, int, int]:
        """Sort key: lower wins among routes that match the same request."""
        literals = sum(1 for segment in self.segments if not _is_variable(segment))
        kind = 2 if self.path == DEFAULT_ROUTE else 1 if self.greedy else 0
        return (kind, -literals, -len(self.segments), self.method == "ANY")


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: Mapping[str, str]


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=Route.priority)
        seen: dict[str, Route] = {}
        for route in self.routes:
            if route.key in seen:
                raise TemplateError(
                    f"route {route.key} is defined twice ({seen[route.key].function}, "
                    f"{route.function})"
                )
            seen[route.key] = route

    def __iter__(self) -> Any:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, method: str, path: str) -> RouteMatch | None:
        for route in self.routes:
            parameters = route.match(method.upper(), path)
            if parameters is not None:
                return RouteMatch(route, parameters)
        return None


def http_routes(stack: StackResources, functions: Mapping[str, FunctionSpec]) -> RouteTable:
    """Every ``HttpApi`` event of every function, with its effective authorizer."""
    routes = []
    for spec in functions.values():
        for event in spec.events:
            if event.type != "HttpApi":
                continue
            properties = event.raw_properties
            version = str(properties.get("PayloadFormatVersion", "2.0"))
            if version != "2.0":
                raise TemplateError(
                    f"{spec.logical_id}.{event.name}: the local gateway speaks payload "
                    f"format 2.0 only, not {version}"
                )
            path = str(event.properties.get("Path") or DEFAULT_ROUTE)
            method = str(event.properties.get("Method") or "ANY").upper()
            method = "ANY" if method in {"*", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else method
            api = _api_logical_id(properties.get("ApiId"))
            authorizer = _effective_authorizer(stack, api, event.properties.get("Auth") or {})
            routes.append(Route(method, path, spec.logical_id, authorizer, api))
    return RouteTable(routes)


def _api_logical_id(api_id: Any) -> str:
    if api_id is None:
        return IMPLICIT_API
    if isinstance(api_id, Mapping) and isinstance(api_id.get("Ref"), str):
        return str(api_id["Ref"])
    raise TemplateError(f"ApiId {api_id!r} must be a !Ref to an AWS::Serverless::HttpApi")


def _effective_authorizer(
    stack: StackResources, api: str, event_auth: Mapping[str, Any]
) -> str | None:
    """The event's Authorizer, else its API's DefaultAuthorizer; None when open."""
    authorizer = event_auth.get("Authorizer")
    if authorizer is None:
        if api == IMPLICIT_API:
            api_properties: Mapping[str, Any] = stack.template.globals_for("HttpApi")
        else:
            api_properties = stack.template.properties(api)
        default = stack.resolve((api_properties.get("Auth") or {}).get("DefaultAuthorizer"))
        authorizer = default
    if authorizer is None or str(authorizer) == OPEN:
        return None
    return str(authorizer)


def _is_variable(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")
