"""The local stack's stand-in for HTTP API's JWT authorizer (``THREADLINE_API_AUTH=jwt``).

Deployed with ``ApiAuth=jwt``, API Gateway checks the access token's signature, ``iss``,
``aud`` (or Cognito's ``client_id``), ``exp`` and the route's scopes before the API
runs. Locally the stack mints tokens itself (``GET /_dev/token?scope=...``, HS256 with
a key made at start) and checks them the same way, with the scopes template.yaml's
``UseJwtAuth`` routes ask for, per method.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LOCAL_ISSUER = "http://127.0.0.1/threadline-local"
LOCAL_AUDIENCE = "threadline-local"
TOKEN_SECONDS = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def route_scopes(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Method -> scopes (any one suffices) of the template's JWT routes under /v1."""
    found: dict[str, list[str]] = {}
    for resource in resources.values():
        properties = resource.get("Properties") or {}
        if (
            resource.get("Type") != "AWS::ApiGatewayV2::Route"
            or properties.get("AuthorizationType") != "JWT"
        ):
            continue
        method, _, _path = str(properties["RouteKey"]).partition(" ")
        found[method.upper()] = [str(s) for s in properties.get("AuthorizationScopes") or []]
    return found


@dataclass
class LocalJwtAuthorizer:
    """Mints and checks HS256 access tokens like the deployed JWT authorizer."""

    scopes_by_method: Mapping[str, Sequence[str]]
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    issuer: str = LOCAL_ISSUER
    audience: str = LOCAL_AUDIENCE

    def mint(self, scopes: Sequence[str], *, seconds: int = TOKEN_SECONDS) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "local-crm",
            "iat": now,
            "exp": now + seconds,
            "scope": " ".join(scopes),
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def refusal(self, authorization: str, method: str) -> int | None:
        """None when the request may pass; else API Gateway's status (401 or 403)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            return 401
        header, payload, signature = token.split(".")
        expected = hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(signature), expected):
                return 401
            claims = json.loads(_unb64(payload))
        except ValueError:
            return 401
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if (
            claims.get("iss") != self.issuer
            or self.audience not in [*audiences, claims.get("client_id")]
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] <= time.time()
        ):
            return 401
        granted = set(str(claims.get("scope") or "").split())
        needed = self.scopes_by_method.get(method.upper())
        if needed is None or not granted & set(needed):
            # HEAD/OPTIONS reach the IAM route when deployed: no token opens them.
            return 403
        return None
