"""Typed settings read from the function's environment (set by template.yaml).

Every variable read here must be set in template.yaml for the functions that use
it; a contract test checks that, and the local stack gives each function exactly
its template environment so a missing one fails locally too.
"""

from __future__ import annotations

import os
from functools import cache

from pydantic import ConfigDict, Field

from threadline.model import Model


def required_env(name: str) -> str:
    try:
        return os.environ[name]
    except KeyError:
        raise RuntimeError(f"environment variable {name} is not set (see template.yaml)") from None


def api_base_url(variable: str, default: str) -> str:
    """A provider API's root URL: ``default`` (the real API) unless ``variable`` names
    another. Each is a template parameter (``<Provider>ApiBaseUrl``) so a deployment
    can route through a proxy; the local stack points them at its stand-in."""
    return (os.environ.get(variable) or default).rstrip("/")


class StoreSettings(Model):
    model_config = ConfigDict(frozen=True)

    table_name: str
    raw_bucket: str
    raw_inline_max_bytes: int = Field(default=0, ge=0)
    message_retention_days: int = Field(default=0, ge=0)
    """Messages expire (DynamoDB TTL) this many days after they are written; 0 keeps them."""

    @classmethod
    def from_env(cls) -> StoreSettings:
        return cls(
            table_name=required_env("TABLE_NAME"),
            raw_bucket=required_env("RAW_BUCKET"),
            # Optional: only ingesting functions store raw payloads; readers need not set it.
            raw_inline_max_bytes=int(os.environ.get("RAW_INLINE_MAX_BYTES", "0")),
            # Optional: set (template parameter MessageRetentionDays) where messages are written.
            message_retention_days=int(os.environ.get("MESSAGE_RETENTION_DAYS", "0")),
        )


class WebhookSettings(Model):
    model_config = ConfigDict(frozen=True)

    public_base_url: str | None = None

    @classmethod
    def from_env(cls) -> WebhookSettings:
        return cls(public_base_url=os.environ.get("PUBLIC_BASE_URL") or None)


@cache
def store_settings() -> StoreSettings:
    return StoreSettings.from_env()


@cache
def webhook_settings() -> WebhookSettings:
    return WebhookSettings.from_env()
