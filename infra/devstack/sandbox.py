"""The provider sandbox: stands in for provider APIs on the local stack.

The dispatcher uses the providers' real SDKs; the local stack sets each provider's
API root (template parameter ``<Provider>ApiBaseUrl``) to ``/_dev/sandbox/<provider>``,
so they send their HTTP requests here instead of to the provider. The sandbox records each
request (``GET /_dev/outbox`` lists them) and answers as the provider's API would,
so nothing leaves the machine. Tests can program faults: the next answers for a
provider, e.g. ``[429, 429]`` then the normal success.

The local stack serves it under ``/_dev/sandbox`` on the gateway's port. Requests
Twilio itself would refuse (no credentials, no ``To``, no sender, nothing to send)
get Twilio's error answers here too, so a broken send fails locally as it would
against the real API; sent messages can be fetched back by their SID. The Graph
API's send endpoints (WhatsApp Cloud API, Messenger, Instagram) answer with Meta's
message ids and Graph error bodies in the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

# The form field that names who a provider request goes to (GET /outbox?to=...).
_RECIPIENT_FIELDS = {"twilio": "To", "slack": "channel", "telegram": "chat_id", "meta": "to"}

# Twilio's documented error bodies for the faults tests ask for most.
_TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    # The fault statuses tests program; other statuses answer as 20500.
    400: (21211, "The 'To' number is not a valid phone number."),
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


@dataclass
class RecordedRequest:
    provider: str
    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]
    status: int
    at: str

    def as_json(self) -> dict[str, Any]:
        # Headers stay out: they carry the account's credentials (basic auth).
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "form": self.form,
            "status": self.status,
            "at": self.at,
        }


@dataclass
class ProviderSandbox:
    """A WSGI app answering like provider APIs, recording what it was sent."""

    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: dict[str, deque[int]] = field(default_factory=dict)
    _messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._routes = Map(
            [
                Rule(
                    "/twilio/2010-04-01/Accounts/<account_sid>/Messages.json",
                    methods=["POST"],
                    endpoint="twilio_message",
                ),
                Rule(
                    "/twilio/2010-04-01/Accounts/<account_sid>/Messages/<message_sid>.json",
                    methods=["GET"],
                    endpoint="twilio_fetch",
                ),
                Rule("/faults/<provider>", methods=["POST"], endpoint="faults"),
                Rule("/outbox", methods=["GET"], endpoint="outbox"),
                Rule("/outbox", methods=["DELETE"], endpoint="clear"),
                Rule("/slack/api/chat.postMessage", methods=["POST"], endpoint="slack_post"),
                Rule("/slack/api/users.info", methods=["GET", "POST"], endpoint="slack_user"),
                # Local only (Slack has no such call): who users.info knows, for e2e tests.
                Rule("/slack/users", methods=["POST"], endpoint="slack_add_user"),
                Rule("/telegram/<bot>/sendMessage", methods=["POST"], endpoint="telegram_send"),
                # Graph API sends: WhatsApp Cloud API (/<phone-number-id>/messages) and
                # Messenger / Instagram (/me/messages).
                Rule("/meta/<version>/<node>/messages", methods=["POST"], endpoint="meta_send"),
                # WhatsApp media: GET /<media-id> names a short-lived URL to download from.
                Rule("/meta/<version>/<media_id>", methods=["GET"], endpoint="meta_media"),
                Rule("/meta-media/<media_id>", methods=["GET"], endpoint="meta_media_file"),
            ]
        )
        self._telegram_sequence = itertools.count(1)
        # Slack users the sandbox knows (users.info), by user id; tests add them.
        self.slack_users: dict[str, dict[str, Any]] = {}
        self._slack_sequence = itertools.count(1)

    def add_slack_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        real_name: str | None = None,
        email_confirmed: bool = True,
        team_id: str = "T0SANDBOX",
    ) -> None:
        """A user users.info answers for, shaped like Slack's user object."""
        profile: dict[str, Any] = {"real_name": real_name, "display_name": real_name}
        if email is not None:
            profile["email"] = email
        with self._lock:
            self.slack_users[user_id] = {
                "id": user_id,
                "team_id": team_id,
                "name": (real_name or user_id).lower().replace(" ", "."),
                "deleted": False,
                "real_name": real_name,
                "is_bot": False,
                "is_email_confirmed": email_confirmed,
                "profile": profile,
            }

    def program_faults(self, provider: str, statuses: Iterable[int]) -> None:
        """The next answers ``provider`` gives, before it succeeds again."""
        with self._lock:
            self._faults.setdefault(provider, deque()).extend(statuses)

    def outbox(
        self, provider: str | None = None, *, to: str | None = None
    ) -> list[RecordedRequest]:
        """What was sent, oldest first; ``to`` keeps those to exactly that recipient.

        The recipient is Twilio's ``To`` (``+1555...`` or ``whatsapp:+1555...``) or
        Slack's ``channel``.
        """
        with self._lock:
            return [
                r
                for r in self.requests
                if (provider is None or r.provider == provider)
                and (to is None or r.form.get(_RECIPIENT_FIELDS.get(r.provider, "To")) == [to])
            ]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._messages.clear()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        adapter = self._routes.bind_to_environ(environ)
        try:
            endpoint, values = adapter.match()
        except Exception:
            response = Response(
                json.dumps({"message": "Not Found"}), 404, mimetype="application/json"
            )
            return response(environ, start_response)
        handler = getattr(self, f"_serve_{endpoint}")
        return handler(request, **values)(environ, start_response)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ endpoints

    def _serve_outbox(self, request: Request) -> Response:
        provider = request.args.get("provider")
        body = [r.as_json() for r in self.outbox(provider, to=request.args.get("to"))]
        return Response(json.dumps(body), 200, mimetype="application/json")

    def _serve_clear(self, request: Request) -> Response:
        self.clear()
        return Response(status=204)

    # Slack's Web API answers HTTP 200 with {"ok": false, "error": ...} for most
    # refusals; only rate limits (429 + Retry-After) and server errors use the status.

    def _serve_slack_post(self, request: Request) -> Response:
        arguments = _slack_arguments(request)
        form = {k: [v if isinstance(v, str) else json.dumps(v)] for k, v in arguments.items()}
        refusal = _slack_refusal(request, arguments)
        if refusal is not None:
            self._record("slack", request, 200, form)
            return _slack_answer(200, {"ok": False, "error": refusal})
        status = self._next_status("slack", 200)
        self._record("slack", request, status, form)
        if status != 200:
            return _slack_fault(status)
        ts = f"{int(datetime.now(UTC).timestamp())}.{next(self._slack_sequence):06d}"
        channel = str(arguments["channel"])
        message = {
            "type": "message",
            "text": arguments.get("text"),
            "ts": ts,
            "bot_id": "B0SANDBOX",
        }
        if arguments.get("thread_ts"):
            message["thread_ts"] = arguments["thread_ts"]
        return _slack_answer(200, {"ok": True, "channel": channel, "ts": ts, "message": message})

    def _serve_slack_user(self, request: Request) -> Response:
        arguments = _slack_arguments(request)
        if not _bearer_token(request):
            return _slack_answer(200, {"ok": False, "error": "not_authed"})
        status = self._next_status("slack", 200)
        if status != 200:
            return _slack_fault(status)
        with self._lock:
            user = self.slack_users.get(str(arguments.get("user")))
        if user is None:
            return _slack_answer(200, {"ok": False, "error": "user_not_found"})
        return _slack_answer(200, {"ok": True, "user": user})

    def _serve_slack_add_user(self, request: Request) -> Response:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            return Response(json.dumps({"message": 'a JSON object with "id"'}), 400)
        self.add_slack_user(
            body["id"],
            email=body.get("email"),
            real_name=body.get("real_name"),
            email_confirmed=bool(body.get("email_confirmed", True)),
            team_id=str(body.get("team_id") or "T0SANDBOX"),
        )
        return Response(status=204)

    # Graph API errors are {"error": {"message", "type", "code", "fbtrace_id"}}.

    def _serve_meta_send(self, request: Request, version: str, node: str) -> Response:
        document = request.get_json(force=True, silent=True)
        arguments: dict[str, Any] = dict(document) if isinstance(document, dict) else {}
        form = {k: [v if isinstance(v, str) else json.dumps(v)] for k, v in arguments.items()}
        if node == "me" and isinstance(arguments.get("recipient"), dict):
            # Messenger and Instagram name the recipient as {"id": ...}: listed as "to".
            form["to"] = [str(arguments["recipient"].get("id"))]
        refusal = _meta_refusal(request, node, arguments)
        if refusal is not None:
            self._record("meta", request, refusal[0], form)
            return _meta_error(*refusal)
        status = self._next_status("meta", 200)
        self._record("meta", request, status, form)
        if status != 200:
            return _meta_error(
                status, *_META_ERRORS.get(status, (2, "Service temporarily unavailable"))
            )
        if node == "me":
            body: dict[str, Any] = {
                "recipient_id": form["to"][0],
                "message_id": "m_" + secrets.token_urlsafe(24),
            }
        else:
            body = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": arguments["to"], "wa_id": str(arguments["to"]).lstrip("+")}],
                "messages": [{"id": "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()}],
            }
        return Response(json.dumps(body), 200, mimetype="application/json")

    def _serve_meta_media(self, request: Request, version: str, media_id: str) -> Response:
        if not _bearer_token(request):
            return _meta_error(401, 190, "Invalid OAuth access token.")
        if not media_id.isdigit():
            return _meta_error(400, 100, "Unsupported get request.")
        self._record("meta", request, 200, {})
        content = sandbox_media(media_id)
        body = {
            "messaging_product": "whatsapp",
            "url": f"{request.url_root}meta-media/{media_id}",
            "mime_type": "image/jpeg",
            "sha256": hashlib.sha256(content).hexdigest(),
            "file_size": len(content),
            "id": media_id,
        }
        return Response(json.dumps(body), 200, mimetype="application/json")

    def _serve_meta_media_file(self, request: Request, media_id: str) -> Response:
        if not _bearer_token(request):
            return _meta_error(401, 190, "Invalid OAuth access token.")
        return Response(sandbox_media(media_id), 200, mimetype="image/jpeg")

    def _serve_faults(self, request: Request, provider: str) -> Response:
        statuses = request.get_json(force=True, silent=True) or []
        if not isinstance(statuses, list) or not all(isinstance(s, int) for s in statuses):
            return Response(json.dumps({"message": "a list of HTTP statuses"}), 400)
        self.program_faults(provider, statuses)
        return Response(status=204)

    def _next_status(self, provider: str, success: int) -> int:
        with self._lock:
            queue = self._faults.get(provider)
            return queue.popleft() if queue else success

    def _record(
        self,
        provider: str,
        request: Request,
        status: int,
        form: dict[str, list[str]],
        *,
        path: str | None = None,
    ) -> None:
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    provider=provider,
                    method=request.method,
                    path=path or request.path,
                    form=form,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    status=status,
                    at=datetime.now(UTC).isoformat(),
                )
            )

    def _serve_twilio_message(self, request: Request, account_sid: str) -> Response:
        form = parse_qs(request.get_data(as_text=True), keep_blank_values=True)
        refusal = _twilio_refusal(request, account_sid, form)
        if refusal is not None:
            # Twilio refuses these before anything is queued; a programmed fault
            # stays for the next request that Twilio would have accepted.
            status, code, message = refusal
            self._record("twilio", request, status, form)
            return _twilio_error(status, code, message)
        status = self._next_status("twilio", 201)
        self._record("twilio", request, status, form)
        if status != 201:
            code, message = _TWILIO_ERRORS.get(status, (20500, "Error"))
            return _twilio_error(status, code, message)
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        sid = "SM" + secrets.token_hex(16)
        resource = {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": (form.get("Body") or [""])[0],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": _first(form, "From"),
            "messaging_service_sid": _first(form, "MessagingServiceSid"),
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"
            },
            "to": (form.get("To") or [""])[0],
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self._messages[sid] = resource
        return Response(json.dumps(resource), 201, mimetype="application/json")

    def _serve_twilio_fetch(self, request: Request, account_sid: str, message_sid: str) -> Response:
        if _basic_auth_user(request) is None:
            return _twilio_error(401, 20003, "Authenticate")
        with self._lock:
            resource = self._messages.get(message_sid)
        if resource is None or resource["account_sid"] != account_sid:
            return _twilio_error(404, 20404, "The requested resource was not found")
        return Response(json.dumps(resource), 200, mimetype="application/json")

    # Telegram's Bot API: https://api.telegram.org/bot<token>/sendMessage, JSON or form
    # arguments, answers {"ok": true, "result": Message} or {"ok": false, "error_code",
    # "description"[, "parameters": {"retry_after": N}]} with error_code as HTTP status.

    def _serve_telegram_send(self, request: Request, bot: str) -> Response:
        arguments = _slack_arguments(request)
        form = {k: [v if isinstance(v, str) else json.dumps(v)] for k, v in arguments.items()}
        token = bot.removeprefix("bot") if bot.startswith("bot") else ""
        bot_id, _, secret = token.partition(":")
        # The token is a credential: the outbox shows the bot id only.
        path = f"/telegram/bot{bot_id or '?'}:***/sendMessage"
        refusal = _telegram_refusal(bot_id, secret, arguments)
        if refusal is not None:
            self._record("telegram", request, refusal[0], form, path=path)
            return _telegram_error(*refusal)
        status = self._next_status("telegram", 200)
        self._record("telegram", request, status, form, path=path)
        if status != 200:
            return _telegram_error(status, _TELEGRAM_ERRORS.get(status, "Internal Server Error"))
        chat_id = arguments["chat_id"]
        digits = str(chat_id).removeprefix("-")
        numeric = isinstance(chat_id, int) or (digits.isascii() and digits.isdigit())
        chat = int(chat_id) if numeric else str(chat_id)
        result: dict[str, Any] = {
            "message_id": next(self._telegram_sequence),
            "from": {
                "id": int(bot_id),
                "is_bot": True,
                "first_name": "threadline sandbox",
                "username": "threadline_sandbox_bot",
            },
            "chat": {"id": chat, "type": "private" if numeric and int(chat) > 0 else "group"},
            "date": int(datetime.now(UTC).timestamp()),
            "text": str(arguments["text"]),
        }
        reply = arguments.get("reply_parameters")
        if isinstance(reply, str):
            try:
                reply = json.loads(reply)
            except ValueError:
                reply = None
        if isinstance(reply, dict) and isinstance(reply.get("message_id"), int):
            result["reply_to_message"] = {"message_id": reply["message_id"], "chat": result["chat"]}
        return _slack_answer(200, {"ok": True, "result": result})


