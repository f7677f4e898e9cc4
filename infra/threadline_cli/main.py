"""The ``threadline`` command: send signed test messages, read timelines, reply, watch.

Every failure the user can fix is one line on stderr (``error: ...``) and a non-zero
exit: 1 for a stack that refused or is not there, 2 for a wrong argument.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import click

from threadline_cli.target import CliError, Target, error_text

F = TypeVar("F", bound=Callable[..., Any])
USAGE_ERROR = 2
EVENTS_POLL_SECONDS = 0.5
REPLY_WAIT_SECONDS = 30.0


class ThreadlineGroup(click.Group):
    """Turns a :class:`CliError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)


def at_option(command: F) -> F:
    return click.option(
        "--at",
        "at",
        metavar="URL",
        default=None,
        help="a deployed stack's base URL (secrets from TWILIO_AUTH_TOKEN, "
        "SLACK_SIGNING_SECRET, META_APP_SECRET, TELEGRAM_SECRET_TOKEN); "
        "default: THREADLINE_URL or http://127.0.0.1:$THREADLINE_PORT (3000)",
    )(command)


@click.group(cls=ThreadlineGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Talk to a threadline stack: `make dev`'s by default."""


# ------------------------------------------------------------------------ send


@cli.command()
@click.argument("channel", metavar="CHANNEL")
@click.argument("text")
@click.option("--from", "sender", required=True, metavar="IDENTITY", help="who writes")
@click.option("--name", default=None, help="the sender's display name, where the channel has one")
@at_option
def send(channel: str, text: str, sender: str, name: str | None, at: str | None) -> None:
    """Send TEXT on CHANNEL as IDENTITY, signed as the provider signs.

    CHANNEL: sms, whatsapp, voice (a missed call with a voicemail transcript),
    whatsapp-cloud, slack, messenger, instagram, telegram, email, webchat.
    IDENTITY: +15551234567 (or phone:+1...), slack:T0123:U0123, messenger:<PSID>,
    instagram:<IGSID>, telegram:<user id>, ada@example.com, webchat:new (a new
    visitor) or webchat:<visitor id> (one the CLI opened before).
    """
    from threadline_cli.channels import CHANNELS, SendRequest, canonical_identity

    chosen = CHANNELS.get(channel)
    if chosen is None:
        raise CliError(f"unknown channel {channel!r} (one of: {', '.join(CHANNELS)})", USAGE_ERROR)
    try:
        identity, value = canonical_identity(chosen, sender)
    except CliError as error:
        raise CliError(str(error), USAGE_ERROR) from None
    target = Target.resolve(at)
    if chosen.local_only and not target.local:
        raise CliError(
            f"{channel} goes through the local stack's /_dev/email; deployed, send a real "
            "mail to the SES inbound address"
        )
    request = SendRequest(target, value, text, name=name)
    chosen.send(request)
    console = _console()
    for delivery in request.deliveries:
        console.print(f"[green]✓[/green] {delivery.description}: {delivery.status}")
    for note in request.notes:
        console.print(f"[green]✓[/green] {note}", highlight=False)
    # The stack may assign the identity (a new web chat visitor).
    identity = f"{chosen.identity_kind}:{request.value}"
    if request.message_id:
        console.print(f"message id {request.message_id}", highlight=False)
    console.print(
        f"{channel} from [bold]{identity}[/bold] is on the timeline: "
        f"threadline timeline {_shell_quote(identity)}",
        highlight=False,
    )


# -------------------------------------------------------------------- timeline


@cli.command()
@click.argument("who", metavar="IDENTITY_OR_CUSTOMER_ID")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="the customer and items as JSON")
@at_option
def timeline(who: str, limit: int, as_json: bool, at: str | None) -> None:
    """A customer's timeline: channel, direction, time, text, status."""
    target = Target.resolve(at)
    customer = resolve_customer(target, who)
    page = target.api(
        "GET", f"/v1/customers/{quote(customer['id'])}/timeline", params={"limit": limit}
    ).json()
    items = list(page.get("items") or [])
    if as_json:
        click.echo(json.dumps({"customer": customer, "items": items}, indent=2))
        return
    from threadline_cli.render import timeline_table

    _console().print(timeline_table(customer, items))


def resolve_customer(target: Target, who: str) -> dict[str, Any]:
    """The customer an identity (``phone:+1...``, ``+1...``, ``a@b.c``) or id names."""
    identity = _as_identity(who)
    if identity is None:
        response = target.api("GET", f"/v1/customers/{quote(who, safe='')}", allow=frozenset({404}))
        if response.status_code == 404:
            raise CliError(f"no customer {who!r} (give an identity such as phone:+15551234567)")
        return dict(response.json())
    response = target.api(
        "GET", "/v1/customers", params={"identity": identity}, allow=frozenset({400, 404})
    )
    if response.status_code == 400:
        raise CliError(f"{who!r} is not an identity: {error_text(response)}", USAGE_ERROR)
    if response.status_code == 404:
        raise CliError(f"no customer has {identity} yet: `threadline send` one a message first")
    return dict(response.json())


def _as_identity(who: str) -> str | None:
    """``kind:value`` for what looks like an identity; None for a customer id."""
    from pydantic import ValidationError

    from threadline.schema import Identity

    if who.startswith("+"):
        who = f"phone:{who}"
    elif "@" in who and ":" not in who:
        who = f"email:{who}"
    if ":" not in who:
        return None
    try:
        return str(Identity.parse(who))
    except (ValidationError, ValueError):
        raise CliError(
            f"{who!r} is not an identity (kind:value, kind one of phone, email, slack, "
            "messenger, instagram, telegram, webchat)",
            USAGE_ERROR,
        ) from None


# ----------------------------------------------------------------------- reply


@cli.command()
@click.argument("who", metavar="CUSTOMER")
@click.argument("text")
@click.option("--channel", default=None, help="default: the channel they last wrote on")
@click.option("--wait", is_flag=True, help="wait until the provider took it (or refused)")
@at_option
def reply(who: str, text: str, channel: str | None, wait: bool, at: str | None) -> None:
    """Reply to CUSTOMER (an id or identity) through the REST API."""
    target = Target.resolve(at)
    customer = resolve_customer(target, who)
    body: dict[str, Any] = {"text": text}
    if channel:
        body["channel"] = channel
    path = f"/v1/customers/{quote(customer['id'])}/messages"
    message = target.api("POST", path, json=body).json()
    console = _console()
    console.print(
        f"[green]✓[/green] queued {message['id']} on {message['channel']} to {customer['id']}",
        highlight=False,
    )
    if not wait:
        return
    status = _wait_for_send(target, customer["id"], message["id"])
    console.print(f"  status: {status}", highlight=False)
    if status in {"failed", "queued"}:
        raise CliError(f"the reply is {status}: see threadline timeline {customer['id']}")


def _wait_for_send(target: Target, customer_id: str, message_id: str) -> str:
    deadline = time.monotonic() + REPLY_WAIT_SECONDS
    status = "queued"
    while time.monotonic() < deadline:
        page = target.api(
            "GET", f"/v1/customers/{quote(customer_id)}/timeline", params={"limit": 20}
        ).json()
        for item in page.get("items") or []:
            if item["id"] == message_id:
                status = item["status"]
        if status != "queued":
            return status
        time.sleep(0.5)
    return status


# ---------------------------------------------------------------------- events


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing events as they happen")
@click.option("--type", "event_type", default=None, help="only this type, e.g. message.received")
@click.option("--customer", default=None, help="only this customer's events")
@click.option("--last", default=20, show_default=True, help="how many past events to show first")
@click.option(
    "--forward",
    metavar="URL",
    default=None,
    help="POST each new event there, signed as threadline's webhooks are (Standard Webhooks)",
)
@click.option(
    "--secret",
    default=None,
    envvar="THREADLINE_FORWARD_SECRET",
    help="whsec_... secret for --forward (default: a new one, printed)",
)
@click.option("--json", "as_json", is_flag=True, help="one event per line as JSON")
@at_option
def events(
    follow: bool,
    event_type: str | None,
    customer: str | None,
    last: int,
    forward: str | None,
    secret: str | None,
    as_json: bool,
    at: str | None,
) -> None:
    """The events the stack put on its bus (local stack's /_dev/events)."""
    target = Target.resolve(at)
    if not target.local:
        raise CliError(
            "events reads the local stack's /_dev/events; deployed, subscribe a URL with "
            "POST /v1/subscriptions"
        )
    # Status lines on stderr: with --json, stdout is one event per line and nothing else.
    console = _console(stderr=True)
    forwarder = None
    if forward:
        forwarder = Forwarder(target, forward, secret)
        console.print(
            f"forwarding to {forward}, signed with {forwarder.secret} (Standard Webhooks)",
            highlight=False,
        )
    params = {k: v for k, v in {"type": event_type, "customer_id": customer}.items() if v}
    if follow:
        # Following ends with Ctrl-C, as `make dev` does, even when started by a shell
        # that ignores SIGINT for background commands (the ignore is inherited).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    seen: set[str] = set()
    first = True
    try:
        for batch in _event_batches(target, params, follow):
            fresh = [event for event in batch if event["id"] not in seen]
            seen.update(event["id"] for event in fresh)
            # The past: the last few, never forwarded (as `stripe listen`, only what
            # happens from now on is forwarded).
            shown = (fresh[-last:] if last > 0 else []) if first else fresh
            for event in shown:
                _print_event(event, as_json)
                if forwarder is not None and not first:
                    console.print(f"  → {forwarder.forward(event)}", highlight=False)
            first = False
    except KeyboardInterrupt:
        return


def _event_batches(
    target: Target, params: dict[str, str], follow: bool
) -> Iterator[list[dict[str, Any]]]:
    while True:
        response = target.dev("GET", "/_dev/events", params=params)
        if response.status_code == 404:
            raise CliError("this stack has no event bus")
        if not response.ok:
            raise CliError(f"GET /_dev/events answered {response.status_code}")
        yield list(response.json())
        if not follow:
            return
        time.sleep(EVENTS_POLL_SECONDS)


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event, separators=(",", ":")))
        return
    from threadline_cli.render import event_line

    _console().print(event_line(event), highlight=False)


class Forwarder:
    """POSTs events to a local URL as threadline's CRM webhooks would."""

    def __init__(self, target: Target, url: str, secret: str | None) -> None:
        from threadline.subscriptions import new_secret

        if urlsplit(url).scheme not in {"http", "https"}:
            raise CliError(f"--forward wants an http(s) URL, not {url!r}", USAGE_ERROR)
        self.target = target
        self.url = url
        self.secret = secret or new_secret()

    def forward(self, event: dict[str, Any]) -> str:
        from threadline.crm_webhooks import signed_headers

        detail = event.get("detail") or {}
        # The body and headers threadline's delivery worker sends: the event's detail.
        payload = json.dumps(detail, separators=(",", ":"), ensure_ascii=False)
        event_id = str(detail.get("id") or event["id"])
        headers = signed_headers(self.secret, event_id, payload, datetime.now(UTC))
        try:
            response = self.target.session.post(
                self.url, data=payload.encode(), headers=headers, timeout=10
            )
        except Exception as error:  # the receiver is the developer's: report, go on
            return f"{self.url}: {type(error).__name__}"
        return f"{self.url}: {response.status_code}"


# ---------------------------------------------------------------------- replay


@cli.command()
@click.argument("message_id")
@at_option
def replay(message_id: str, at: str | None) -> None:
    """Re-run a stored message's raw provider request through its webhook.

    The body is sent byte for byte and verified again by the webhook. A stored
    signature that still verifies is kept (Twilio's, for the same URL; Meta's;
    Telegram's token); otherwise, and always for Slack (whose signatures expire
    after 5 minutes), the request is re-signed with the local secret, and said so.
    """
    from threadline_cli.replay import replay_message

    target = Target.resolve(at)
    if not target.local:
        raise CliError("replay reads the local stack's stored requests (/_dev/raw)")
    outcome = replay_message(target, message_id)
    console = _console()
    for note in outcome.notes:
        console.print(f"  {note}", highlight=False)
    console.print(
        f"[green]✓[/green] replayed {outcome.description}: {outcome.status} {outcome.answer}",
        highlight=False,
    )


# ------------------------------------------------------------------- channels


@cli.command(name="channels")
def list_channels() -> None:
    """The channels `send` speaks and the identity each takes."""
    from threadline_cli.channels import CHANNELS

    for sender in CHANNELS.values():
        local = "  (local stack only)" if sender.local_only else ""
        click.echo(f"{sender.name:15} --from {sender.identity_kind}:{sender.example}{local}")


# ------------------------------------------------------------------------ report


@cli.command(context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def report(arguments: tuple[str, ...]) -> None:
    """The analytics metrics over the local lake (what `make report` runs):
    [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--lake DIR] [--html FILE]."""
    from threadline_analytics.__main__ import main as report_main

    sys.exit(report_main(list(arguments)))


def _console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(soft_wrap=True, stderr=stderr)


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def main() -> int:
    """The console script's entry point."""
    try:
        cli.main(prog_name="threadline", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
