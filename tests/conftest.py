"""Helpers shared by every test layer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
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


def _template_value(value: Any, parameters: dict[str, Any]) -> str:
    """A parameter reference becomes its default; anything else a placeholder name."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters:
        return str(parameters[value["Ref"]].get("Default", ""))
    return value if isinstance(value, str) else "placeholder"


def import_handler_cleanly(logical_id: str, then: str = "") -> subprocess.CompletedProcess[str]:
    """Import a function's handler module in a clean interpreter (``python -I``, as
    Lambda and `make bench` do) given just its template variables, then run ``then``.

    Values are placeholders (nothing is called at import), but the names are exactly
    the template's, so a module that reads a variable the template does not set at
    import time fails.
    """
    template = load_template()
    properties = serverless_functions()[logical_id]
    variables = {
        **(
            (template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get(
                "Variables"
            )
            or {}
        ),
        **((properties.get("Environment") or {}).get("Variables") or {}),
    }
    parameters = template.get("Parameters", {})
    env = {name: _template_value(value, parameters) for name, value in variables.items()}
    path = [str(REPO_ROOT / properties["CodeUri"]), str(REPO_ROOT / "shared")]
    env.update(
        PATH=os.environ.get("PATH", ""),
        PYTHONPATH=os.pathsep.join(path),
        AWS_DEFAULT_REGION="us-east-1",
    )
    module = properties["Handler"].rpartition(".")[0]
    code = f"import sys; sys.path[:0] = {path!r}; import {module}\n{then}"
    return subprocess.run(
        [sys.executable, "-I", "-c", code], env=env, capture_output=True, text=True, check=False
    )
