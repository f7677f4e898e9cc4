"""Session tokens (signed, short-lived, naming the visitor) and ``user_hash`` checks.

Identity verification is the scheme Intercom, Front and Chatwoot use: the site's
backend computes ``user_hash = hex(HMAC-SHA256(identity secret, email or
external_id))``; :func:`user_hash_matches` checks it in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from threadline.channels.webchat.settings import VISITOR_ID
from threadline.errors import SignatureInvalid


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
