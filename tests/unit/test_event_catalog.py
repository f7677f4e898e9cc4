"""The event catalog: one committed schema per published type, and docs/events.md shows
an example of each that validates against it; the design's types not yet published
are marked planned there."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.conftest import REPO_ROOT
from threadline.events import EVENT_MODELS

SCHEMA_DIR = REPO_ROOT / "infra" / "schemas"
DOC = (REPO_ROOT / "docs" / "events.md").read_text(encoding="utf-8")
# The design's list of detail-types (design.md, "Events for CRMs").
DESIGN_TYPES = (
    "message.received",
    "message.sent",
    "message.status_changed",
    "conversation.opened",
    "conversation.channel_switched",
    "conversation.closed",
    "customer.created",
    "customer.identity_linked",
    "customer.merged",
    "customer.erased",
)
PUBLISHED = {model.model_fields["type"].default for model in EVENT_MODELS}


def doc_examples() -> list[dict]:
    blocks = re.findall(r"```json\n(.*?)\n```", DOC, flags=re.DOTALL)
    return [json.loads(block) for block in blocks]


EXAMPLES = doc_examples()


def test_every_published_type_has_a_committed_schema_and_a_documented_example():
    schemas = {
        p.name.removeprefix("event.").removesuffix(".v1.json")
        for p in SCHEMA_DIR.glob("event.*.v1.json")
    }
    assert schemas == PUBLISHED
    assert sorted(e["detail-type"] for e in EXAMPLES) == sorted(PUBLISHED)


@pytest.mark.parametrize("event_type", DESIGN_TYPES)
def test_every_design_type_is_in_the_catalog_published_or_planned(event_type):
    row = next((line for line in DOC.splitlines() if line.startswith(f"| `{event_type}` |")), None)
    assert row is not None, f"{event_type} is missing from docs/events.md"
    assert (event_type in PUBLISHED) != ("planned" in row)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["detail-type"])
def test_documented_examples_validate_against_the_committed_schemas(example):
    schema = json.loads(
        (SCHEMA_DIR / f"event.{example['detail-type']}.v1.json").read_text(encoding="utf-8")
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    validator.validate(example["detail"])
    assert example["detail"]["type"] == example["detail-type"]
    assert example["source"] == "threadline"


def test_subscriptions_accept_exactly_the_published_types():
    # The subscription API keeps its own list so the webhook workers need not import
    # the event models at cold start; this keeps the two from drifting apart.
    from threadline.subscriptions import KNOWN_EVENT_TYPES

    assert set(KNOWN_EVENT_TYPES) == PUBLISHED
