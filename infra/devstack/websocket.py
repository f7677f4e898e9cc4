"""API Gateway WebSocket APIs, locally: the template's routes on a real WebSocket server.

Each ``AWS::ApiGatewayV2::Api`` with ``ProtocolType: WEBSOCKET`` becomes a
``websockets`` server on 127.0.0.1 that turns what a client does into the Lambda
events API Gateway produces (``requestContext.routeKey``, ``eventType``,
``connectionId``, ``domainName``, ``stage``, ...) and invokes the function its
``AWS::ApiGatewayV2::Route`` -> ``Integration`` names:

* the handshake is ``$connect`` (query string and headers in the event); a non-2xx
  answer refuses it with that status, as API Gateway does;
* each message goes to the route ``RouteSelectionExpression``
  (``$request.body.<field>``) selects, else ``$default``; when the route has a
  ``RouteResponseSelectionExpression`` the function's ``body`` is sent back;
* a close is ``$disconnect``.

Beside it, an HTTP server answers the ``@connections`` API
(``POST|GET|DELETE /<stage>/@connections/<id>``) that functions reach with boto3's
``apigatewaymanagementapi`` client through ``endpoint_url`` (the template's
``WebchatConnectionsUrl`` parameter locally), so the function code is the deployed
code. A gone connection answers 410 ``GoneException``. The same HTTP server serves
the web chat demo page (``/webchat/demo``) that loads the widget from the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.intrinsics import references
from devstack.resources import StackResources
from devstack.runtime import Invocation
from devstack.template import TemplateError

WEBSOCKET_API = "AWS::ApiGatewayV2::Api"
# API Gateway's limits: 128 KB per message (32 KB frames), 2 h per connection.
MAX_MESSAGE_BYTES = 128 * 1024
DEMO_PAGE = Path(__file__).resolve().parents[1] / "webchat" / "demo.html"
DEMO_PATH = "/webchat/demo"
SOCKET_URL_PARAMETER = "WebchatSocketUrl"
CONNECTIONS_URL_PARAMETER = "WebchatConnectionsUrl"
ORIGINS_PARAMETER = "WebchatAllowedOrigins"
# /<stage>/@connections/<id> deployed; the stage is optional here.
_CONNECTIONS_PATH = re.compile(r"^(?:/[^/@]+)?/@connections/([^/]+)$")

Invoke = Callable[[str, dict[str, Any]], Invocation]


@dataclass(frozen=True)
class SocketRoute:
    key: str
    function: str
    returns_response: bool


@dataclass(frozen=True)
class SocketApi:
    logical_id: str
    api_id: str
    stage: str
    selection_expression: str
    routes: Mapping[str, SocketRoute]

    def route_for(self, body: str) -> SocketRoute | None:
        """The route a message selects (``$request.body.action``), else ``$default``."""
        prefix = "$request.body."
        if self.selection_expression.startswith(prefix):
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            value: Any = document
            for part in self.selection_expression[len(prefix) :].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and value in self.routes and not value.startswith("$"):
                return self.routes[value]
        return self.routes.get("$default")


def _ref_target(value: Any) -> str | None:
    names = references(value)
    return next(iter(names)) if len(names) == 1 else None


def local_websocket(
    template_parameters: Mapping[str, Any], gateway_port: int, log: TextIO | None
) -> WebSocketEmulator | None:
    """An emulator bound next to the gateway (its port + 1 and + 2, or free ports when
    the gateway's is), when the template has the web chat parameters to point at it."""
    if SOCKET_URL_PARAMETER not in template_parameters:
        return None
    if gateway_port:
        try:
            return WebSocketEmulator(
                socket_port=gateway_port + 1, http_port=gateway_port + 2, log=log
            )
        except OSError:
            pass  # taken: any free ports will do, the banner prints them
    return WebSocketEmulator(log=log)


def websocket_apis(stack: StackResources, functions: Mapping[str, Any]) -> list[SocketApi]:
    """The template's WebSocket APIs with their routes' functions."""
    template = stack.template
    apis = []
    for api in template.logical_ids_of_type(WEBSOCKET_API):
        properties = template.properties(api)
        if str(properties.get("ProtocolType", "")).upper() != "WEBSOCKET":
            continue

        def of_api(kind: str, api: str = api) -> list[str]:
            return [
                logical_id
                for logical_id in template.logical_ids_of_type(kind)
                if _ref_target(template.properties(logical_id).get("ApiId")) == api
            ]

        integration_functions: dict[str, str] = {}
        for integration in of_api("AWS::ApiGatewayV2::Integration"):
            uri = template.properties(integration).get("IntegrationUri")
            targets = [name for name in references(uri) if name in functions]
            if targets:
                integration_functions[integration] = targets[0]
        answered = {
            _ref_target(template.properties(response).get("RouteId"))
            for response in of_api("AWS::ApiGatewayV2::RouteResponse")
        }
        routes = {}
        for route in of_api("AWS::ApiGatewayV2::Route"):
            route_properties = template.properties(route)
            key = str(stack.resolve(route_properties.get("RouteKey")))
            route_integration = _ref_target(route_properties.get("Target"))
            target_function = integration_functions.get(route_integration or "")
            if target_function is None:
                raise TemplateError(f"{route}: its Target names no Lambda integration")
            returns = bool(route_properties.get("RouteResponseSelectionExpression")) and (
                route in answered
            )
            routes[key] = SocketRoute(key, target_function, returns)
        stages = [
            str(stack.resolve(template.properties(stage).get("StageName")))
            for stage in of_api("AWS::ApiGatewayV2::Stage")
        ]
        apis.append(
            SocketApi(
                logical_id=api,
                api_id=stack.physical_id(api),
                stage=stages[0] if stages else "$default",
                selection_expression=str(
                    properties.get("RouteSelectionExpression") or "$request.body.action"
                ),
                routes=routes,
            )
        )
    return apis


def _listener(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    listener.listen(128)
    return listener


def _connection_id() -> str:
    # API Gateway's ids are 12 characters of base64 ending in "=": URL-safe here.
    return base64.urlsafe_b64encode(secrets.token_bytes(9)).decode()[:11] + "="


@dataclass
class _Client:
    connection: Any
    connected_at: float
    source_ip: str
    user_agent: str
    last_active: float = field(default_factory=time.time)


class WebSocketEmulator:
    """One WebSocket API's server and its ``@connections`` endpoint, bound on creation.

    The ports are bound before the stack's resources exist (their URLs are template
    parameters); :meth:`start` serves once the API and the runtime are known.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        socket_port: int = 0,
        http_port: int = 0,
        log: TextIO | None = None,
    ) -> None:
        self.host = host
        self._socket_listener = _listener(host, socket_port)
        try:
            self._http_listener = _listener(host, http_port)
        except OSError:
            self._socket_listener.close()
            raise
        self.socket_port = int(self._socket_listener.getsockname()[1])
        self.http_port = int(self._http_listener.getsockname()[1])
        self.api: SocketApi | None = None
        self.gateway_url = ""
        self._invoke: Invoke | None = None
        self._log = log
        self._clients: dict[str, _Client] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._http: BaseWSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    # ------------------------------------------------------------ URLs

    @property
    def socket_base_url(self) -> str:
        return f"ws://{self.host}:{self.socket_port}"

    @property
    def http_base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def demo_url(self) -> str:
        return self.http_base_url + DEMO_PATH

    def parameter_defaults(self) -> dict[str, str]:
        """Template parameters that point the functions at this emulator.

        The emulator takes any stage path (``/dev``, ``/``), so its URLs are known
        before the stack's stage is resolved.
        """
        return {
            SOCKET_URL_PARAMETER: self.socket_base_url,
            CONNECTIONS_URL_PARAMETER: self.http_base_url,
            # The demo page's origin opens sessions on the gateway (cross-origin).
            ORIGINS_PARAMETER: self.http_base_url,
        }

    # ------------------------------------------------------------ lifecycle

    def start(self, api: SocketApi, invoke: Invoke, *, gateway_url: str) -> WebSocketEmulator:
        self.api = api
        self._invoke = invoke
        self.gateway_url = gateway_url
        ready = threading.Event()
        self._loop_thread = threading.Thread(
            target=self._run_loop, args=(ready,), name="devstack-websocket", daemon=True
        )
        self._loop_thread.start()
        ready.wait(10)
        self._http = make_server(
            self.host,
            self.http_port,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
            fd=self._http_listener.fileno(),
        )
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="devstack-connections", daemon=True
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._loop_thread is not None:
            self._loop_thread.join(5)
        if self._http is not None and self._http_thread is not None:
            self._http.shutdown()
            self._http_thread.join(5)
            self._http.server_close()
        for listener in (self._socket_listener, self._http_listener):
            listener.close()

    def _run_loop(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        async with serve(
            self._session,
            sock=self._socket_listener,
            process_request=self._handshake,
            max_size=MAX_MESSAGE_BYTES,
            # API Gateway pings nothing; the widget reconnects when a socket dies.
            ping_interval=None,
            compression=None,
        ):
            ready.set()
            await self._stop.wait()

    # ------------------------------------------------------------ events

    def _context(self, route_key: str, event_type: str, connection_id: str) -> dict[str, Any]:
        assert self.api is not None
        now = datetime.now(UTC)
        client = self._clients.get(connection_id)
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "messageDirection": "IN",
            "connectionId": connection_id,
            "connectedAt": int((client.connected_at if client else time.time()) * 1000),
            "domainName": f"{self.host}:{self.socket_port}",
            "stage": self.api.stage,
            "apiId": self.api.api_id,
            "requestId": uuid.uuid4().hex[:16] + "=",
            "extendedRequestId": uuid.uuid4().hex[:16] + "=",
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {
                "sourceIp": client.source_ip if client else self.host,
                "userAgent": client.user_agent if client else "",
            },
        }

    async def _call(self, route: SocketRoute, event: dict[str, Any]) -> Invocation:
        assert self._invoke is not None
        invoke = self._invoke
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        invocation = await loop.run_in_executor(None, invoke, route.function, event)
        elapsed = (time.perf_counter() - started) * 1000
        outcome = _status_of(invocation) if invocation.ok else f"failed: {invocation.error_type}"
        self._console(f"[websocket] {route.key} -> {route.function} {outcome} in {elapsed:.0f} ms")
        return invocation

    async def _handshake(self, connection: Any, request: Any) -> Any:
        assert self.api is not None
        route = self.api.routes.get("$connect")
        connection_id = _connection_id()
        connection.threadline_id = connection_id
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        self._clients[connection_id] = _Client(
            connection=connection,
            connected_at=time.time(),
            source_ip=str((connection.remote_address or (self.host,))[0]),
            user_agent=headers.get("user-agent", ""),
        )
        if route is None:
            return None
        query = {
            name: values[-1] for name, values in parse_qs(urlsplit(request.path).query).items()
        }
        event = {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": (
                {k: v for k, v in parse_qs(urlsplit(request.path).query).items()} or None
            ),
            "requestContext": self._context("$connect", "CONNECT", connection_id),
            "isBase64Encoded": False,
        }
        invocation = await self._call(route, event)
        status = _status_of(invocation)
        if 200 <= status < 300:
            return None
        self._clients.pop(connection_id, None)
        return connection.respond(status, "Forbidden\n" if status == 403 else "Refused\n")

    async def _session(self, connection: Any) -> None:
        assert self.api is not None
        connection_id: str = connection.threadline_id
        try:
            async for message in connection:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                client = self._clients.get(connection_id)
                if client is not None:
                    client.last_active = time.time()
                route = self.api.route_for(text)
                if route is None:
                    await connection.send(json.dumps({"message": "Forbidden"}))
                    continue
                context = self._context(route.key, "MESSAGE", connection_id)
                event = {"requestContext": context, "body": text, "isBase64Encoded": False}
                invocation = await self._call(route, event)
                if not invocation.ok:
                    # API Gateway's answer to a failed integration, on this socket only.
                    await connection.send(
                        json.dumps(
                            {
                                "message": "Internal server error",
                                "connectionId": connection_id,
                                "requestId": context["requestId"],
                            }
                        )
                    )
                    continue
                payload = invocation.payload
                if route.returns_response and isinstance(payload, dict) and payload.get("body"):
                    await connection.send(str(payload["body"]))
        except Exception as exc:  # a broken socket ends its own session only
            self._console(f"[websocket] connection ended: {type(exc).__name__}")
        finally:
            self._clients.pop(connection_id, None)
            disconnect = self.api.routes.get("$disconnect")
            if disconnect is not None:
                close_code = connection.close_code if connection.close_code is not None else 1006
                event = {
                    "headers": {},
                    "requestContext": {
                        **self._context("$disconnect", "DISCONNECT", connection_id),
                        "disconnectStatusCode": close_code,
                        "disconnectReason": connection.close_reason or "",
                    },
                    "isBase64Encoded": False,
                }
                with contextlib.suppress(Exception):  # the stack may be stopping
                    await self._call(disconnect, event)

    # ------------------------------------------------------------ @connections

    def post(self, connection_id: str, data: bytes) -> bool:
        """Send ``data`` to one connection, as PostToConnection; False if it is gone."""
        client = self._clients.get(connection_id)
        if client is None or self._loop is None:
            return False
        text = data.decode("utf-8", "replace")
        future = asyncio.run_coroutine_threadsafe(client.connection.send(text), self._loop)
        try:
            future.result(timeout=5)
        except Exception:
            return False
        return True

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._http_answer(request)
        return response(environ, start_response)

    def _http_answer(self, request: Request) -> Response:
        assert self.api is not None
        path = request.path
        if path == DEMO_PATH and request.method == "GET":
            return Response(demo_page(self.gateway_url), 200, mimetype="text/html")
        match = _CONNECTIONS_PATH.match(path)
        if match is None:
            return _error(404, "NotFoundException", "Not Found")
        connection_id = match.group(1)
        client = self._clients.get(connection_id)
        if client is None:
            return _error(410, "GoneException", f"connection {connection_id} is gone")
        if request.method == "POST":
            data = request.get_data()
            if len(data) > MAX_MESSAGE_BYTES:
                return _error(413, "PayloadTooLargeException", "Payload too large")
            if not self.post(connection_id, data):
                return _error(410, "GoneException", f"connection {connection_id} is gone")
            self._console(f"[websocket] POST @connections -> {len(data)} bytes")
            return Response(b"", 200)
        if request.method == "GET":
            body = {
                "ConnectedAt": _iso(client.connected_at),
                "LastActiveAt": _iso(client.last_active),
                "Identity": {"SourceIp": client.source_ip, "UserAgent": client.user_agent},
            }
            return Response(json.dumps(body), 200, mimetype="application/json")
        if request.method == "DELETE":
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(client.connection.close(), self._loop)
            return Response(b"", 204)
        return _error(405, "MethodNotAllowed", "Method Not Allowed")

    def _console(self, line: str) -> None:
        stream = self._log if self._log is not None else sys.stderr
        print(line, file=stream, flush=True)


def _status_of(invocation: Invocation) -> int:
    if not invocation.ok:
        return 500
    payload = invocation.payload
    if isinstance(payload, dict) and isinstance(payload.get("statusCode"), int):
        return int(payload["statusCode"])
    return 200


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, error_type: str, message: str) -> Response:
    # boto3 reads the error code from this header (rest-json protocol).
    response = Response(json.dumps({"message": message}), status, mimetype="application/json")
    response.headers["x-amzn-ErrorType"] = error_type
    return response


def demo_page(gateway_url: str) -> str:
    """The demo page, its widget loaded from the gateway as a site would."""
    return DEMO_PAGE.read_text(encoding="utf-8").replace("{{GATEWAY_URL}}", gateway_url)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass
