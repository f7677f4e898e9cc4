"""Write the JSON Schema of every exported model: ``python -m threadline.schema_export DIR``.

The files are committed (infra/schemas/) so consumers can validate without Python;
tests/unit/test_schema_files.py fails when a model changes and the files were not
regenerated.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from threadline.events import EVENT_MODELS
from threadline.schema import EXPORTED_MODELS, SCHEMA_VERSION

SCHEMA_ID_BASE = "https://threadline.dev/schemas"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every exported model."""
    documents: dict[str, dict[str, Any]] = {}
    models: dict[str, type[BaseModel]] = dict(EXPORTED_MODELS)
    for event_model in EVENT_MODELS:
        event_type = event_model.model_fields["type"].default
        models[f"event.{event_type}"] = event_model
    for stem, model in models.items():
        name = f"{stem}.v{SCHEMA_VERSION}.json"
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_ID_BASE}/{name}",
            **model.model_json_schema(mode="serialization"),
        }
        documents[name] = document
    return documents


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "infra/schemas")
    target.mkdir(parents=True, exist_ok=True)
    for name, document in schema_documents().items():
        (target / name).write_text(render(document), encoding="utf-8")
        print(f"wrote {target / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
