"""Web chat's settings (what template.yaml configures), limits and visitor ids."""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from functools import cache

from pydantic import ConfigDict, Field

from threadline.model import Model
from threadline.schema import Identity, IdentityKind

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


def visitor_identity(visitor_id: str) -> Identity:
    return Identity(kind=IdentityKind.WEBCHAT, value=visitor_id)


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(18)


# ---------------------------------------------------------------- settings


class WebchatSettings(Model):
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
