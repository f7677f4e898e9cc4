"""The template's functions, as the local runtime needs them (Globals merged, resolved)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.intrinsics import NO_VALUE, to_environment_value
from devstack.resources import StackResources
from devstack.template import SERVERLESS_FUNCTION, Template, TemplateError

# Lambda's defaults when neither the function nor Globals say.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_SECONDS = 3.0
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")


@dataclass(frozen=True)
class FunctionEvent:
    """One entry of a function's ``Events``, its properties resolved.

    The gateway reads the ``HttpApi`` ones; pollers for ``SQS`` and ``DynamoDB``
    events (their ``Queue`` / ``Stream`` ARNs resolved here) can read the rest.
    """

    name: str
    type: str
    properties: Mapping[str, Any]
    # The unresolved properties: which resource an ApiId or Stream names.
    raw_properties: Mapping[str, Any]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    memory_mb: int
    timeout_seconds: float
    variables: Mapping[str, str]
    events: tuple[FunctionEvent, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    @property
    def python_path(self) -> list[str]:
        """Lambda's import order: the function's code first, then its layers."""
        return [str(self.code_dir), *(str(path) for path in self.layer_dirs)]


def load_functions(stack: StackResources) -> dict[str, FunctionSpec]:
    """Every ``AWS::Serverless::Function`` of the template, ready to run."""
    template = stack.template
    return {
        logical_id: load_function(stack, logical_id)
        for logical_id in template.logical_ids_of_type(SERVERLESS_FUNCTION)
        if logical_id in stack
    }


def load_function(stack: StackResources, logical_id: str) -> FunctionSpec:
    template = stack.template
    raw = template.properties(logical_id)
    handler = str(stack.resolve(raw.get("Handler", "")))
    runtime = str(stack.resolve(raw.get("Runtime", "")))
    if not handler:
        raise TemplateError(f"{logical_id} has no Handler")
    if runtime and not runtime.startswith("python"):
        raise TemplateError(f"{logical_id}: the local stack runs Python functions, not {runtime}")
    code_uri = stack.resolve(raw.get("CodeUri", "."))
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}: CodeUri must be a local directory locally")
    layer_dirs, warnings = _layer_dirs(template, raw.get("Layers") or [])
    events = _events(stack, logical_id, raw.get("Events") or {}, warnings)
    return FunctionSpec(
        logical_id=logical_id,
        name=stack.physical_id(logical_id),
        arn=stack.arn(logical_id),
        handler=handler,
        runtime=runtime,
        code_dir=(template.root / code_uri).resolve(),
        layer_dirs=layer_dirs,
        memory_mb=int(stack.resolve(raw.get("MemorySize", DEFAULT_MEMORY_MB))),
        timeout_seconds=float(stack.resolve(raw.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
        variables=template_variables(stack, raw),
        events=tuple(events),
        warnings=tuple(warnings),
    )


def _events(
    stack: StackResources, logical_id: str, events: Mapping[str, Any], warnings: list[str]
) -> list[FunctionEvent]:
    found = []
    for name, event in events.items():
        raw = event.get("Properties") or {}
        try:
            properties = stack.resolve(raw)
        except TemplateError as exc:
            # An event source the local stack cannot feed must not stop the others.
            warnings.append(f"event {name} of {logical_id}: {exc}")
            properties = {}
        found.append(FunctionEvent(str(name), str(event.get("Type", "")), properties, raw))
    return found


def template_variables(stack: StackResources, properties: Mapping[str, Any]) -> dict[str, str]:
    """``Environment.Variables`` (Globals merged) with intrinsics resolved, as strings."""
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    resolved: dict[str, str] = {}
    for name, value in variables.items():
        result = stack.resolve(value)
        if result is NO_VALUE or result is None:
            continue
        resolved[str(name)] = to_environment_value(result)
    return resolved


def _layer_dirs(template: Template, layers: list[Any]) -> tuple[tuple[Path, ...], list[str]]:
    """Local directories of the layers a function uses, as sam build would lay them out."""
    found: list[Path] = []
    warnings: list[str] = []
    for layer in layers:
        logical_id = layer.get("Ref") if isinstance(layer, Mapping) else None
        if not isinstance(logical_id, str) or template.resource_type(logical_id) not in LAYER_TYPES:
            warnings.append(
                f"layer {layer!r} is not a layer of this template; not available locally"
            )
            continue
        resource = template.resource(logical_id)
        content = (resource.get("Properties") or {}).get("ContentUri")
        if not isinstance(content, str):
            warnings.append(f"layer {logical_id} has no local ContentUri; not available locally")
            continue
        directory = (template.root / content).resolve()
        # With a BuildMethod, sam build puts ContentUri's files under python/ in the
        # layer zip (so /opt/python/<package>); without one, the directory is used as
        # is, where Python code must already sit in python/.
        has_build = bool((resource.get("Metadata") or {}).get("BuildMethod"))
        if not has_build and (directory / "python").is_dir():
            directory = directory / "python"
        found.append(directory)
    return tuple(found), warnings
