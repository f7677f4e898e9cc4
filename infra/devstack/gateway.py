"""The local HTTP API: werkzeug in front of the function runtime.

Order of checks as in API Gateway: size limit, route (404), authorization (403),
then the integration; a failed integration is a bare 500 whose details go to the
console, never to the client.
"""

from __future__ import annotations

import hmac
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.apigw import (
    MAX_REQUEST_BYTES,
    HttpRequest,
    HttpResponse,
    InvalidResponse,
    build_event,
    json_response,
    map_response,
    new_request_id,
)
from devstack.jwt_auth import LocalJwtAuthorizer
from devstack.routes import RouteTable
from devstack.runtime import Invocation

Invoke = Callable[[str, dict[str, Any]], Invocation]
WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class Gateway:
    """A WSGI application that serves a :class:`RouteTable` through ``invoke``."""

    def __init__(
        self,
        routes: RouteTable,
        invoke: Invoke,
        *,
        api_ids: dict[str, str],
        account_id: str,
        api_token: str | None = None,
        jwt: LocalJwtAuthorizer | None = None,
        log: TextIO | None = None,
        service_client: Callable[[str], Any] | None = None,
    ) -> None:
        self.routes = routes
        # boto3 clients of the embedded AWS, for routes served by a service integration.
        self.service_client = service_client
        self.invoke = invoke
        self.api_ids = api_ids
        self.account_id = account_id
        self.api_token = api_token or None
        # THREADLINE_API_AUTH=jwt: IAM-protected routes take access tokens instead.
        self.jwt = jwt
        self._log = log

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        response, label = self.handle(request)
        self._access_log(label, response.status, started)
        wsgi_response = Response(response.body, status=response.status)
        wsgi_response.headers.clear()
        for name, value in response.headers:
            wsgi_response.headers.add(name, value)
        result: Iterable[bytes] = wsgi_response(environ, start_response)
        return result

    def handle(self, request: Request) -> tuple[HttpResponse, str]:
        """The response to ``request`` and a log label that carries no customer data."""
        request_id = new_request_id()
        method = request.method.upper()
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return json_response(413, "Request Entity Too Large", request_id=request_id), method
        body = request.stream.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            return json_response(413, "Request Entity Too Large", request_id=request_id), method
        match = self.routes.match(method, request.path)
        if match is None:
            return json_response(404, "Not Found", request_id=request_id), f"{method} (no route)"
        route = match.route
        label = f"{route.key} -> {route.function}"
        if route.protected and self.jwt is not None:
            refused = self.jwt.refusal(request.headers.get("Authorization", ""), method)
            if refused is not None:
                message = "Unauthorized" if refused == 401 else "Forbidden"
                return json_response(refused, message, request_id=request_id), label
        elif route.protected and not self._authorized(request):
            return json_response(403, "Forbidden", request_id=request_id), label
        if route.integration is not None and self.service_client is not None:
            wire = _wire_request(request, body)
            return route.integration.call(self.service_client("sqs"), wire, request_id), label
        event = build_event(
            _wire_request(request, body),
            match,
            api_id=self.api_ids.get(route.api, route.api.lower()),
            account_id=self.account_id,
            request_id=request_id,
        )
        invocation = self.invoke(route.function, event)
        if invocation.cold_start:
            label += " (cold start)"
        if not invocation.ok:
            self._console(
                f"[gateway] {route.function} failed: {invocation.error_type}: "
                f"{invocation.error_message} (RequestId: {invocation.request_id})"
            )
            return json_response(500, "Internal Server Error", request_id=request_id), label
        try:
            response = map_response(invocation.payload)
        except InvalidResponse as exc:
            self._console(f"[gateway] {route.function} returned an invalid response: {exc}")
            return json_response(500, "Internal Server Error", request_id=request_id), label
        response.headers.append(("apigw-requestid", request_id))
        return response, label

    def _authorized(self, request: Request) -> bool:
        # IAM-protected routes stand for themselves locally: open, unless a token is set.
        if self.api_token is None:
            return True
        expected = f"Bearer {self.api_token}"
        # Compared as bytes: compare_digest refuses non-ASCII text with a TypeError,
        # and a header holding a latin-1 byte is a wrong token (403), not a 500.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, expected.encode("utf-8"))

    def _access_log(self, label: str, status: int, started: float) -> None:
        # The route key, never the path or query: those can hold a phone number.
        elapsed = (time.perf_counter() - started) * 1000
        self._console(f"[gateway] {label} {status} in {elapsed:.0f} ms")

    def _console(self, line: str) -> None:
        stream = self._log if self._log is not None else sys.stderr
        print(line, file=stream, flush=True)


def _wire_request(request: Request, body: bytes) -> HttpRequest:
    environ = request.environ
    raw_query = environ.get("QUERY_STRING", "")
    if isinstance(raw_query, str):
        # WSGI carries the query as latin-1 text of the original bytes.
        raw_query = raw_query.encode("latin-1").decode("utf-8", errors="replace")
    return HttpRequest(
        method=request.method.upper(),
        path=request.path,
        raw_query=raw_query,
        headers=list(request.headers.items()),
        body=body,
        source_ip=request.remote_addr or "127.0.0.1",
        protocol=str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
        scheme=request.scheme,
        port=int(environ.get("SERVER_PORT") or 80),
    )


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler minus its access log (the gateway writes a safer one)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class GatewayServer:
    """A WSGI app (the gateway, or what fronts it) on 127.0.0.1, from a background thread.

    The port is bound when the server is made, so its URL is known before it serves.
    """

    def __init__(self, app: WsgiApp, *, host: str = "127.0.0.1", port: int = 3000) -> None:
        # Bound here rather than by werkzeug, which answers a busy port with
        # sys.exit(1): a library must raise (OSError) and let its caller decide.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((host, port))
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
            listener.listen(128)
            self.server: BaseWSGIServer = make_server(
                host,
                port,
                app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )
        self.host = host
        self.port = int(self.server.port)
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="devstack-gateway", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GatewayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()
