"""The WebSocket API: ``$connect`` (token), ``$disconnect``, and the widget's frames
on ``$default`` (send, read, history), answered with ack / history / error frames."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from threadline.channels.base import InboundMessage, StatusUpdate, build
from threadline.channels.webchat.connections import (
    Connection,
    count_frame,
    find_connection,
    forget_connection,
    record_connection,
)
from threadline.channels.webchat.sessions import VerificationRequired
from threadline.channels.webchat.settings import (
    CLIENT_MESSAGE_ID,
    CONNECTION_LIFETIME,
    HISTORY_PAGE,
    MAX_FRAME_BYTES,
    MAX_TEXT,
    PROVIDER,
    WebchatSettings,
    visitor_identity,
)
from threadline.channels.webchat.tokens import InvalidToken, read_token
from threadline.errors import MalformedRequest, ThreadlineError
from threadline.items import WEBCHAT_SESSION_SK, webchat_pk
from threadline.logs import logger
from threadline.schema import (
    Channel,
    Direction,
    Identity,
    IdentityKind,
    Message,
    MessageStatus,
    TextPart,
    utc_now,
)
from threadline.store import KeptRaw, RawPayload

if TYPE_CHECKING:
    from threadline.store import TimelineStore

# ---------------------------------------------------------------- frames


class FrameError(ThreadlineError):
    """A frame the socket refuses: answered with an error frame, never a 5xx."""

    status = 400


@dataclass(frozen=True)
class SendFrame:
    client_message_id: str
    text: str
    action: Literal["send"] = "send"


@dataclass(frozen=True)
class ReadFrame:
    message_id: str
    action: Literal["read"] = "read"


@dataclass(frozen=True)
class HistoryFrame:
    before: str | None = None
    action: Literal["history"] = "history"


Frame = SendFrame | ReadFrame | HistoryFrame


def parse_frame(body: str | bytes | None) -> Frame:
    """One client frame, or FrameError with the code the error frame carries."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameError(f"frames are at most {MAX_FRAME_BYTES} bytes", code="frame_too_large")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError("a frame is one JSON object", code="malformed_frame") from exc
    if not isinstance(document, dict):
        raise FrameError("a frame is one JSON object", code="malformed_frame")
    action = document.get("action")
    if action == "send":
        client_id = document.get("client_message_id")
        text = document.get("text")
        if not isinstance(client_id, str) or not CLIENT_MESSAGE_ID.match(client_id):
            raise FrameError(
                "client_message_id is 1-64 characters of A-Z a-z 0-9 _ . : -",
                code="malformed_frame",
            )
        if not isinstance(text, str) or not text.strip():
            raise FrameError("text is required", code="malformed_frame")
        if len(text) > MAX_TEXT:
            raise FrameError(f"text is at most {MAX_TEXT} characters", code="text_too_long")
        return SendFrame(client_message_id=client_id, text=text)
    if action == "read":
        message_id = document.get("message_id")
        if not isinstance(message_id, str) or not 1 <= len(message_id) <= 64:
            raise FrameError("message_id is required", code="malformed_frame")
        return ReadFrame(message_id=message_id)
    if action == "history":
        before = document.get("before")
        if before is not None and (not isinstance(before, str) or len(before) > 512):
            raise FrameError("before is a cursor from a history frame", code="malformed_frame")
        return HistoryFrame(before=before)
    raise FrameError("action is send, read or history", code="unknown_action")


