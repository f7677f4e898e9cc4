"""Reading template.yaml: CloudFormation YAML, parameters, and SAM's Globals.

The loader is PyYAML's safe loader plus CloudFormation's short tags. cfn-lint's
decoder would do too, but it costs a second of imports on every `make dev` and
buys line numbers the local stack never shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVERLESS_FUNCTION = "AWS::Serverless::Function"


class TemplateError(ValueError):
    """The template cannot be run locally (it would not deploy either, usually)."""


class _CfnLoader(yaml.SafeLoader):
    """Safe loader that keeps CloudFormation's view of scalars and knows its tags."""


# CloudFormation reads `2010-09-09` as a string, not a date; so must we.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise TemplateError(f"unsupported node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # The short form is "Resource.Attribute"; attributes may contain dots themselves.
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def parse_template_text(text: str) -> dict[str, Any]:
    """A template's body from YAML (or JSON, which is YAML) text."""
    body = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), dict):
        raise TemplateError("not a CloudFormation template: no Resources section")
    return body


@dataclass(frozen=True)
class Template:
    """A parsed template and the directory its relative CodeUri paths start from."""

    path: Path
    body: Mapping[str, Any]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def parameters(self) -> Mapping[str, Mapping[str, Any]]:
        return _section(self.body, "Parameters")

    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]:
        return _section(self.body, "Resources")

    @property
    def conditions(self) -> Mapping[str, Any]:
        return _section(self.body, "Conditions")

    @property
    def mappings(self) -> Mapping[str, Any]:
        return _section(self.body, "Mappings")

    def globals_for(self, section: str) -> Mapping[str, Any]:
        """SAM's Globals for one resource kind (``Function``, ``HttpApi``, ...)."""
        return _section(_section(self.body, "Globals"), section)

    def resource(self, logical_id: str) -> Mapping[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"no resource {logical_id!r} in {self.path.name}") from None

    def resource_type(self, logical_id: str) -> str:
        return str(self.resource(logical_id).get("Type", ""))

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's Properties, with SAM's Globals merged in for serverless ones."""
        resource = self.resource(logical_id)
        properties = dict(resource.get("Properties") or {})
        kind = str(resource.get("Type", ""))
        if kind.startswith("AWS::Serverless::"):
            global_properties = self.globals_for(kind.removeprefix("AWS::Serverless::"))
            properties = merge_globals(global_properties, properties)
        return properties

    def logical_ids_of_type(self, *kinds: str) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in kinds
        ]

    def parameter_values(self, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Every parameter's effective value: the override if given, else its default.

        Values are checked against the parameter's constraints, as CloudFormation
        would check them before deploying anything.
        """
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.parameters))
        if unknown:
            raise TemplateError(f"unknown parameter(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in self.parameters.items():
            if name in overrides:
                raw: Any = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(
                    f"parameter {name} has no default: pass --parameter {name}=VALUE"
                )
            values[name] = _checked_parameter(name, spec, raw)
        return values


def load_template(path: str | Path) -> Template:
    """Parse ``path`` into a :class:`Template`."""
    template_path = Path(path).resolve()
    try:
        text = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {template_path}: {exc}") from exc
    try:
        body = parse_template_text(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{template_path.name} is not valid YAML: {exc}") from exc
    return Template(template_path, body)


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rule: maps merge (local keys win), lists append, scalars override."""
    if isinstance(global_value, Mapping) and isinstance(local_value, Mapping):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in merged else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def _section(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = body.get(name) or {}
    if not isinstance(section, Mapping):
        raise TemplateError(f"{name} must be a mapping")
    return section


def _checked_parameter(name: str, spec: Mapping[str, Any], raw: Any) -> Any:
    kind = str(spec.get("Type", "String"))
    if kind in {"CommaDelimitedList", "List<Number>"} or kind.startswith("List<"):
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return [str(item).strip() for item in items]
    text = "true" if raw is True else "false" if raw is False else str(raw)
    allowed = spec.get("AllowedValues")
    if allowed is not None and text not in {str(value) for value in allowed}:
        raise TemplateError(f"parameter {name}={text!r} is not one of {list(allowed)}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), text) is None:
        raise TemplateError(f"parameter {name}={text!r} does not match {pattern}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name} is shorter than {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name} is longer than {spec['MaxLength']}")
    if kind == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"parameter {name}={text!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={text} is below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={text} is above {spec['MaxValue']}")
    return text