# Seconds a programmed 429 from the Telegram sandbox asks the caller to wait: more
# than the dispatcher's first backoff (1 s), so a test can tell it was honoured.
TELEGRAM_RETRY_AFTER_SECONDS = 2
_TELEGRAM_ERRORS: dict[int, str] = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    429: f"Too Many Requests: retry after {TELEGRAM_RETRY_AFTER_SECONDS}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def _telegram_refusal(
    bot_id: str, secret: str, arguments: dict[str, Any]
) -> tuple[int, str] | None:
    """Telegram's answer to a sendMessage it would refuse outright, or None."""
    if not (bot_id.isascii() and bot_id.isdigit()) or len(secret) < 30:
        return 401, "Unauthorized"
    if arguments.get("chat_id") in (None, ""):
        return 400, "Bad Request: chat_id is empty"
    if not str(arguments.get("text") or "").strip():
        return 400, "Bad Request: message text is empty"
    return None


def _telegram_error(status: int, description: str) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if status == 429:
        body["parameters"] = {"retry_after": TELEGRAM_RETRY_AFTER_SECONDS}
    return Response(json.dumps(body), status, mimetype="application/json")


def sandbox_media(media_id: str) -> bytes:
    """The bytes the sandbox serves for a WhatsApp media id: the same for the same id."""
    return b"\xff\xd8\xff\xe0sandbox-media-" + media_id.encode("ascii", "replace")


