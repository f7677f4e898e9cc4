"""What the API's routers share, built once per Lambda environment (on first use).

Each store's module is imported by the first call that builds it: the routers that a
request does not reach (threadline.api.resolver) then cost nothing at cold start.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler.openapi.params import Header

from threadline.settings import required_env, store_settings

if TYPE_CHECKING:
    from threadline.customers import CustomerStore
    from threadline.privacy import PrivacyService
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
    from threadline.customers import CustomerStore

    return CustomerStore(store_settings())


@cache
def subscription_store() -> SubscriptionStore:
    from threadline.subscriptions import SubscriptionStore

    return SubscriptionStore(store_settings().table_name)


@cache
def privacy_service() -> PrivacyService:
    from threadline.privacy import PrivacyService, PrivacySettings

    return PrivacyService(customer_store(), PrivacySettings.from_env())


@cache
def private_webhook_targets_allowed() -> bool:
    """Whether subscriptions may point at private addresses (the local stack's receivers)."""
    return required_env("WEBHOOK_ALLOW_PRIVATE_TARGETS") == "true"


@cache
def webhook_delivery_queue_url() -> str:
    """The FIFO queue a redelivery puts failed webhook deliveries back on."""
    return required_env("WEBHOOK_DELIVERY_QUEUE_URL")
