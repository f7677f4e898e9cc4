"""HTTP API routes from the translated APIs' OpenAPI bodies, matched as API Gateway does.

API Gateway picks the most specific route: a full match of path and method beats
a greedy ``{proxy+}`` match, which beats ``$default``; a route's own method beats
``ANY``. Unmatched requests get API Gateway's 404 ``{"message":"Not Found"}``.
"""

from __future__ import annotations

import re
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
HTTP_API = "AWS::ApiGatewayV2::Api"
ANY_METHOD = "x-amazon-apigateway-any-method"
INTEGRATION = "x-amazon-apigateway-integration"
# A Lambda proxy integration's URI names its function as ${Function.Arn}.
_FUNCTION_IN_URI = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")


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
    """Every Lambda route of every HTTP API's OpenAPI body, with its authorizer.

    SAM writes each ``HttpApi`` event into its API's body, with the effective
    authorizer as the operation's ``security`` (``NONE`` for an open route).
    """
    routes = []
    for api in stack.template.logical_ids_of_type(HTTP_API):
        if api not in stack:
            continue  # its Condition is false
        body = stack.template.properties(api).get("Body") or {}
        for path, operations in (body.get("paths") or {}).items():
            for method, operation in operations.items():
                function = _integrated_function(operation.get(INTEGRATION) or {}, functions)
                if function is None:
                    continue
                where = f"{api} {method.upper()} {path}"
                version = str(operation[INTEGRATION].get("payloadFormatVersion", "2.0"))
                if version != "2.0":
                    raise TemplateError(
                        f"{where}: the local gateway speaks payload format 2.0 only, not {version}"
                    )
                verb = "ANY" if method == ANY_METHOD else method.upper()
                routes.append(Route(verb, path, function, _authorizer(operation), api))
    return RouteTable(routes)


def _integrated_function(
    integration: Mapping[str, Any], functions: Mapping[str, FunctionSpec]
) -> str | None:
    uri = integration.get("uri")
    text = uri.get("Fn::Sub") if isinstance(uri, Mapping) else uri
    match = _FUNCTION_IN_URI.search(text) if isinstance(text, str) else None
    return match.group(1) if match and match.group(1) in functions else None


def _authorizer(operation: Mapping[str, Any]) -> str | None:
    """The operation's authorizer; None when open."""
    for requirement in operation.get("security") or []:
        for name in requirement:
            return None if name == OPEN else str(name)
    return None


def _is_variable(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")