# Graph API error codes for the fault statuses tests program.
_META_ERRORS: dict[int, tuple[int, str]] = {
    400: (100, "Invalid parameter"),
    401: (190, "Invalid OAuth access token."),
    429: (130429, "Rate limit hit"),
    500: (1, "An unknown error occurred"),
    503: (2, "Service temporarily unavailable"),
}


def _meta_error(status: int, code: int, message: str) -> Response:
    error = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": secrets.token_urlsafe(12),
    }
    return Response(json.dumps({"error": error}), status, mimetype="application/json")


def _meta_refusal(
    request: Request, node: str, arguments: dict[str, Any]
) -> tuple[int, int, str] | None:
    """The Graph API's answer to a send it would refuse outright, or None."""
    if not _bearer_token(request):
        return 401, 190, "Invalid OAuth access token."
    if node == "me":
        recipient = arguments.get("recipient")
        if not isinstance(recipient, dict) or not recipient.get("id"):
            return 400, 100, "The parameter recipient is required"
        if not isinstance(arguments.get("message"), dict):
            return 400, 100, "param message must be non-empty."
        if arguments.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return 400, 100, "The parameter messaging_type is required"
        return None
    if not node.isdigit():
        return 400, 100, "Unsupported post request."
    if arguments.get("messaging_product") != "whatsapp":
        return 400, 100, "The parameter messaging_product is required."
    if not arguments.get("to"):
        return 400, 100, "The parameter to is required."
    kind = arguments.get("type", "text")
    if not isinstance(arguments.get(kind), dict):
        return 400, 100, f"The parameter {kind} is required."
    return None


