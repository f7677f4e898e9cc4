"""``python -m devstack``: start the local stack, say where everything is, stop on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from devstack.resources import StackResources
from devstack.routes import Route
from devstack.secrets import ProvisionedSecret
from devstack.stack import DEFAULT_PORT, DEFAULT_TEMPLATE, LocalStack, StackNotHealthy
from devstack.template import TemplateError
from threadline_analytics.lake import DEFAULT_LAKE

READY_LINE = "threadline local stack ready on {base_url}"
WEBHOOK_PREFIX = "/webhooks/"
# Twilio retries a failed webhook only when its URL carries connection overrides
# (rc = retry count, rp = retry policy); without them it goes to the fallback URL.
TWILIO_OVERRIDES = "#rc=3&rp=all"
HEALTH_TIMEOUT_SECONDS = 60.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run template.yaml on 127.0.0.1: embedded AWS, functions, HTTP API.",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="SAM template (default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="gateway port (default: THREADLINE_PORT or 3000)"
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (repeatable), as sam deploy --parameter-overrides",
    )
    parser.add_argument("--stack-name", default=None, help="default: threadline-<Stage>")
    parser.add_argument(
        "--lake",
        type=Path,
        default=None,
        help="folder the published events land in for `make report` "
        f"(default: THREADLINE_LAKE_DIR or {DEFAULT_LAKE})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    stream = out if out is not None else sys.stdout
    _stop_on_signals()
    _forget_aws_profiles()
    try:
        parameters = dict(_split_parameter(item) for item in args.parameter)
        port = args.port if args.port is not None else _port_from_environment()
        lake = args.lake or Path(os.environ.get("THREADLINE_LAKE_DIR") or DEFAULT_LAKE)
        stack = LocalStack(
            args.template,
            port=port,
            parameters=parameters,
            stack_name=args.stack_name,
            lake_dir=lake,
        )
        with stack:
            print_banner(stack, stream)
            stack.wait_until_healthy(HEALTH_TIMEOUT_SECONDS)
            _say(stream, READY_LINE.format(base_url=stack.base_url))
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        _say(stream, "threadline local stack stopped")
        return 0
    except (TemplateError, argparse.ArgumentTypeError) as exc:
        _say(stream, f"error: {exc}")
        return 2
    except StackNotHealthy as exc:
        _say(stream, f"error: the stack started but is not healthy: {exc} (see the log above)")
        return 1
    except OSError as exc:
        _say(stream, f"error: {exc.strerror or exc} (THREADLINE_PORT chooses another port)")
        return 1


def print_banner(stack: LocalStack, out: TextIO) -> None:
    assert stack.aws is not None and stack.routes is not None
    resources = stack.resources
    embedded = "embedded moto" if stack.aws.embedded else "AWS_ENDPOINT_URL"
    _say(
        out,
        f"threadline local stack: {stack.template.path.name}, stack "
        f"{resources.pseudo.stack_name}, region {resources.aws.region}",
    )
    _say(out, f"  AWS endpoint  {stack.aws.endpoint_url}  ({embedded}, dummy credentials)")
    _print_resources(resources, out)
    for secret in stack.aws.secrets:
        _say(out, f"  secret        {_describe_secret(secret)}")
    for spec in stack.aws.functions.values():
        where = os.path.relpath(spec.code_dir, stack.template.root)
        _say(out, f"  function      {spec.logical_id}  {spec.handler} in {where}/")
        for warning in spec.warnings:
            _say(out, f"    note: {warning}")
        for target in stack.mail.targets if stack.mail is not None else []:
            if target.function == spec.logical_id:
                _say(out, f"    note: S3 bucket {target.bucket} is fed by POST {stack.email_url}")
        declared = spec.runtime.removeprefix("python")
        running = ".".join(platform.python_version_tuple()[:2])
        if declared and declared != running:
            _say(out, f"    note: declares python{declared}, runs here on Python {running}")
    for name, value in stack.parameter_defaults.items():
        _say(
            out,
            f"  parameter     {name}={value}  (local default; --parameter {name}=... to change)",
        )
    for poller in stack.pollers:
        _say(out, f"  poller        {poller.describe()}")
    if stack.lake_dir is not None:
        _say(out, f"  lake          {stack.lake_dir}/events/dt=YYYY-MM-DD/  (make report reads it)")
    for note in stack.poller_notes:
        _say(out, f"    note: {note}")
    routes = list(stack.routes)
    for route in routes:
        if route.path.startswith(WEBHOOK_PREFIX):
            # A service-integration route queues the request instead of running a function.
            queued = f"  (queued by {route.function})" if route.integration is not None else ""
            _say(
                out, f"  webhook       {route.method} {webhook_url(stack.base_url, route)}{queued}"
            )
    _say(
        out,
        f"  outbox        {stack.outbox_url}  (what the provider sandbox was sent; DELETE clears)",
    )
    if stack.mail is not None and stack.mail.targets:
        _say(
            out,
            f"  email         curl --data-binary @message.eml {stack.email_url}  "
            "(delivers a raw mail as SES inbound + S3 would)",
        )
    if stack.feedback is not None and stack.feedback.destinations:
        _say(
            out,
            f'  ses feedback  curl -d \'{{"type":"Bounce","message_id":"<SES MessageId>"}}\' '
            f"{stack.email_url}/feedback  (Bounce, Complaint or Delivery of a sent reply, via SNS)",
        )
    if stack.event_log is not None:
        _say(
            out,
            f"  events        {stack.events_url}  (events on {', '.join(stack.event_log.buses)}; "
            "?type=message.sent)",
        )
    if stack.websocket is not None and stack.websocket.api is not None:
        _say(out, f"  websocket     {stack.websocket.socket_base_url}  (WebSocket API, ?token=)")
        _say(out, f"  web chat      {stack.websocket.demo_url}  (demo page: the widget, live)")
        _say(out, f"  widget        {stack.base_url}/webchat/v1/widget.js")
    auth = (
        "JWT access tokens with scopes (THREADLINE_API_AUTH=jwt): "
        "GET /_dev/token?scope=threadline/read"
        if stack.jwt
        else "bearer token required (THREADLINE_API_TOKEN)"
        if stack.api_token
        else "open; set THREADLINE_API_TOKEN to require a bearer token"
    )
    _say(
        out,
        f"  console       {stack.console_url}  (customers, timelines, outbox and events, live)",
    )
    _say(
        out,
        '  cli           .venv/bin/threadline send sms --from +15551234567 "Where is my order?"'
        f"  (THREADLINE_URL={stack.base_url} if not on port 3000)",
    )
    _say(out, f"  API           {stack.base_url}  (IAM-protected routes: {auth})")
    for route in routes:
        if not route.path.startswith(WEBHOOK_PREFIX):
            _say(out, f"                {route.key} -> {route.function}")


def webhook_url(base_url: str, route: Route) -> str:
    url = base_url + route.path
    # The fallback route is where Twilio goes after its retries; it takes no overrides.
    if route.path.startswith(WEBHOOK_PREFIX + "twilio/") and route.integration is None:
        url += TWILIO_OVERRIDES
    return url


def _print_resources(resources: StackResources, out: TextIO) -> None:
    named_only = []
    for logical_id in resources:
        resource = resources[logical_id]
        if not resource.emulated:
            named_only.append(logical_id)
            continue
        _say(out, f"  resource      {logical_id} ({resource.type}): {resource.ref}")
        if resource.ignored_properties:
            ignored = ", ".join(resource.ignored_properties)
            _say(out, f"    note: not applied locally: {ignored}")
    if named_only:
        _say(out, f"  named only    {', '.join(named_only)}")


def _describe_secret(secret: ProvisionedSecret) -> str:
    if secret.source == "generated":
        return (
            f"{secret.env_name}={secret.value}  generated into {secret.location}; "
            f"export {secret.env_name}=... before starting to choose your own"
        )
    if secret.source == "environment":
        return f"{secret.env_name} from your environment, in {secret.location}"
    return f"{secret.env_name}: kept the value already in {secret.location}"


def _port_from_environment() -> int:
    text = os.environ.get("THREADLINE_PORT") or str(DEFAULT_PORT)
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"THREADLINE_PORT={text!r} is not a port number")
    return int(text)


def _split_parameter(item: str) -> tuple[str, str]:
    name, separator, value = item.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"--parameter wants NAME=VALUE, not {item!r}")
    return name, value


def _forget_aws_profiles() -> None:
    """Keep the developer's AWS profiles out of this process.

    moto, running in this process, builds boto3 sessions from os.environ: an
    AWS_PROFILE naming a profile it cannot find makes every AWS call fail.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind the stack through KeyboardInterrupt; a second one exits."""

    def first(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, second)
        signal.signal(signal.SIGTERM, second)
        raise KeyboardInterrupt

    def second(signum: int, frame: FrameType | None) -> None:
        # The impatient get out at once; workers see their stdin close and exit.
        os._exit(130)

    signal.signal(signal.SIGINT, first)
    signal.signal(signal.SIGTERM, first)


def _say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)
