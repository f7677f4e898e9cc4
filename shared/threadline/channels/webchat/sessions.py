"""``POST /webchat/v1/sessions``: open or renew a visitor's session.

A returning visitor who sends its ``visitor_id`` and its (recently expired) token
keeps its timeline. A valid ``user_hash`` links the visitor to the customer who owns
the e-mail or external id it vouches for; without one, a claimed e-mail is kept on
the session as an unverified claim and never links.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field, ValidationError, field_validator

from threadline.channels.webchat.settings import (
    CONNECTION_LIFETIME,
    MAX_SESSION_BODY_BYTES,
    RENEWAL_WINDOW,
    VISITOR_ID,
    WebchatSettings,
    new_visitor_id,
    visitor_identity,
)
from threadline.channels.webchat.tokens import (
    InvalidToken,
    read_token,
    sign_token,
    user_hash_matches,
)
from threadline.dal.base import Put
from threadline.errors import MalformedRequest, SignatureInvalid, ThreadlineError
from threadline.identity import canonical_email
from threadline.items import webchat_session_item
from threadline.logs import logger
from threadline.model import Model
from threadline.schema import Identity, IdentityKind, utc_now

if TYPE_CHECKING:
    from threadline.customers import CustomerStore


class SessionRequest(Model):
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


class SessionGranted(Model):
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
        item = webchat_session_item(
            visitor_id,
            name=request.name,
            verified=subject is not None,
            verified_identity=verified_identity,
            claimed_email=request.email if subject is None else None,
            claimed_external_id=request.external_id if subject is None else None,
            expires=int((expires + CONNECTION_LIFETIME).timestamp()),
        )
        self.store.data.write([Put(item)])
