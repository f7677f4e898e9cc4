"""API Gateway HTTP API payload format 2.0: request -> event, handler result -> response.

Pure functions over plain data, so they are tested without sockets. Where the
documentation is silent, they follow what real HTTP APIs are observed to do:

* only ``text/*``, ``application/json``, ``application/xml`` and
  ``application/javascript`` bodies arrive as text; every other body (a form
  post, or no Content-Type at all) arrives base64-encoded with ``isBase64Encoded``;
* ``rawPath`` and ``pathParameters`` are percent-decoded, ``rawQueryString`` is
  exactly what the client sent;
* duplicate headers and query parameters are joined with commas, the Cookie
  header becomes the ``cookies`` list;
* a result without ``statusCode`` is a 200 ``application/json`` response whose
  body is the result serialized as JSON.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from devstack.routes import RouteMatch

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
TEXT_CONTENT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Hop-by-hop and length headers are the gateway's business, not the handler's.
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class HttpRequest:
    """A request as it came off the wire."""

    method: str
    path: str  # percent-decoded
    raw_query: str  # byte for byte as sent
    headers: Sequence[tuple[str, str]]  # in arrival order, duplicates kept
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    scheme: str = "http"
    port: int = 80


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class InvalidResponse(ValueError):
    """A handler result API Gateway would refuse (it answers 500 instead)."""


def json_response(status: int, message: str, *, request_id: str | None = None) -> HttpResponse:
    """API Gateway's own answers: ``{"message": "Not Found"}`` and the like."""
    headers = [("Content-Type", "application/json")]
    if request_id:
        headers.append(("apigw-requestid", request_id))
    return HttpResponse(status, headers, json.dumps({"message": message}).encode())


def new_request_id() -> str:
    """An id shaped like API Gateway's (``JKJaXmPLvHcESHA=``)."""
    return base64.b64encode(os.urandom(11)).decode()


def body_is_text(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in TEXT_CONTENT_TYPES


def joined_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; a repeated header's values joined with commas."""
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def build_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    api_id: str,
    account_id: str,
    request_id: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload v2.0 event API Gateway sends for ``request`` on ``match.route``."""
    now = time.time() if now is None else now
    headers = joined_headers(request.headers)
    cookie_header = headers.pop("cookie", None)
    # API Gateway stamps these itself, whatever the client sent.
    forwarded_for = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip
    )
    headers["x-forwarded-port"] = str(request.port)
    headers["x-forwarded-proto"] = request.scheme
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{os.urandom(12).hex()}")
    if request.body:
        headers["content-length"] = str(len(request.body))
    host = headers.get("host", "")
    route = match.route
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
    }
    if cookie_header:
        event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
    event["headers"] = headers
    if request.raw_query:
        event["queryStringParameters"] = _query_parameters(request.raw_query)
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": _domain_prefix(host),
        "http": {
            "method": request.method.upper(),
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.key,
        "stage": "$default",
        "time": _clf_time(now),
        "timeEpoch": int(now * 1000),
    }
    if request.body:
        if body_is_text(headers.get("content-type")):
            event["body"] = request.body.decode("utf-8", errors="replace")
            event["isBase64Encoded"] = False
        else:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def map_response(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a handler's payload v2.0 result."""
    if not (isinstance(result, Mapping) and "statusCode" in result):
        body = json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], body.encode())
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidResponse(f"statusCode must be an HTTP status, not {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in _mapping(result, "headers").items():
        headers.append((str(name), _header_value(value)))
    for name, values in _mapping(result, "multiValueHeaders").items():
        if not isinstance(values, list):
            raise InvalidResponse(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name), _header_value(value)) for value in values)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise InvalidResponse("cookies must be a list of strings")
    headers.extend(("Set-Cookie", str(cookie)) for cookie in cookies)
    headers = [(k, v) for k, v in headers if k.lower() not in _DROPPED_RESPONSE_HEADERS]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    content = result.get("body")
    if content is None:
        payload = b""
    elif not isinstance(content, str):
        raise InvalidResponse(f"body must be a string, not {type(content).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(content, validate=True)
        except ValueError:
            raise InvalidResponse("isBase64Encoded is true but body is not base64") from None
    else:
        payload = content.encode("utf-8")
    return HttpResponse(status, headers, payload)


def _mapping(result: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = result.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{key} must be an object")
    return value


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidResponse(f"header values must be strings, not {type(value).__name__}")


def _query_parameters(raw_query: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def _domain_prefix(host: str) -> str:
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if hostname.replace(".", "").isdigit():
        return hostname  # an IP address has no meaningful first label
    return hostname.split(".", 1)[0]


def _clf_time(now: float) -> str:
    moment = time.gmtime(now)
    return (
        f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:"
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000"
    )