def _frame(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def error_frame(code: str, message: str, **extra: Any) -> str:
    return _frame({"type": "error", "code": code, "message": message, **extra})


def ack_frame(client_message_id: str, message_id: str) -> str:
    return _frame({"type": "ack", "client_message_id": client_message_id, "message_id": message_id})


# What the visitor's browser is shown of a message: the common schema without what
# is internal to the deployment (raw payload, provider ids, channel_data, agent ids).
PUBLIC_FIELDS = frozenset(
    {
        "schema_version",
        "id",
        "conversation_id",
        "channel",
        "direction",
        "author_role",
        "sent_at",
        "received_at",
        "parts",
        "status",
        "edited_at",
        "deleted_at",
    }
)


def public_message(message: Message) -> dict[str, Any]:
    return message.model_dump(mode="json", include=set(PUBLIC_FIELDS))


def message_frame(message: Message) -> str:
    return _frame({"type": "message", "message": public_message(message)})


def history_frame(messages: list[Message], next_cursor: str | None) -> str:
    return _frame(
        {
            "type": "history",
            "messages": [public_message(m) for m in messages],
            "next_cursor": next_cursor,
        }
    )


# ---------------------------------------------------------------- the socket


def socket_response(status: int, body: str | None = None) -> dict[str, Any]:
    """A WebSocket route's answer: $connect's status decides the handshake; a body on
    a route with a route response goes back to the client as one frame."""
    response: dict[str, Any] = {"statusCode": status}
    if body is not None:
        response["body"] = body
    return response


class WebchatSocket:
    """``$connect``, ``$disconnect`` and ``$default`` of the WebSocket API."""

    def __init__(
        self,
        store: TimelineStore,
        settings: WebchatSettings,
        *,
        token_secret: Callable[[], str],
    ) -> None:
        self.store = store
        self.settings = settings
        self.token_secret = token_secret

    def handle(self, event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
        context = event.get("requestContext") or {}
        route = context.get("routeKey")
        connection_id = str(context.get("connectionId") or "")
        now = now or utc_now()
        if not connection_id:
            return socket_response(400)
        try:
            if route == "$connect":
                return self.connect(connection_id, event, now)
            if route == "$disconnect":
                self.disconnect(connection_id)
                return socket_response(200)
            return self.frame(connection_id, event.get("body"), now)
        except ThreadlineError as error:
            logger.warning("web chat request refused", extra={"route": route, "code": error.code})
            if route == "$connect":
                return socket_response(error.status)
            return socket_response(200, error_frame(error.code, error.message))
        except Exception:
            # The other visitors' sockets are untouched; this one gets an error frame.
            logger.exception("web chat request failed", extra={"route": route})
            if route == "$connect":
                return socket_response(500)
            return socket_response(200, error_frame("internal_error", "try again"))

    # ------------------------------------------------------------ $connect

    def connect(
        self, connection_id: str, event: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        query = event.get("queryStringParameters") or {}
        token = query.get("token") if isinstance(query, Mapping) else None
        if not isinstance(token, str) or not token:
            raise InvalidToken("connect with ?token= from POST /webchat/v1/sessions")
        claims = read_token(self.token_secret(), token, now=now)
        if self.settings.require_verification and not claims.verified:
            raise VerificationRequired("this site requires a verified visitor")
        session = self.store.get_item(
            webchat_pk(claims.visitor_id), WEBCHAT_SESSION_SK, consistent=True
        )
        if session is None:
            raise InvalidToken("the session has ended")
        connection = Connection(
            connection_id=connection_id,
            visitor_id=claims.visitor_id,
            verified_identity=session.get("verified_identity") if claims.verified else None,
            name=session.get("name"),
        )
        # Never past the token's expiry, nor API Gateway's 2-hour connection limit.
        expires = int(min(claims.expires_at, now + CONNECTION_LIFETIME).timestamp()) + 60
        record_connection(self.store.data, connection, connected_at=now, expires=expires)
        logger.info("web chat connected", extra={"connection_id": connection_id})
        return socket_response(200)

    def disconnect(self, connection_id: str) -> None:
        connection = find_connection(self.store.data, connection_id)
        if connection is not None:
            forget_connection(self.store.data, connection.visitor_id, connection_id)

    # ------------------------------------------------------------ frames

    def frame(self, connection_id: str, body: Any, now: datetime) -> dict[str, Any]:
        connection = find_connection(self.store.data, connection_id)
        if connection is None:
            raise FrameError("this connection has no session: reconnect", code="not_connected")
        # Every frame counts, a malformed one too: the limit is what protects the rest.
        if (
            count_frame(self.store.data, connection.visitor_id, now)
            > self.settings.rate_limit_per_minute
        ):
            raise FrameError(
                f"at most {self.settings.rate_limit_per_minute} frames a minute: slow down",
                code="rate_limited",
            )
        frame = parse_frame(body if isinstance(body, str | bytes) else None)
        if isinstance(frame, SendFrame):
            return socket_response(200, self.send(connection, frame, body, now))
        if isinstance(frame, ReadFrame):
            self.read(connection, frame.message_id)
            return socket_response(200)
        return socket_response(200, self.history(connection, frame.before))

    def send(self, connection: Connection, frame: SendFrame, body: Any, now: datetime) -> str:
        verified = []
        if connection.verified_identity:
            identity = Identity.parse(connection.verified_identity)
            if identity.kind is not IdentityKind.WEBCHAT:
                verified.append(identity)
        inbound = build(
            InboundMessage,
            channel=Channel.WEBCHAT,
            provider=PROVIDER,
            provider_message_id=f"{connection.visitor_id}:{frame.client_message_id}",
            sender=visitor_identity(connection.visitor_id),
            sender_display_name=connection.name,
            sent_at=now,
            parts=[TextPart(text=frame.text)],
            channel_data={"client_message_id": frame.client_message_id},
            verified_identities=verified,
        )
        envelope = json.dumps(
            {"connection_id": connection.connection_id, "body": body}, separators=(",", ":")
        ).encode()
        raw: KeptRaw = self.store.keep_raw(
            RawPayload(
                envelope=envelope,
                provider=PROVIDER,
                body_sha256=hashlib.sha256(str(body).encode()).hexdigest(),
            )
        )
        result = self.store.ingest(inbound, raw, received_at=now)
        return ack_frame(frame.client_message_id, result.message_id)

    def _customer_of(self, connection: Connection) -> str | None:
        customer_id = self.store.find_customer_id(visitor_identity(connection.visitor_id))
        return self.store.surviving_customer_id(customer_id) if customer_id else None

    def read(self, connection: Connection, message_id: str) -> None:
        customer_id = self._customer_of(connection)
        message = self.store.get_message(customer_id, message_id) if customer_id else None
        if (
            message is None
            or message.direction is not Direction.OUTBOUND
            or message.channel is not Channel.WEBCHAT
        ):
            raise FrameError("no such message in this chat", code="not_found")
        self.store.apply_status(
            StatusUpdate(
                provider=PROVIDER,
                provider_message_id=message.provider_message_id or message.id,
                status=MessageStatus.READ,
                customer_id=message.customer_id,
                message_id=message.id,
            )
        )

    def history(self, connection: Connection, before: str | None) -> str:
        """A page of the chat, newest first: the customer's web chat messages only."""
        customer_id = self._customer_of(connection)
        if customer_id is None:
            return history_frame([], None)
        try:
            page = self.store.timeline(customer_id, limit=HISTORY_PAGE, cursor=before)
        except MalformedRequest as exc:
            raise FrameError("before is not a cursor of this chat", code="malformed_frame") from exc
        # Agent notes (direction internal) are the team's, never the visitor's.
        messages = [
            m
            for m in page.items
            if m.channel is Channel.WEBCHAT and m.direction is not Direction.INTERNAL
        ]
        return history_frame(messages, page.next_cursor)
