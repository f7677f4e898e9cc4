"""The template's functions, as the local runtime needs them (SAM translated, resolved)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.intrinsics import NO_VALUE, to_environment_value
from devstack.resources import StackResources
from devstack.template import LAMBDA_FUNCTION, Template, TemplateError, local_code_path

# Lambda's defaults when the function does not say.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_SECONDS = 3.0
LAYER_TYPE = "AWS::Lambda::LayerVersion"


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
    warnings: tuple[str, ...] = field(default=())

    @property
    def python_path(self) -> list[str]:
        """Lambda's import order: the function's code first, then its layers."""
        return [str(self.code_dir), *(str(path) for path in self.layer_dirs)]


def load_functions(stack: StackResources) -> dict[str, FunctionSpec]:
    """Every ``AWS::Lambda::Function`` of the template, ready to run."""
    template = stack.template
    return {
        logical_id: load_function(stack, logical_id)
        for logical_id in template.logical_ids_of_type(LAMBDA_FUNCTION)
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
    code_uri = local_code_path(raw.get("Code"))
    if code_uri is None:
        raise TemplateError(f"{logical_id}: CodeUri must be a local directory locally")
    layer_dirs, warnings = _layer_dirs(template, raw.get("Layers") or [])
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
        warnings=tuple(warnings),
    )


def template_variables(stack: StackResources, properties: Mapping[str, Any]) -> dict[str, str]:
    """``Environment.Variables`` with intrinsics resolved, as strings."""
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
        if not isinstance(logical_id, str) or template.resource_type(logical_id) != LAYER_TYPE:
            warnings.append(
                f"layer {layer!r} is not a layer of this template; not available locally"
            )
            continue
        resource = template.resource(logical_id)
        content = local_code_path((resource.get("Properties") or {}).get("Content"))
        if content is None:
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


def function_named(value: Any, functions: Mapping[str, FunctionSpec]) -> str | None:
    """The function a translated property names (``!Ref Fn``, ``!GetAtt Fn.Arn``), if any."""
    if isinstance(value, Mapping):
        target = value.get("Ref")
        if target is None:
            get_att = value.get("Fn::GetAtt")
            target = get_att[0] if isinstance(get_att, list) and get_att else None
        if isinstance(target, str) and target in functions:
            return target
    return None


@dataclass(frozen=True)
class EventSource:
    """A translated resource that feeds a function: a SAM event, after the translator.

    ``event`` is the SAM event's name where the translator kept it in the logical id
    (``PublisherFunctionTableStream`` -> ``TableStream``), else the logical id.
    """

    logical_id: str
    function: str
    event: str
    properties: Mapping[str, Any]  # resolved; empty when they could not be
    error: str | None = None


def event_sources(
    stack: StackResources,
    functions: Mapping[str, FunctionSpec],
    resource_type: str,
    names_function: Any,
) -> list[EventSource]:
    """The resources of ``resource_type`` whose ``names_function(properties)`` is a function.

    An event source whose properties do not resolve is kept with its error, so the
    console can say why it is not fed while the others still run.
    """
    found = []
    for logical_id in stack.template.logical_ids_of_type(resource_type):
        if logical_id not in stack:
            continue
        raw = stack.template.properties(logical_id)
        function = function_named(names_function(raw), functions)
        if function is None:
            continue
        event = logical_id.removeprefix(function) or logical_id
        try:
            found.append(EventSource(logical_id, function, event, stack.resolve(raw)))
        except TemplateError as exc:
            found.append(EventSource(logical_id, function, event, {}, str(exc)))
    return found
