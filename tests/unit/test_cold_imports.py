"""What each handler's cold import loads, checked without timing anything.

`make bench` measures the cold-import ratios (issue 12: <= 1.5x `import boto3`, <= 1.3x
for webhook handlers); these tests pin down the reasons the handlers meet them, so a
module-level import that undoes one fails here, on any machine, instead of drifting a
benchmark. Each handler is imported as the bench and Lambda do: `python -I`, only its
template environment (tests.conftest.import_handler_cleanly).
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from bench.run import WEBHOOK_IMPORT_TARGET, import_target
from tests.conftest import import_handler_cleanly, serverless_functions

FUNCTIONS = serverless_functions()
WEBHOOK_FUNCTIONS = sorted(
    logical_id
    for logical_id, properties in FUNCTIONS.items()
    if import_target(properties) == WEBHOOK_IMPORT_TARGET
)

# Loaded by no handler at import: provider SDKs and their HTTP stack, AWS clients and the
# X-Ray SDK are built on first use; powertools' OpenAPI models only for /v1/openapi.json.
NEVER_AT_IMPORT = (
    "twilio",
    "slack_sdk",
    "phonenumbers.geocoder",
    "boto3",
    "urllib3",
    "threadline.http",
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler.openapi.models",
)
# Webhook handlers (the tighter target): nothing of asyncio (and ssl under it), which
# powertools' batch utility and its event_handler package load.
NEVER_IN_WEBHOOK_HANDLERS = (
    "asyncio",
    "ssl",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.event_handler",
)
# The API includes its routers on the first request that needs them
# (threadline.api.resolver), and each router brings its part of the domain.
API_ROUTERS = tuple(
    f"threadline.api.{name}"
    for name in ("customers", "messages", "conversations", "subscriptions", "privacy", "identities")
)
NEVER_IN_THE_API = (
    *API_ROUTERS,
    "threadline.customers",
    "threadline.subscriptions",
    "threadline.privacy",
    "threadline.crm_webhooks",
    "threadline.media",
)

REPORT = """
import json, sys
from pydantic import BaseModel

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

built = sorted(
    f"{cls.__module__}.{cls.__qualname__}"
    for cls in set(subclasses(BaseModel))
    if cls.__module__.startswith("threadline") and cls.__pydantic_complete__
)
print(json.dumps({"modules": sorted(sys.modules), "built": built}))
"""


@cache
def loaded_by(logical_id: str) -> dict[str, list[str]]:
    """The modules in sys.modules and the threadline models built after the import."""
    result = import_handler_cleanly(logical_id, REPORT)
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout.splitlines()[-1])
    return report


def present(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages included) are among ``modules``."""
    return [name for name in names if any(m == name or m.startswith(f"{name}.") for m in modules)]


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_no_handler_loads_an_sdk_or_client_at_import(logical_id):
    assert present(loaded_by(logical_id)["modules"], NEVER_AT_IMPORT) == []


@pytest.mark.parametrize("logical_id", WEBHOOK_FUNCTIONS)
def test_webhook_handlers_load_no_asyncio(logical_id):
    assert present(loaded_by(logical_id)["modules"], NEVER_IN_WEBHOOK_HANDLERS) == []


def test_the_api_loads_no_router_until_a_request_needs_it():
    assert present(loaded_by("ApiFunction")["modules"], NEVER_IN_THE_API) == []


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_no_handler_builds_a_domain_model_at_import(logical_id):
    # threadline.model.Model defers every validator to first use; the settings read at
    # init (so a missing one fails the cold start) and the one constant model,
    # outcomes.SYSTEM, are the only models built by an import.
    allowed = {
        "threadline.settings.StoreSettings",
        "threadline.privacy_jobs.PrivacySettings",
        "threadline.channels.webchat.settings.WebchatSettings",
        "threadline.schema.ClosedBy",
    }
    assert set(loaded_by(logical_id)["built"]) <= allowed


def test_the_webhook_list_is_the_templates():
    # The selection above follows the bench's rule (routes under /webhooks/); a template
    # that lost its webhook events would make the webhook test vacuous.
    assert {"TwilioMessagingFunction", "MetaWebhookFunction", "SlackEventsFunction"} <= set(
        WEBHOOK_FUNCTIONS
    )
