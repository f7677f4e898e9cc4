"""Web chat: the site's chat widget, over an API Gateway WebSocket API.

A visitor first asks ``POST /webchat/v1/sessions`` for a session: a visitor id and
a short-lived signed token naming it. The widget then opens the WebSocket API with
``?token=``; ``$connect`` checks the token and records the connection, ``$default``
takes the widget's frames (send, read, history), ``$disconnect`` forgets it.

A visitor is the identity ``webchat:<visitor_id>``. Its messages are stored through
the same store as every webhook's (a re-sent ``client_message_id`` meets the same
DEDUP item, provider ``webchat``, id ``<visitor_id>:<client_message_id>``). Replies
go out through :class:`WebchatSender`, which pushes them with ``PostToConnection``
to every open connection of the visitor; with none open, the reply waits on the
timeline (the widget shows it on its next connect) and, for a verified visitor
with an e-mail, a delayed job sends it by e-mail unless it was seen meanwhile.

Identity verification is the scheme Intercom, Front and Chatwoot use: the site's
backend computes ``user_hash = hex(HMAC-SHA256(identity secret, email or
external_id))``. A valid hash links the visitor to the customer who owns that
e-mail or external id; without one, a claimed e-mail is kept on the session as an
unverified claim and never links.

Storage (docs/storage.md): ``WEBCHAT#<visitor_id>`` holds the visitor's session
(``SESSION``), its open connections (``CONN#<id>``) and its rate-limit windows
(``RATE#<minute>``); ``WSCONN#<connection_id>`` maps a connection to its visitor.
Every one carries ``expires_at`` (DynamoDB TTL): nothing outlives the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from threadline.channels.base import (
    InboundMessage,
    SendFailed,
    SendResult,
    StatusUpdate,
    build,
)
from threadline.errors import MalformedRequest, SignatureInvalid, ThreadlineError
from threadline.identity import canonical_email
from threadline.items import from_item, to_item
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
from threadline.settings import required_env
from threadline.store import KeptRaw, RawPayload

if TYPE_CHECKING:
    from threadline.customers import CustomerStore
    from threadline.store import TimelineStore

PROVIDER = "webchat"
# API Gateway's WebSocket frames are at most 32 KB; the widget's never come close.
MAX_FRAME_BYTES = 32 * 1024
MAX_TEXT = 4096
MAX_SESSION_BODY_BYTES = 4096
# Visitor and client message ids: what the widget generates, URL- and key-safe.
VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CLIENT_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
HISTORY_PAGE = 20
# API Gateway ends a WebSocket connection after 2 hours at most.
CONNECTION_LIFETIME = timedelta(hours=2)
# A signed token that expired less than this ago still renews its visitor's session
# (POST /webchat/v1/sessions): a returning visitor keeps its timeline. It never
# opens a socket once expired.
RENEWAL_WINDOW = timedelta(days=30)


def session_pk(visitor_id: str) -> str:
    return f"WEBCHAT#{visitor_id}"


SESSION_SK = "SESSION"


def visitor_connection_sk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def connection_pk(connection_id: str) -> str:
    return f"WSCONN#{connection_id}"


CONNECTION_SK = "WSCONN"


def rate_sk(window: int) -> str:
    return f"RATE#{window}"


def visitor_identity(visitor_id: str) -> Identity:
    return Identity(kind=IdentityKind.WEBCHAT, value=visitor_id)


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(18)


# ---------------------------------------------------------------- settings


class WebchatSettings(BaseModel):
    """What template.yaml configures for the web chat functions."""

    model_config = ConfigDict(frozen=True)

    allowed_origins: tuple[str, ...] = ()
    require_verification: bool = False
    token_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    socket_url: str = ""
    connections_url: str = ""
    rate_limit_per_minute: int = Field(default=60, ge=1)
    email_delay_seconds: int = Field(default=300, ge=0, le=900)
    continuity_queue_url: str = ""

    @classmethod
    def from_env(cls) -> WebchatSettings:
        origins = os.environ.get("WEBCHAT_ALLOWED_ORIGINS", "")
        return cls(
            allowed_origins=tuple(o.strip().rstrip("/") for o in origins.split(",") if o.strip()),
            require_verification=os.environ.get("WEBCHAT_REQUIRE_VERIFICATION", "false") == "true",
            token_ttl_seconds=int(os.environ.get("WEBCHAT_TOKEN_TTL_SECONDS", "3600")),
            socket_url=os.environ.get("WEBCHAT_SOCKET_URL", ""),
            connections_url=os.environ.get("WEBCHAT_CONNECTIONS_URL", ""),
            rate_limit_per_minute=int(os.environ.get("WEBCHAT_RATE_LIMIT_PER_MINUTE", "60")),
            email_delay_seconds=int(os.environ.get("WEBCHAT_EMAIL_DELAY_SECONDS", "300")),
            continuity_queue_url=os.environ.get("WEBCHAT_CONTINUITY_QUEUE_URL", ""),
        )


@cache
def webchat_settings() -> WebchatSettings:
    return WebchatSettings.from_env()


# ---------------------------------------------------------------- tokens


class InvalidToken(SignatureInvalid):
    code = "invalid_token"


@dataclass(frozen=True)
class TokenClaims:
    visitor_id: str
    expires_at: datetime
    verified: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(
    secret: str, visitor_id: str, *, verified: bool, now: datetime, ttl_seconds: int
) -> tuple[str, datetime]:
    """A token naming ``visitor_id`` until ``now + ttl``; (token, expiry).

    ``<payload>.<HMAC-SHA256 of payload>``, both base64url: small enough for a
    query string, and nothing in it is secret (no e-mail, no name).
    """
    expires = now + timedelta(seconds=ttl_seconds)
    payload = _b64(
        json.dumps(
            {"sub": visitor_id, "exp": int(expires.timestamp()), "ver": bool(verified)},
            separators=(",", ":"),
        ).encode()
    )
    mac = hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}", expires.replace(microsecond=0)


def read_token(
    secret: str, token: str, *, now: datetime, grace: timedelta = timedelta(0)
) -> TokenClaims:
    """The claims of a token we signed that expired no more than ``grace`` ago."""
    payload, sep, signature = token.partition(".")
    if not sep or not payload or not signature or len(token) > 512:
        raise InvalidToken("the token is malformed")
    expected = hmac.new(secret.encode(), payload.encode("ascii", "replace"), hashlib.sha256)
    try:
        supplied = _unb64(signature)
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("the token is malformed") from exc
    if not hmac.compare_digest(expected.digest(), supplied):
        raise InvalidToken("the token's signature does not match")
    if not isinstance(claims, dict):
        raise InvalidToken("the token is malformed")
    visitor_id, expiry = claims.get("sub"), claims.get("exp")
    if not isinstance(visitor_id, str) or not VISITOR_ID.match(visitor_id):
        raise InvalidToken("the token names no visitor")
    if not isinstance(expiry, int) or isinstance(expiry, bool):
        raise InvalidToken("the token has no expiry")
    try:
        expires_at = datetime.fromtimestamp(expiry, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidToken("the token has no expiry") from exc
    if expires_at + grace <= now:
        raise InvalidToken("the token has expired", code="token_expired")
    return TokenClaims(visitor_id, expires_at, claims.get("ver") is True)


def user_hash(identity_secret: str, subject: str) -> str:
    """What the site's backend computes to vouch for a visitor's e-mail or external id."""
    return hmac.new(identity_secret.encode(), subject.encode(), hashlib.sha256).hexdigest()


def user_hash_matches(identity_secret: str, subject: str, supplied: str) -> bool:
    return hmac.compare_digest(user_hash(identity_secret, subject), supplied.strip().lower())


# ---------------------------------------------------------------- sessions


class SessionRequest(BaseModel):
    """``POST /webchat/v1/sessions``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    visitor_id: str | None = Field(default=None, pattern=VISITOR_ID.pattern)
    name: str | None = Field(default=None, min_length=1, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    external_id: str | None = Field(default=None, min_length=1, max_length=256)
    user_hash: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return canonical_email(value) if value else None


class SessionGranted(BaseModel):
    visitor_id: str
    token: str
    websocket_url: str
    expires_at: datetime


class VerificationRequired(ThreadlineError):
    status = 403
    code = "verification_required"


class OriginNotAllowed(ThreadlineError):
    status = 403
    code = "origin_not_allowed"


def parse_session_request(body: bytes) -> SessionRequest:
    if len(body) > MAX_SESSION_BODY_BYTES:
        raise MalformedRequest("the body is too large")
    if not body.strip():
        return SessionRequest()
    try:
        return SessionRequest.model_validate_json(body)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
        raise MalformedRequest(f"invalid values for: {', '.join(fields)}") from exc


def verified_subject(
    request: SessionRequest, identity_secret: Callable[[], str]
) -> tuple[str, str] | None:
    """("email", address) or ("external_id", id) when ``user_hash`` vouches for it.

    No hash: None (an anonymous visitor). A hash that does not match is refused: a
    site that sends one means to verify, and a wrong one is a forgery or a bug.
    """
    if request.user_hash is None:
        return None
    subject: tuple[str, str] | None = None
    if request.email is not None:
        subject = ("email", request.email)
    elif request.external_id is not None:
        subject = ("external_id", request.external_id)
    if subject is None:
        raise MalformedRequest("user_hash verifies an email or an external_id: send one")
    if not user_hash_matches(identity_secret(), subject[1], request.user_hash):
        raise SignatureInvalid("user_hash does not match", code="invalid_user_hash")
    return subject


class WebchatSessions:
    """Opens and renews visitor sessions, linking verified visitors to their customer."""

    def __init__(
        self,
        store: CustomerStore,
        settings: WebchatSettings,
        *,
        token_secret: Callable[[], str],
        identity_secret: Callable[[], str],
    ) -> None:
        self.store = store
        self.settings = settings
        self.token_secret = token_secret
        self.identity_secret = identity_secret

    def check_origin(self, origin: str | None) -> None:
        """Browsers name the page's origin; only the site's own may open sessions.

        A request without Origin is no browser's (the site's backend, curl): CORS
        cannot govern it, and the token it gets is no more than the widget's.
        """
        if origin is not None and origin.rstrip("/") not in self.settings.allowed_origins:
            raise OriginNotAllowed("this origin may not open web chat sessions")

    def open(
        self, request: SessionRequest, bearer: str | None, *, now: datetime | None = None
    ) -> SessionGranted:
        now = now or utc_now()
        subject = verified_subject(request, self.identity_secret)
        if subject is None and self.settings.require_verification:
            raise VerificationRequired("this site requires a verified visitor (user_hash)")
        visitor_id = self._returning_visitor(request.visitor_id, bearer, now) or new_visitor_id()
        verified_identity = None
        if subject is not None:
            verified_identity = self._link(visitor_id, subject)
        token, expires = sign_token(
            self.token_secret(),
            visitor_id,
            verified=subject is not None,
            now=now,
            ttl_seconds=self.settings.token_ttl_seconds,
        )
        self._save_session(visitor_id, request, subject, verified_identity, expires)
        logger.info(
            "web chat session opened",
            extra={"verified": subject is not None, "returning": visitor_id == request.visitor_id},
        )
        return SessionGranted(
            visitor_id=visitor_id,
            token=token,
            websocket_url=self.settings.socket_url,
            expires_at=expires,
        )

    def _returning_visitor(
        self, visitor_id: str | None, bearer: str | None, now: datetime
    ) -> str | None:
        """``visitor_id`` when the bearer token proves it is this visitor's, else None."""
        if visitor_id is None or not bearer:
            return None
        try:
            claims = read_token(self.token_secret(), bearer, now=now, grace=RENEWAL_WINDOW)
        except InvalidToken:
            return None
        return visitor_id if claims.visitor_id == visitor_id else None

    def _link(self, visitor_id: str, subject: tuple[str, str]) -> str | None:
        """Attach the visitor to the customer its verified subject names.

        Through the store's own link path (CustomerStore.link_identity): when the
        visitor already is someone's (an anonymous visitor who now signed in), that
        customer is merged into the verified one. An e-mail nobody owns yet is
        returned and rides on the visitor's first message as a verified identity
        (the ingest path Slack's confirmed e-mails take); an unknown external id
        links nothing.
        """
        from threadline.customers import parse_external_id

        visitor = visitor_identity(visitor_id)
        owner: str | None
        verified: str | None = None
        if subject[0] == "email":
            email = Identity(kind=IdentityKind.EMAIL, value=subject[1])
            verified = str(email)
            owner = self.store.find_customer_id(email)
        else:
            try:
                system, value = parse_external_id(subject[1])
            except ValueError as exc:
                raise MalformedRequest(str(exc)) from exc
            customer = self.store.find_by_external_id(system, value)
            owner = customer.id if customer else None
        visitor_owner = self.store.find_customer_id(visitor)
        if owner is not None:
            owner = self.store.surviving_customer_id(owner) or owner
            if visitor_owner != owner:
                self.store.link_identity(owner, visitor, merge=visitor_owner is not None)
        elif visitor_owner is not None and subject[0] == "email":
            self.store.link_identity(visitor_owner, Identity.parse(str(verified)))
        return verified

    def _save_session(
        self,
        visitor_id: str,
        request: SessionRequest,
        subject: tuple[str, str] | None,
        verified_identity: str | None,
        expires: datetime,
    ) -> None:
        # Claims the visitor made without proof are kept as claims, with the session,
        # and expire with it; they never link.
        item = {
            "pk": session_pk(visitor_id),
            "sk": SESSION_SK,
            "type": "webchat_session",
            "visitor_id": visitor_id,
            "name": request.name,
            "verified": subject is not None,
            "verified_identity": verified_identity,
            "claimed_email": request.email if subject is None else None,
            "claimed_external_id": request.external_id if subject is None else None,
            "expires_at": int((expires + CONNECTION_LIFETIME).timestamp()),
        }
        self.store.dynamodb.put_item(TableName=self.store.table, Item=to_item(item))


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


@dataclass(frozen=True)
class Connection:
    connection_id: str
    visitor_id: str
    verified_identity: str | None
    name: str | None


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
        session = self.store.get_item(session_pk(claims.visitor_id), SESSION_SK, consistent=True)
        if session is None:
            raise InvalidToken("the session has ended")
        expires = int(min(claims.expires_at, now + CONNECTION_LIFETIME).timestamp()) + 60
        common = {
            "type": "webchat_connection",
            "connection_id": connection_id,
            "visitor_id": claims.visitor_id,
            "verified_identity": session.get("verified_identity") if claims.verified else None,
            "name": session.get("name"),
            "connected_at": now.isoformat(),
            "expires_at": expires,
        }
        self.store.dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.store.table,
                        "Item": to_item(
                            {"pk": connection_pk(connection_id), "sk": CONNECTION_SK, **common}
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self.store.table,
                        "Item": to_item(
                            {
                                "pk": session_pk(claims.visitor_id),
                                "sk": visitor_connection_sk(connection_id),
                                **common,
                            }
                        ),
                    }
                },
            ]
        )
        logger.info("web chat connected", extra={"connection_id": connection_id})
        return socket_response(200)

    def disconnect(self, connection_id: str) -> None:
        connection = self.connection(connection_id)
        if connection is not None:
            forget_connection(self.store, connection.visitor_id, connection_id)

    def connection(self, connection_id: str) -> Connection | None:
        item = self.store.get_item(connection_pk(connection_id), CONNECTION_SK, consistent=True)
        if item is None:
            return None
        return Connection(
            connection_id=connection_id,
            visitor_id=str(item["visitor_id"]),
            verified_identity=item.get("verified_identity"),
            name=item.get("name"),
        )

    # ------------------------------------------------------------ frames

    def frame(self, connection_id: str, body: Any, now: datetime) -> dict[str, Any]:
        connection = self.connection(connection_id)
        if connection is None:
            raise FrameError("this connection has no session: reconnect", code="not_connected")
        # Every frame counts, a malformed one too: the limit is what protects the rest.
        if not self._within_rate(connection.visitor_id, now):
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

    def _within_rate(self, visitor_id: str, now: datetime) -> bool:
        """A fixed one-minute window per visitor, counted in the table (every Lambda
        instance sees the same count)."""
        window = int(now.timestamp()) // 60
        response = self.store.dynamodb.update_item(
            TableName=self.store.table,
            Key=to_item({"pk": session_pk(visitor_id), "sk": rate_sk(window)}),
            UpdateExpression="ADD frames :one SET expires_at = :expires",
            ExpressionAttributeValues=to_item({":one": 1, ":expires": (window + 2) * 60}),
            ReturnValues="UPDATED_NEW",
        )
        frames = int(from_item(response["Attributes"])["frames"])
        return frames <= self.settings.rate_limit_per_minute

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