def _twilio_error(status: int, code: int, message: str) -> Response:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = {"Retry-After": "1"} if status == 429 else {}
    return Response(json.dumps(body), status, headers=headers, mimetype="application/json")


def _basic_auth_user(request: Request) -> str | None:
    """The user name of a well-formed Basic Authorization header, else None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, separator, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user if separator and user and password else None


def _twilio_refusal(
    request: Request, account_sid: str, form: dict[str, list[str]]
) -> tuple[int, int, str] | None:
    """Twilio's answer to a Messages create it would refuse outright, or None."""
    user = _basic_auth_user(request)
    # The account's own SID, or an API key (SK...) acting for it.
    if user is None or not (user == account_sid or user.startswith("SK")):
        return 401, 20003, "Authenticate"
    if not _first(form, "To"):
        return 400, 21604, "A 'To' phone number is required."
    if not (_first(form, "From") or _first(form, "MessagingServiceSid")):
        return 400, 21603, "A 'From' phone number is required."
    if not (_first(form, "Body") or form.get("MediaUrl") or _first(form, "ContentSid")):
        return 400, 21602, "Message body is required."
    return None


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _slack_arguments(request: Request) -> dict[str, Any]:
    """A Web API call's arguments: JSON body, form body or query string, as Slack takes."""
    if request.is_json:
        document = request.get_json(silent=True)
        return dict(document) if isinstance(document, dict) else {}
    arguments: dict[str, Any] = dict(request.args.items())
    arguments.update(request.form.items())
    return arguments


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _slack_refusal(request: Request, arguments: dict[str, Any]) -> str | None:
    """Slack's error code for a chat.postMessage it would refuse outright, or None."""
    if not _bearer_token(request):
        return "not_authed"
    if not arguments.get("channel"):
        return "channel_not_found"
    if not (arguments.get("text") or arguments.get("blocks") or arguments.get("attachments")):
        return "no_text"
    return None


def _slack_answer(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(json.dumps(body), status, headers=headers or {}, mimetype="application/json")


def _slack_fault(status: int) -> Response:
    """A programmed fault: 429 and 5xx as Slack sends them, anything else as ok: false."""
    if status == 429:
        return _slack_answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
    if status >= 500:
        return _slack_answer(status, {"ok": False, "error": "internal_error"})
    return _slack_answer(200, {"ok": False, "error": "channel_not_found"})
