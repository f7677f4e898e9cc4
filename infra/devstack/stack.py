"""The local stack as objects: the embedded AWS alone, or everything in-process.

``EmbeddedAws.start()`` is what integration tests and benchmarks use (moto plus
the template's resources and secrets); ``LocalStack`` adds the function runtime,
the HTTP gateway, the pollers that feed SQS and DynamoDB-stream events to their
functions, the provider sandbox and the event log, and is what
``python -m devstack`` runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from devstack.aws import DEFAULT_REGION, AwsTarget
from devstack.control import FunctionControl
from devstack.devroutes import SANDBOX_PREFIX, DevRoutes
from devstack.eventlog import EventLog
from devstack.functions import FunctionSpec, load_functions
from devstack.gateway import Gateway, GatewayServer
from devstack.integrations import service_routes
from devstack.jwt_auth import LocalJwtAuthorizer, route_scopes
from devstack.maildrop import EmbeddedSesOutbox, MailDrop, mail_targets
from devstack.pollers import DEFAULT_POLL_INTERVAL, Poller, function_pollers
from devstack.resources import StackResources, create_resources
from devstack.routes import IMPLICIT_API, RouteTable, http_routes
from devstack.runtime import DEFAULT_MAX_WORKERS, FunctionRuntime, function_environment
from devstack.sandbox import ProviderSandbox
from devstack.schedules import schedule_pollers
from devstack.secrets import ProvisionedSecret, provision_secrets, put_secret, secret_location
from devstack.sesfeedback import SesFeedback, async_retries, sns_pollers
from devstack.template import Template, load_template
from devstack.webconsole import RawRequests, WebConsole
from devstack.websocket import WebSocketEmulator, local_websocket, websocket_apis
from threadline_analytics.lake import LakeWriter

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_PORT = 3000
HEALTH_PATH = "/v1/health"
# Template parameters the local stack fills in with its own URLs unless told otherwise.
PUBLIC_BASE_URL_PARAMETER = "PublicBaseUrl"
# Every <Provider>ApiBaseUrl parameter (the provider API's root, the real API by
# default) points at the sandbox's /<provider> routes locally.
API_BASE_URL_SUFFIX = "ApiBaseUrl"
EMAIL_FROM_PARAMETER = "EmailFromAddress"
WEBHOOK_PRIVATE_TARGETS_PARAMETER = "AllowPrivateWebhookTargets"
WEBHOOK_RETRY_BASE_PARAMETER = "WebhookRetryBaseSeconds"
# Replies go out from here locally; the embedded SES is told it is verified.
LOCAL_EMAIL_FROM = "support@threadline.localhost"


def local_parameter_defaults(
    template: Template, base_url: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Parameter values that make the template's URLs point at the local stack.

    ``PublicBaseUrl`` becomes the gateway's base URL (Twilio signature URLs and the
    StatusCallback URLs the dispatcher hands out then name the local stack) and every
    ``<Provider>ApiBaseUrl`` its sandbox (:func:`sandbox_parameters`); a parameter
    the template lacks, or that the caller sets itself, is left alone.
    """
    wanted = {
        PUBLIC_BASE_URL_PARAMETER: base_url,
        **sandbox_parameters(template.parameters, base_url + SANDBOX_PREFIX),
        EMAIL_FROM_PARAMETER: LOCAL_EMAIL_FROM,
        # Tests run CRM webhook receivers on http://127.0.0.1, and wait seconds, not
        # minutes, for a retry.
        WEBHOOK_PRIVATE_TARGETS_PARAMETER: "true",
        WEBHOOK_RETRY_BASE_PARAMETER: "1",
    }
    given = overrides or {}
    return {
        name: value
        for name, value in wanted.items()
        if name in template.parameters and name not in given
    }


def sandbox_parameters(parameter_names: Iterable[str], sandbox_url: str) -> dict[str, str]:
    """``<Provider>ApiBaseUrl`` -> ``<sandbox_url>/<provider>`` for each such template
    parameter: the functions then call the sandbox instead of the provider."""
    return {
        name: f"{sandbox_url.rstrip('/')}/{name.removesuffix(API_BASE_URL_SUFFIX).lower()}"
        for name in parameter_names
        if name.endswith(API_BASE_URL_SUFFIX)
    }


def region_from(environ: Mapping[str, str]) -> str:
    return environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


class StackNotHealthy(RuntimeError):
    """The stack started but its health route does not answer 200."""


