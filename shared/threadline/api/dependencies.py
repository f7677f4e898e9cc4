"""What the API's routers share, built once per Lambda environment (on first use)."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Header

from threadline.customers import CustomerStore
from threadline.privacy import PrivacyService, PrivacySettings
from threadline.settings import required_env, store_settings
from threadline.subscriptions import SubscriptionStore

# The Idempotency-Key header of the routes that write a message (a note; replies have
# their own wording in messages.py).
NoteIdempotencyKey = Annotated[
    str | None,
    Header(
        alias="idempotency-key",
        max_length=255,
        description="retrying with the same key returns the first note and writes once",
    ),
]


@cache
def customer_store() -> CustomerStore:
    return CustomerStore(store_settings())


@cache
def subscription_store() -> SubscriptionStore:
    return SubscriptionStore(store_settings().table_name)


@cache
def privacy_service() -> PrivacyService:
    return PrivacyService(customer_store(), PrivacySettings.from_env())


@cache
def private_webhook_targets_allowed() -> bool:
    """Whether subscriptions may point at private addresses (the local stack's receivers)."""
    return required_env("WEBHOOK_ALLOW_PRIVATE_TARGETS") == "true"


@cache
def webhook_delivery_queue_url() -> str:
    """The FIFO queue a redelivery puts failed webhook deliveries back on."""
    return required_env("WEBHOOK_DELIVERY_QUEUE_URL")
