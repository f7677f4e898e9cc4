"""POST /webchat/v1/sessions: a web chat visitor's session (public; CORS allowlist)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.channels.webchat.sessions import WebchatSessions, parse_session_request
from threadline.channels.webchat.settings import webchat_settings
from threadline.customers import CustomerStore
from threadline.errors import MalformedRequest, ThreadlineError
from threadline.logs import logger
from threadline.secrets import get_secret
from threadline.settings import store_settings
from threadline.telemetry import traced

sessions = WebchatSessions(
    CustomerStore(store_settings()),
    webchat_settings(),
    token_secret=lambda: get_secret("WEBCHAT_TOKEN_SECRET"),
    identity_secret=lambda: get_secret("WEBCHAT_IDENTITY_SECRET"),
)

# The widget ships with this function and is served by it: no bucket or CDN to run
# (docs/channels.md explains the choice). Browsers and any CDN cache it for 5 minutes.
WIDGET = (Path(__file__).parent / "widget.js").read_bytes()
WIDGET_ETAG = '"' + hashlib.sha256(WIDGET).hexdigest()[:32] + '"'


def widget(headers: dict[str, str]) -> dict[str, Any]:
    cache = {"ETag": WIDGET_ETAG, "Cache-Control": "public, max-age=300"}
    if headers.get("if-none-match") == WIDGET_ETAG:
        return {"statusCode": 304, "headers": cache, "body": ""}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "text/javascript; charset=utf-8", **cache},
        "body": WIDGET.decode("utf-8"),
    }


def _answer(status: int, document: Any, origin: str | None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if origin is not None:
        # Only reached for an allowed origin (or none): others got 403 before.
        headers |= {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    body = json.dumps(document) if document is not None else ""
    return {"statusCode": status, "headers": headers, "body": body}


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise MalformedRequest("body is not valid base64") from exc
    return str(raw).encode("utf-8")


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    origin = headers.get("origin")
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST")
    if method == "GET":
        return widget(headers)
    try:
        sessions.check_origin(origin)
        if method == "OPTIONS":
            answer = _answer(204, None, origin)
            answer["headers"] |= {
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "content-type, authorization",
                "Access-Control-Max-Age": "600",
            }
            return answer
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        granted = sessions.open(parse_session_request(_body(event)), bearer)
        return _answer(201, granted.model_dump(mode="json"), origin)
    except ThreadlineError as error:
        allowed = origin if error.code != "origin_not_allowed" else None
        document = {"error": {"code": error.code, "message": error.message}}
        return _answer(error.status, document, allowed)
    except Exception:
        logger.exception("web chat session failed")
        return _answer(
            500, {"error": {"code": "internal_error", "message": "internal error"}}, None
        )