class MotoServer:
    """moto in server mode on a free port of 127.0.0.1, in a background thread."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        from devstack.isolation import serialize_dynamodb_operations
        from devstack.moto_costs import cheaper_moto
        from devstack.retention import bound_retention
        from devstack.wakeups import signal_from_moto

        serialize_dynamodb_operations()
        cheaper_moto()
        bound_retention()
        signal_from_moto()
        # moto's werkzeug logs every AWS call at INFO; the console is for the stack's
        # own lines. Only quieten it if nobody configured that logger.
        werkzeug_logger = logging.getLogger("werkzeug")
        if werkzeug_logger.level == logging.NOTSET:
            werkzeug_logger.setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        # Requests in flight, by when they arrived: how long the oldest has waited
        # (oldest_request_seconds) tells the runtime the embedded AWS is the bottleneck.
        self._in_flight: dict[int, float] = {}
        server = self._server._server  # werkzeug's server: it calls .app per request
        assert server is not None
        server.app = self._tracking(server.app)
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def oldest_request_seconds(self) -> float:
        arrivals = list(self._in_flight.values())
        return time.monotonic() - min(arrivals) if arrivals else 0.0

    def _tracking(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def tracked(environ: Any, start_response: Any) -> Any:
            key = threading.get_ident()
            self._in_flight[key] = time.monotonic()
            try:
                return app(environ, start_response)
            finally:
                self._in_flight.pop(key, None)

        return tracked

    def stop(self) -> None:
        self._server.stop()


class EmbeddedAws:
    """An AWS endpoint (moto, or ``AWS_ENDPOINT_URL``) holding the template's resources."""

    def __init__(
        self,
        template: Template,
        resources: StackResources,
        secrets: list[ProvisionedSecret],
        *,
        moto: MotoServer | None,
    ) -> None:
        self.template = template
        self.resources = resources
        self.secrets = secrets
        self.aws: AwsTarget = resources.aws
        self._moto = moto
        self._functions: dict[str, FunctionSpec] | None = None

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        template: str | Path | Template | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
        stack_name: str | None = None,
    ) -> Iterator[EmbeddedAws]:
        """Start the embedded AWS, create the resources and secrets; stop on exit.

        ``environ`` (default ``os.environ``) supplies ``AWS_ENDPOINT_URL``,
        ``AWS_DEFAULT_REGION`` and the secrets' values.
        """
        embedded = cls.create(
            template, environ=environ, parameters=parameters, stack_name=stack_name
        )
        try:
            yield embedded
        finally:
            embedded.stop()

    @classmethod
    def create(
        cls,
        template: str | Path | Template | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
        stack_name: str | None = None,
    ) -> EmbeddedAws:
        """Like :meth:`start`, but the caller calls :meth:`stop`."""
        environ = os.environ if environ is None else environ
        loaded = _as_template(template)
        moto = None
        endpoint_url = environ.get("AWS_ENDPOINT_URL")
        if not endpoint_url:
            moto = MotoServer()
            endpoint_url = moto.endpoint_url
        try:
            resources = create_resources(
                loaded,
                endpoint_url,
                region=region_from(environ),
                stack_name=stack_name,
                parameters=parameters,
            )
            secrets = provision_secrets(resources, environ)
        except BaseException:
            if moto is not None:
                moto.stop()
            raise
        return cls(loaded, resources, secrets, moto=moto)

    @property
    def endpoint_url(self) -> str:
        return self.aws.endpoint_url

    @property
    def embedded(self) -> bool:
        """True when this process runs moto; False for an external AWS_ENDPOINT_URL."""
        return self._moto is not None

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    @property
    def moto(self) -> MotoServer | None:
        """The embedded moto, when this process runs it (not with AWS_ENDPOINT_URL)."""
        return self._moto

    def physical_id(self, logical_id: str) -> str:
        return self.resources.physical_id(logical_id)

    def client(self, service: str) -> Any:
        return self.aws.client(service)

    def client_environment(self) -> dict[str, str]:
        """Variables that point boto3 in this process (or a child) at the embedded AWS."""
        return self.aws.client_environment()

    def put_secret(self, parameter: str, value: str) -> None:
        """Set the secret a template parameter names (``TwilioAuthTokenParameterName``)."""
        put_secret(self.aws, secret_location(self.resources, parameter), value)

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        if self._functions is None:
            self._functions = load_functions(self.resources)
        return self._functions

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """Exactly the environment the function's workers get."""
        return function_environment(self.functions[logical_id], self.aws)


