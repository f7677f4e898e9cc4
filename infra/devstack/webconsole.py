"""The local console page and the two ``/_dev`` routes the ``threadline`` CLI reads.

* ``GET /`` serves ``console.html``: one static page (no build step) that reads the
  REST API, ``/_dev/outbox`` and ``/_dev/events`` and polls them for live updates.
* ``GET /_dev/secrets`` answers the provider secrets the stack provisioned
  (``{"secrets": {"TWILIO_AUTH_TOKEN": ...}}``), so ``threadline send`` signs its
  requests with no copy-paste. Never the API token: that one the developer chose.
* ``GET /_dev/raw/<message id>`` answers a stored message's raw provider request
  (the envelope the webhook kept inline in the item or in the raw bucket), for
  ``threadline replay``.

Like every ``/_dev`` route these exist only locally. The gateway listens on
127.0.0.1 only, and the two routes that hand out secrets or raw requests also
refuse a ``Host`` other than a loopback name, so a web page that rebinds its own
DNS name to 127.0.0.1 cannot read them; browsers' same-origin rule does the rest
(no CORS headers are sent).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from werkzeug.wrappers import Request, Response

from devstack.secrets import ProvisionedSecret
from threadline.item_codec import inline_envelope
from threadline.items import message_json

CONSOLE_PAGE = "console.html"
SECRETS_PATH = "/_dev/secrets"
RAW_PREFIX = "/_dev/raw/"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
MAX_MESSAGE_ID_LENGTH = 64


class RawRequests:
    """Finds a stored message's raw provider request in the stack's tables and buckets."""

    def __init__(self, dynamodb: Any, s3: Any, tables: Sequence[str]) -> None:
        self._dynamodb = dynamodb
        self._s3 = s3
        self._tables = list(tables)

    def find(self, message_id: str) -> dict[str, Any] | None:
        """``{"message_id", "customer_id", "channel", "provider", "envelope"}`` or None.

        ``envelope`` is the webhook's stored request; a mail has ``mail_base64``
        (the raw mail) instead.

        A scan, not a key lookup: the item's key is its customer's, which the
        developer does not have at hand. Fine on a laptop's table, never deployed.
        """
        for table in self._tables:
            item = self._scan_for(table, message_id)
            if item is None:
                continue
            message = message_json({"message": _attribute(item, "message") or "{}"})
            # Inline envelopes are stored compressed (text in older items).
            raw = inline_envelope({"raw": _attribute(item, "raw")})
            ref = message.get("raw") or {}
            if raw is None and ref.get("location") == "s3":
                raw = self._s3.get_object(Bucket=ref["bucket"], Key=ref["key"])["Body"].read()
            found: dict[str, Any] = {
                "message_id": message_id,
                "customer_id": item.get("customer_id", {}).get("S"),
                "channel": item.get("channel", {}).get("S"),
                "provider": item.get("provider", {}).get("S"),
                "envelope": None,
            }
            if raw is None:
                return found
            try:
                found["envelope"] = json.loads(raw)
            except ValueError:
                # An inbound mail is kept as the raw mail itself, not as an envelope.
                found["mail_base64"] = base64.b64encode(raw).decode("ascii")
            return found
        return None

    def _scan_for(self, table: str, message_id: str) -> dict[str, Any] | None:
        paginator = self._dynamodb.get_paginator("scan")
        pages = paginator.paginate(
            TableName=table,
            FilterExpression="message_id = :id AND #type = :message",
            ExpressionAttributeNames={"#type": "type"},
            ExpressionAttributeValues={":id": {"S": message_id}, ":message": {"S": "message"}},
        )
        for page in pages:
            for item in page.get("Items", []):
                return dict(item)
        return None


class WebConsole:
    """Serves the console page, ``/_dev/secrets`` and ``/_dev/raw/<id>``."""

    def __init__(
        self, secrets: Sequence[ProvisionedSecret], raw_requests: RawRequests | None = None
    ) -> None:
        self._secrets = {secret.env_name: secret.value for secret in secrets}
        self._raw_requests = raw_requests

    def answer(self, request: Request, path: str, method: str) -> Response | None:
        """The response for ``path``, or None when it is not one of these routes."""
        if path == "/":
            if method not in {"GET", "HEAD"}:
                return _json(405, {"message": "Method Not Allowed"})
            page = resources.files("devstack").joinpath(CONSOLE_PAGE).read_bytes()
            response = Response(page, 200, mimetype="text/html")
            # The page renders data with textContent only; forbid anything else too.
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
            )
            response.headers["Cache-Control"] = "no-store"
            return response
        if path == SECRETS_PATH:
            if method != "GET":
                return _json(405, {"message": "Method Not Allowed"})
            if not _from_loopback_name(request):
                return _json(403, {"message": "only for http://127.0.0.1 or http://localhost"})
            return _json(200, {"secrets": self._secrets})
        if path.startswith(RAW_PREFIX):
            return self._raw(request, path[len(RAW_PREFIX) :], method)
        return None

    def _raw(self, request: Request, message_id: str, method: str) -> Response:
        if method != "GET":
            return _json(405, {"message": "Method Not Allowed"})
        if not _from_loopback_name(request):
            return _json(403, {"message": "only for http://127.0.0.1 or http://localhost"})
        if self._raw_requests is None:
            return _json(404, {"message": "this stack keeps no messages"})
        if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH or not message_id.isalnum():
            return _json(400, {"message": "not a message id"})
        found = self._raw_requests.find(message_id)
        if found is None:
            return _json(404, {"message": "no stored message has this id"})
        if found["envelope"] is None and "mail_base64" not in found:
            return _json(404, {"message": "this message has no raw request (a reply?)"})
        return _json(200, found)


def _from_loopback_name(request: Request) -> bool:
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return host.lower() in LOOPBACK_HOSTS


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def _attribute(item: dict[str, Any], name: str) -> Any:
    """A text or binary attribute of a low-level (client) item; None when absent."""
    value = item.get(name) or {}
    return value.get("S", value.get("B"))
