"""``threadline send webchat``: a visitor's message as the widget sends it.

Not a signed webhook: the CLI opens a session with ``POST /webchat/v1/sessions``
(as the site's backend would, without an ``Origin`` header: CORS governs browsers,
and the session endpoint takes origin-less requests), connects to the WebSocket URL
the session names with its token, sends one ``send`` frame and waits for its
``ack``, which comes once the message is stored.

``--from new`` opens a new visitor; ``--from <visitor id>`` writes as a visitor the
CLI opened before. A returning visitor proves who it is with its previous token,
so the CLI keeps the last token of each visitor it opened in
:func:`token_file` (``$XDG_CACHE_HOME/threadline/webchat-visitors.json``, else
``~/.cache/...``), per stack URL, readable by the user only. The tokens are
short-lived and name nothing but a visitor id (docs/cli.md).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline_cli.target import CliError

if TYPE_CHECKING:
    from threadline_cli.channels import SendRequest

NEW_VISITOR = "new"
ACK_TIMEOUT_SECONDS = 15.0


def token_file(environ: Any = None) -> Path:
    environ = os.environ if environ is None else environ
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "threadline" / "webchat-visitors.json"


def _tokens(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in document.items()} if isinstance(document, dict) else {}


def _remember(path: Path, key: str, token: str) -> None:
    tokens = _tokens(path) | {key: token}
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(tokens, file, indent=1, sort_keys=True)


def send_webchat(request: SendRequest) -> None:
    """Open (or renew) the visitor's session, send TEXT over the socket, wait for the ack."""
    path = token_file(request.target.environ)
    returning = request.value != NEW_VISITOR
    key = f"{request.target.base_url} {request.value}"
    body: dict[str, Any] = {"name": request.name} if request.name else {}
    headers: dict[str, str] = {}
    if returning:
        previous = _tokens(path).get(key)
        if previous is None:
            raise CliError(
                f"no token for webchat:{request.value} at {request.target.base_url} in {path}: "
                "the CLI can write only as visitors it opened (start one with --from new)"
            )
        body["visitor_id"] = request.value
        headers["Authorization"] = f"Bearer {previous}"
    session = request.post(
        "POST /webchat/v1/sessions", "/webchat/v1/sessions", json=body, headers=headers
    ).json()
    visitor_id, token = str(session["visitor_id"]), str(session["token"])
    if returning and visitor_id != request.value:
        raise CliError(
            f"the stack no longer knows webchat:{request.value} (its token is too old): "
            "start a new visitor with --from new"
        )
    _remember(path, f"{request.target.base_url} {visitor_id}", token)
    request.value = visitor_id
    client_message_id = "cli-" + secrets.token_hex(8)
    frame = {"action": "send", "client_message_id": client_message_id, "text": request.text}
    ack = _send_frame(str(session["websocket_url"]) + "?token=" + token, frame)
    request.message_id = str(ack["message_id"])
    request.notes.append(f"WebSocket send frame: ack, message {request.message_id}")


def _send_frame(url: str, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` and return its ack; an error frame or silence is a CliError."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
    where = url.split("?")[0]  # the token stays out of messages
    try:
        with connect(url, open_timeout=ACK_TIMEOUT_SECONDS, proxy=None) as socket:
            socket.send(json.dumps(frame))
            while True:
                answer = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
                if answer.get("type") == "error":
                    raise CliError(
                        f"the socket refused the frame: {answer.get('message')} "
                        f"({answer.get('code')})"
                    )
                if (
                    answer.get("type") == "ack"
                    and answer.get("client_message_id") == frame["client_message_id"]
                ):
                    return dict(answer)
    except TimeoutError:
        raise CliError(f"no ack within {ACK_TIMEOUT_SECONDS:.0f} s from {where}") from None
    except InvalidStatus as refused:
        status = refused.response.status_code
        raise CliError(f"the WebSocket at {where} refused the token ({status})") from None
    except (OSError, WebSocketException) as failed:
        raise CliError(f"the WebSocket at {where} failed: {failed}") from None
