"""The local-only ``/_dev`` routes, in front of the HTTP API on the gateway's port.

* ``/_dev/sandbox/...`` is the provider sandbox (each ``<Provider>ApiBaseUrl`` points
  the functions' provider SDKs here): Twilio's Messages API, ``/faults/<provider>``
  and ``/outbox``.
* ``GET /_dev/outbox`` (``?provider=twilio&to=+1555...``) lists what the sandbox
  was sent, and the mail the embedded SES accepted (``provider=ses``);
  ``DELETE /_dev/outbox`` clears them and any programmed faults.
* ``GET /_dev/events`` (``?type=message.sent&customer_id=...``) lists the events
  put on the template's buses; ``DELETE /_dev/events`` forgets them.
* ``POST /_dev/functions/<LogicalId>/stop`` and ``.../start`` stop one function (its
  event sources paused, its workers gone) and start it again (:mod:`devstack.control`).
* ``POST /_dev/email`` takes a raw mail (.eml) as the body and delivers it as SES
  inbound and S3 would: into the bucket of each function with an S3 event, and
  that function invoked with the S3 event (:mod:`devstack.maildrop`).
* ``POST /_dev/email/feedback`` publishes SES's bounce, complaint or delivery
  notification for a mail the dispatcher sent (JSON: ``{"type": "Bounce",
  "message_id": "<SES MessageId>"}``) to the template's feedback topic, which feeds
  its function as SNS would (:mod:`devstack.sesfeedback`).

None of this is in template.yaml and none of it exists in a deployed stack. The
routes are open (no bearer token): the functions' SDKs call the sandbox with the
provider's own credentials, and the gateway only listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from werkzeug.wrappers import Request, Response

from devstack.control import FunctionControl
from devstack.eventlog import EventLog
from devstack.gateway import WsgiApp
from devstack.jwt_auth import LocalJwtAuthorizer
from devstack.maildrop import EmbeddedSesOutbox, MailDrop
from devstack.sandbox import ProviderSandbox
from devstack.sesfeedback import FeedbackError, SesFeedback
from devstack.webconsole import WebConsole

PREFIX = "/_dev"
SANDBOX_PREFIX = f"{PREFIX}/sandbox"


class DevRoutes:
    """A WSGI app: ``/_dev/...`` here, every other path to ``api`` (the gateway)."""

    def __init__(
        self,
        sandbox: ProviderSandbox,
        *,
        events: EventLog | None = None,
        api: WsgiApp | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.events = events
        # Set once the stack has built its gateway; the server is bound before that
        # (its URL is a template parameter) but serves nothing until it is set.
        self.api = api
        # Set once the stack has its function runtime, like ``api``.
        self.mail: MailDrop | None = None
        self.sent_mail: EmbeddedSesOutbox | None = None
        self.feedback: SesFeedback | None = None
        self.functions: FunctionControl | None = None
        # The console page at "/" and the routes the threadline CLI reads.
        self.console: WebConsole | None = None
        # THREADLINE_API_AUTH=jwt: mints the access tokens the gateway checks.
        self.jwt: LocalJwtAuthorizer | None = None
        self._log = log

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        if path != PREFIX and not path.startswith(PREFIX + "/") and path != "/":
            if self.api is None:
                return _json(503, {"message": "Service Unavailable"})(environ, start_response)
            return self.api(environ, start_response)
        started = time.perf_counter()
        statuses: list[str] = []

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body, label = self._dev(environ, path, recording_start_response)
        elapsed = (time.perf_counter() - started) * 1000
        # A label, never the path or query: they can hold a phone number.
        self._console(f"[dev] {label} {statuses[-1] if statuses else '-'} in {elapsed:.0f} ms")
        return body

    def _dev(
        self, environ: dict[str, Any], path: str, start_response: Any
    ) -> tuple[Iterable[bytes], str]:
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        if path == SANDBOX_PREFIX or path.startswith(SANDBOX_PREFIX + "/"):
            inner = dict(environ)
            inner["SCRIPT_NAME"] = str(environ.get("SCRIPT_NAME") or "") + SANDBOX_PREFIX
            inner["PATH_INFO"] = path[len(SANDBOX_PREFIX) :] or "/"
            provider = inner["PATH_INFO"].strip("/").split("/", 1)[0]
            label = f"{method} {SANDBOX_PREFIX}/{provider if provider.isalpha() else '...'}"
            return self.sandbox(inner, start_response), label
        response = self._own(Request(environ), path, method)
        label = f"{method} {path if response.status_code != 404 else PREFIX + '/...'}"
        return response(environ, start_response), label

    def _own(self, request: Request, path: str, method: str) -> Response:
        if path == f"{PREFIX}/outbox":
            provider, to = request.args.get("provider"), request.args.get("to")
            if method == "GET":
                outbox = self.sandbox.outbox(provider, to=to)
                entries = [entry.as_json() for entry in outbox]
                if self.sent_mail is not None and provider in (None, "ses"):
                    entries += self.sent_mail.sent(to)
                return _json(200, entries)
            if method == "DELETE":
                self.sandbox.clear()
                if self.sent_mail is not None:
                    self.sent_mail.clear()
                return Response(status=204)
            return _json(405, {"message": "Method Not Allowed"})
        if path == f"{PREFIX}/events":
            if self.events is None:
                return _json(404, {"message": "this stack has no event bus"})
            if method == "GET":
                found = self.events.events_json(
                    request.args.get("type"), request.args.get("customer_id")
                )
                return Response(found, 200, mimetype="application/json")
            if method == "DELETE":
                self.events.clear()
                return Response(status=204)
            return _json(405, {"message": "Method Not Allowed"})
        if path.startswith(f"{PREFIX}/functions/"):
            return self._function(path, method)
        if path == f"{PREFIX}/email":
            if method != "POST":
                return _json(405, {"message": "Method Not Allowed"})
            if self.mail is None or not self.mail.targets:
                return _json(404, {"message": "no function of this stack has an S3 event"})
            raw = request.get_data()
            if not raw:
                return _json(400, {"message": "the body must be a raw mail (.eml)"})
            return _json(202, self.mail.deliver(raw))
        if path == f"{PREFIX}/email/feedback":
            return self._feedback(request, method)
        if path == f"{PREFIX}/token":
            return self._token(request, method)
        answer = self.console.answer(request, path, method) if self.console else None
        if answer is not None:
            return answer
        return _json(404, {"message": "Not Found"})

    def _token(self, request: Request, method: str) -> Response:
        """``GET /_dev/token?scope=threadline/read``: an access token, for loopback only."""
        if self.jwt is None:
            return _json(404, {"message": "start the stack with THREADLINE_API_AUTH=jwt"})
        if method != "GET":
            return _json(405, {"message": "Method Not Allowed"})
        if request.remote_addr not in ("127.0.0.1", "::1"):
            return _json(403, {"message": "tokens are minted for loopback callers only"})
        scopes = " ".join(request.args.getlist("scope")).split()
        token = self.jwt.mint(scopes)
        return _json(
            200, {"access_token": token, "token_type": "Bearer", "scope": " ".join(scopes)}
        )

    def _feedback(self, request: Request, method: str) -> Response:
        if method != "POST":
            return _json(405, {"message": "Method Not Allowed"})
        if self.feedback is None:
            return _json(404, {"message": "this stack publishes no SES feedback"})
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _json(400, {"message": "the body must be a JSON object"})
        try:
            return _json(202, {"published": self.feedback.publish(body)})
        except FeedbackError as error:
            return _json(400, {"message": str(error)})

    def _function(self, path: str, method: str) -> Response:
        logical_id, _, action = path[len(f"{PREFIX}/functions/") :].partition("/")
        if self.functions is None or not self.functions.knows(logical_id):
            return _json(404, {"message": "no such function in this stack"})
        if action not in {"stop", "start"}:
            return _json(404, {"message": "Not Found"})
        if method != "POST":
            return _json(405, {"message": "Method Not Allowed"})
        if action == "stop":
            return _json(200, self.functions.stop(logical_id))
        return _json(200, self.functions.start(logical_id))

    def _console(self, line: str) -> None:
        stream = self._log if self._log is not None else sys.stderr
        print(line, file=stream, flush=True)


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")
