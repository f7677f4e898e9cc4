"""The committed JSON Schema files are exactly what the models produce."""

from pathlib import Path

import pytest

from threadline.schema_export import render, schema_documents

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "infra" / "schemas"


@pytest.mark.parametrize("name", sorted(schema_documents()))
def test_committed_schema_matches_model(name):
    committed = SCHEMA_DIR / name
    assert committed.exists(), f"{name} missing: run `make schemas`"
    assert committed.read_text(encoding="utf-8") == render(schema_documents()[name]), (
        f"{name} is stale: run `make schemas` and commit the result"
    )


def test_no_stray_schema_files():
    expected = set(schema_documents())
    present = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert present == expected, "remove schema files no model exports"
