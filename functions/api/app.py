"""The /v1 REST API for CRMs and helpdesks: the routers of threadline.api, one resolver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from threadline.api.dependencies import (
    customer_store,
    private_webhook_targets_allowed,
    webhook_delivery_queue_url,
)
from threadline.api.resolver import app, openapi_document
from threadline.api_body import refuse_unreadable_body
from threadline.logs import logger
from threadline.settings import store_settings
from threadline.telemetry import traced

if TYPE_CHECKING:
    from threadline.customers import CustomerStore

__all__ = ["app", "lambda_handler", "openapi_document", "store"]

# Read at init rather than on the first request, so a setting missing from the template
# fails the cold start instead of a customer's call. The stores themselves (and the
# domain modules behind them) are built by the first request that needs one.
store_settings()
private_webhook_targets_allowed()
webhook_delivery_queue_url()


# The customer store the routers use, built on first use by the module __getattr__ below
# (PEP 562): declared, not assigned.
store: CustomerStore


def __getattr__(name: str) -> CustomerStore:
    if name == "store":
        return customer_store()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@traced
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Bodies no handler could store (too deep, lone surrogates, 1e400) answer 400 here.
    refused = refuse_unreadable_body(event)
    if refused is not None:
        return refused
    return app.resolve(event, context)