class LocalStack:
    """Embedded AWS, function runtime, pollers and HTTP gateway, all in this process.

    Use as a context manager; ``port=0`` picks a free port (see ``base_url``).
    """

    def __init__(
        self,
        template: str | Path | Template | None = None,
        *,
        port: int | None = None,
        environ: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
        stack_name: str | None = None,
        api_token: str | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        log: TextIO | None = None,
        lake_dir: Path | None = None,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        # Where published events land as analytics files (make report); none unless
        # asked for (``python -m devstack`` asks), so tests keep their stacks apart.
        lake_setting = self.environ.get("THREADLINE_LAKE_DIR")
        self.lake_dir = (
            lake_dir if lake_dir is not None else (Path(lake_setting) if lake_setting else None)
        )
        self.template = _as_template(template)
        self.port = (
            int(self.environ.get("THREADLINE_PORT") or DEFAULT_PORT) if port is None else port
        )
        self.parameters = parameters
        self.stack_name = stack_name
        self.api_token = (
            api_token if api_token is not None else self.environ.get("THREADLINE_API_TOKEN")
        )
        # THREADLINE_API_AUTH=jwt: /v1 takes access tokens minted at /_dev/token and
        # checked with the scopes of template.yaml's ApiAuth=jwt routes.
        self.jwt = (
            LocalJwtAuthorizer(route_scopes(self.template.resources))
            if self.environ.get("THREADLINE_API_AUTH") == "jwt"
            else None
        )
        self.max_workers = max_workers
        self.poll_interval = poll_interval
        self.log = log
        self.aws: EmbeddedAws | None = None
        self.runtime: FunctionRuntime | None = None
        self.mail: MailDrop | None = None
        self.feedback: SesFeedback | None = None
        self.routes: RouteTable | None = None
        self.server: GatewayServer | None = None
        self.sandbox = ProviderSandbox()
        self.event_log: EventLog | None = None
        self.pollers: list[Poller] = []
        self.websocket: WebSocketEmulator | None = None
        # Lines for the console: event sources read but not (fully) emulated.
        self.poller_notes: list[str] = []
        # The parameters the local stack chose itself (see local_parameter_defaults).
        self.parameter_defaults: dict[str, str] = {}
        self._running = False

    def start(self) -> LocalStack:
        self._running = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        dev = DevRoutes(self.sandbox, log=self.log)
        dev.jwt = self.jwt
        # Bound (not yet serving) first: its URL is a parameter of the resources.
        self.server = GatewayServer(dev, port=self.port)
        self.parameter_defaults = local_parameter_defaults(
            self.template, self.server.base_url, self.parameters
        )
        # The WebSocket API's emulator, bound now: its URLs are template parameters too.
        self.websocket = local_websocket(self.template.parameters, self.port, self.log)
        if self.websocket is not None:
            given = self.parameters or {}
            self.parameter_defaults |= {
                name: value
                for name, value in self.websocket.parameter_defaults().items()
                if name in self.template.parameters and name not in given
            }
        self.aws = EmbeddedAws.create(
            self.template,
            environ=self.environ,
            parameters={**self.parameter_defaults, **(self.parameters or {})},
            stack_name=self.stack_name,
        )
        sender = {**self.parameter_defaults, **(self.parameters or {})}.get(EMAIL_FROM_PARAMETER)
        if sender:
            # SES refuses to send from an unverified address. Deployed, the address
            # or its domain is verified once (docs/deployment.md); locally the
            # embedded SES is told so, and keeps what is sent (nothing leaves).
            self.aws.client("ses").verify_email_identity(EmailAddress=sender)
        if self.aws.embedded:
            dev.sent_mail = EmbeddedSesOutbox(self.aws.aws.account_id, self.aws.aws.region)
        functions = self.aws.functions
        self.routes = RouteTable(
            [*http_routes(self.aws.resources, functions), *service_routes(self.aws.resources)]
        )
        moto = self.aws.moto
        self.runtime = FunctionRuntime(
            functions,
            self.aws.aws,
            max_workers=self.max_workers,
            aws_backlog=moto.oldest_request_seconds if moto is not None else None,
        )
        dev.api = Gateway(
            self.routes,
            self.runtime.invoke,
            api_ids=self._api_ids(),
            account_id=self.aws.aws.account_id,
            api_token=self.api_token,
            jwt=self.jwt,
            log=self.log,
            service_client=self.aws.client,
        )
        dev.mail = self.mail = MailDrop(
            mail_targets(self.resources, functions),
            self.aws.client("s3"),
            self.runtime.invoke,
            self.aws.aws.region,
        )
        pollers, self.poller_notes = function_pollers(
            self.resources,
            functions,
            self.aws.aws,
            self.runtime.invoke,
            names=self._logical_names(),
            interval=self.poll_interval,
            log=self.log,
        )
        # SNS topics feeding functions (SES feedback), and feedback on demand.
        pollers += sns_pollers(
            self.resources,
            functions,
            self.aws.aws,
            self.runtime.invoke,
            stack_name=self.resources.pseudo.stack_name,
            names=self._logical_names(),
            retries=async_retries(self.resources, functions),
            interval=self.poll_interval,
            log=self.log,
        )
        dev.feedback = self.feedback = SesFeedback(self.aws.resources, dev.sent_mail)
        schedules, schedule_notes = schedule_pollers(
            self.resources, functions, self.aws.aws, self.runtime.invoke, log=self.log
        )
        pollers += schedules
        self.poller_notes += schedule_notes
        lake = LakeWriter(self.lake_dir) if self.lake_dir is not None else None
        event_log = EventLog.for_stack(self.aws.resources, lake=lake)
        if event_log.buses:
            event_log.provision()
            self.event_log = dev.events = event_log
            pollers.append(event_log.poller(interval=self.poll_interval, log=self.log))
        for poller in pollers:
            self.pollers.append(poller.start())
        dev.functions = FunctionControl(self.runtime, self.pollers)
        dev.console = WebConsole(self.aws.secrets, self._raw_requests())
        socket_apis = websocket_apis(self.aws.resources, functions)
        if self.websocket is not None and socket_apis:
            self.websocket.start(socket_apis[0], self.runtime.invoke, gateway_url=self.base_url)
        self.server.start()

    def stop(self) -> None:
        """Stop the gateway, pollers, workers and moto, each before what it uses."""
        if not self._running:
            return
        self._running = False
        if self.server is not None:
            self.server.stop()
        if self.websocket is not None:
            self.websocket.stop()
        for poller in self.pollers:
            poller.signal_stop()
        # Closing the workers ends an invocation a poller is waiting on; its poller
        # sees that the stack is stopping and records nothing about it.
        if self.runtime is not None:
            self.runtime.close()
        for poller in self.pollers:
            poller.join()
        if self.aws is not None:
            self.aws.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self.server is not None, "start() the stack first"
        return self.server.base_url

    @property
    def resources(self) -> StackResources:
        assert self.aws is not None, "start() the stack first"
        return self.aws.resources

    def has_health_route(self) -> bool:
        return self.routes is not None and self.routes.match("GET", HEALTH_PATH) is not None

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        """Call ``GET /v1/health`` until it answers; raise unless the answer is 200.

        Without a health route (a template of its own, in tests) there is nothing
        to wait for. The first call also warms the API function up. Only failures
        to connect are retried: a 403 or 500 will not change by asking again.
        """
        if not self.has_health_route():
            return
        token = self.jwt.mint(["threadline/read"]) if self.jwt else self.api_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.base_url + HEALTH_PATH, headers=headers)  # noqa: S310 - http://127.0.0.1 only
        # No proxies: a developer's HTTP_PROXY must not see loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with opener.open(request, timeout=max(deadline - time.monotonic(), 1)) as answer:
                    status = answer.status
            except urllib.error.HTTPError as exc:
                raise StackNotHealthy(f"GET {HEALTH_PATH} answered {exc.code}") from None
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise StackNotHealthy(f"GET {HEALTH_PATH} failed: {exc}") from None
                time.sleep(0.2)
                continue
            if status != 200:
                raise StackNotHealthy(f"GET {HEALTH_PATH} answered {status}")
            return

    @property
    def outbox_url(self) -> str:
        return self.base_url + "/_dev/outbox"

    @property
    def events_url(self) -> str:
        return self.base_url + "/_dev/events"

    @property
    def email_url(self) -> str:
        return self.base_url + "/_dev/email"

    @property
    def console_url(self) -> str:
        return self.base_url + "/"

    def _raw_requests(self) -> RawRequests:
        assert self.aws is not None
        tables = [
            self.resources.physical_id(logical_id)
            for logical_id in self.resources
            if self.resources[logical_id].type == "AWS::DynamoDB::Table"
        ]
        return RawRequests(self.aws.client("dynamodb"), self.aws.client("s3"), tables)

    def _logical_names(self) -> dict[str, str]:
        """ARN -> logical id of every resource, for console lines people can read."""
        names: dict[str, str] = {}
        for logical_id in self.resources:
            for value in self.resources[logical_id].attributes.values():
                if value.startswith("arn:"):
                    names.setdefault(value, logical_id)  # a stream ARN names its table
        return names

    def _api_ids(self) -> dict[str, str]:
        resources = self.resources
        ids = {
            logical_id: resources.physical_id(logical_id)
            for logical_id in resources
            if resources[logical_id].type == "AWS::ApiGatewayV2::Api"
        }
        ids.setdefault(IMPLICIT_API, "local")
        return ids


def _as_template(template: str | Path | Template | None) -> Template:
    if isinstance(template, Template):
        return template
    return load_template(DEFAULT_TEMPLATE if template is None else template)