def forget_connection(store: TimelineStore, visitor_id: str, connection_id: str) -> None:
    for pk, sk in (
        (connection_pk(connection_id), CONNECTION_SK),
        (session_pk(visitor_id), visitor_connection_sk(connection_id)),
    ):
        store.dynamodb.delete_item(TableName=store.table, Key=to_item({"pk": pk, "sk": sk}))


def open_connections(store: TimelineStore, visitor_id: str) -> list[str]:
    response = store.dynamodb.query(
        TableName=store.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :conn)",
        ExpressionAttributeValues=to_item({":pk": session_pk(visitor_id), ":conn": "CONN#"}),
        ConsistentRead=True,
        ProjectionExpression="connection_id",
    )
    return [str(from_item(item)["connection_id"]) for item in response.get("Items", [])]


# ---------------------------------------------------------------- outbound


class WebchatSender:
    """Pushes a reply to every open connection of the visitor (``PostToConnection``).

    Pushed to at least one: ``delivered`` (the dispatcher records it). None open: the
    reply is ``sent`` and waits on the timeline for the next connect; for a verified
    visitor a continuity job is queued with a delay (:func:`continue_by_email`).
    A connection API Gateway says is gone (410) is forgotten.
    """

    provider = PROVIDER

    def __init__(
        self,
        store: TimelineStore,
        settings: WebchatSettings,
        *,
        management: Callable[[], Any],
        sqs: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._management = management
        self._sqs = sqs

    def send(self, message: Message) -> SendResult:
        if message.recipient is None or message.recipient.kind is not IdentityKind.WEBCHAT:
            raise SendFailed("no_recipient", "the message has no web chat visitor", retryable=False)
        if not message.text and not message.parts:
            raise SendFailed("empty_message", "nothing to send", retryable=False)
        from botocore.exceptions import BotoCoreError, ClientError

        visitor_id = message.recipient.value
        # What the visitor sees is the message as it arrives: delivered.
        frame = message_frame(message.model_copy(update={"status": MessageStatus.DELIVERED}))
        pushed = 0
        for connection_id in open_connections(self.store, visitor_id):
            try:
                self._management().post_to_connection(
                    ConnectionId=connection_id, Data=frame.encode("utf-8")
                )
                pushed += 1
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in {"GoneException", "410"}:
                    forget_connection(self.store, visitor_id, connection_id)
                else:
                    logger.warning("push to a web chat connection failed", extra={"code": code})
            except BotoCoreError:
                logger.warning("push to a web chat connection failed", extra={"code": "network"})
        provider_message_id = f"{visitor_id}:{message.id}"
        if pushed:
            return SendResult(provider_message_id=provider_message_id, delivered=True)
        self._queue_continuity(message)
        return SendResult(provider_message_id=provider_message_id)

    def _queue_continuity(self, message: Message) -> None:
        if not self.settings.continuity_queue_url or self._sqs is None:
            return
        self._sqs().send_message(
            QueueUrl=self.settings.continuity_queue_url,
            MessageBody=json.dumps({"customer_id": message.customer_id, "message_id": message.id}),
            DelaySeconds=self.settings.email_delay_seconds,
        )


def management_client(connections_url: str) -> Any:
    """The ``apigatewaymanagementapi`` client of the WebSocket API's stage."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=connections_url,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}),
    )


def build_sender() -> WebchatSender:
    """The sender as template.yaml configures it for the dispatcher; clients made on use."""
    from threadline import aws
    from threadline.settings import store_settings
    from threadline.store import TimelineStore

    settings = webchat_settings()
    clients: dict[str, Any] = {}

    def management() -> Any:
        if "management" not in clients:
            clients["management"] = management_client(
                settings.connections_url or required_env("WEBCHAT_CONNECTIONS_URL")
            )
        return clients["management"]

    return WebchatSender(
        TimelineStore(store_settings()), settings, management=management, sqs=aws.sqs
    )


# ---------------------------------------------------------------- e-mail continuity


CONTINUITY_NOTE = "\n\n(You had left the chat, so this reply comes by e-mail.)"


def continuation_job(body: str) -> tuple[str, str]:
    try:
        document = json.loads(body)
        return str(document["customer_id"]), str(document["message_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("not a web chat continuity job") from exc


def continue_by_email(store: CustomerStore, customer_id: str, message_id: str) -> str | None:
    """Send a web chat reply the visitor has not seen by e-mail; the e-mail's message id.

    Only when the reply is still unseen (not delivered or read), the customer has an
    e-mail identity (every one on a profile is verified: unverified claims never
    link) and e-mail replies are allowed. The e-mail is queued as any reply is, so
    the timeline shows it (and the dispatcher checks consent and bounces again); its
    Idempotency-Key makes a redelivered job queue it once.
    """
    from threadline.outbound import EmailBlocked, OptedOut, SendMessageRequest

    message = store.get_message(customer_id, message_id)
    if message is None:
        survivor = store.merged_into(customer_id)
        message = store.get_message(survivor, message_id) if survivor else None
    if message is None or message.channel is not Channel.WEBCHAT:
        return None
    if message.status not in (MessageStatus.SENT, MessageStatus.QUEUED):
        return None  # seen meanwhile (delivered or read), or failed
    profile = store.resolve_profile(message.customer_id, consistent=True)
    if profile is None or not any(
        i.kind is IdentityKind.EMAIL for i in profile.customer.identities
    ):
        return None
    try:
        queued, _ = store.queue_message(
            profile.customer.id,
            SendMessageRequest(
                text=(message.text or "")[: MAX_TEXT - len(CONTINUITY_NOTE)] + CONTINUITY_NOTE,
                channel=Channel.EMAIL,
                author_role=message.author_role.value,
                author_id=message.author_id,
            ),
            idempotency_key=f"webchat-continuity-{message.id}",
        )
    except (OptedOut, EmailBlocked) as refused:
        logger.info("web chat reply not continued by e-mail", extra={"code": refused.code})
        return None
    logger.info("web chat reply continued by e-mail", extra={"message_id": queued.id})
    return queued.id
