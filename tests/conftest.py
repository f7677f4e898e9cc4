"""Helpers shared by every test layer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


def load_template() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(TEMPLATE_PATH))


def serverless_functions() -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every AWS::Serverless::Function in template.yaml."""
    resources = load_template()["Resources"]
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def load_handler_module(code_uri: str, module: str = "app") -> ModuleType:
    """Import a function's handler module from its CodeUri, under a unique name.

    Every function's module is called ``app`` (Lambda's convention), so tests load
    each under its own name to keep them apart in sys.modules.
    """
    path = REPO_ROOT / code_uri / f"{module}.py"
    name = f"handler_{Path(code_uri).name}_{module}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded
