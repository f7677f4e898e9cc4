"""CloudFormation intrinsic functions, resolved against the local stack.

Resolution needs three things: parameter values, pseudo parameters (region,
account, stack name) and, for ``Ref``/``Fn::GetAtt`` to resources, what was
created for them. The last comes through :class:`ResourceLookup`, so this module
knows nothing about boto3 and unit tests can resolve with a dict.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devstack.template import Template, TemplateError


class _NoValue:
    """``AWS::NoValue``: the key or list item holding it disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class ResourceLookup(Protocol):
    """What ``!Ref`` and ``!GetAtt`` of a resource return."""

    def ref(self, logical_id: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...


@dataclass(frozen=True)
class PseudoParameters:
    region: str
    account_id: str
    stack_name: str
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"

    @property
    def stack_id(self) -> str:
        return (
            f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:"
            f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
        )

    def as_refs(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
        }


class Resolver:
    """Turns template values into plain JSON-like values."""

    def __init__(
        self,
        template: Template,
        parameters: Mapping[str, Any],
        pseudo: PseudoParameters,
        resources: ResourceLookup | None = None,
    ) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.pseudo = pseudo
        self.resources = resources
        self._conditions: dict[str, bool] = {}

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its result."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if isinstance(value, Mapping):
            if len(value) == 1:
                (key, argument), *_ = value.items()
                if key == "Ref":
                    return self.ref(str(argument))
                if key == "Condition" and isinstance(argument, str):
                    return self.condition(argument)
                if isinstance(key, str) and key.startswith("Fn::"):
                    return self._function(key, argument)
            resolved = {str(k): self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        return value

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self.pseudo.as_refs()
        if name in pseudo:
            return pseudo[name]
        if name in self.template.resources:
            return self._lookup().ref(name)
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.template.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        return self._lookup().get_att(logical_id, attribute)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self.template.conditions:
                raise TemplateError(f"no condition named {name}")
            self._conditions[name] = bool(self.resolve(self.template.conditions[name]))
        return self._conditions[name]

    def _lookup(self) -> ResourceLookup:
        if self.resources is None:
            raise TemplateError("resources are referenced before any were created")
        return self.resources

    def _function(self, name: str, argument: Any) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise TemplateError(f"{name} is not supported by the local stack")
        return handler(self, argument)


def _get_att(resolver: Resolver, argument: Any) -> Any:
    if isinstance(argument, str):
        logical_id, _, attribute = argument.partition(".")
    else:
        logical_id, attribute = str(argument[0]), str(resolver.resolve(argument[1]))
    return resolver.get_att(logical_id, attribute)


def _sub(resolver: Resolver, argument: Any) -> str:
    if isinstance(argument, list):
        text, variables = str(argument[0]), resolver.resolve(argument[1])
    else:
        text, variables = str(argument), {}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            # ${!Literal} is CloudFormation's escape for a literal ${Literal}.
            return "${" + name[1:] + "}"
        if name in variables:
            return _to_text(variables[name])
        if name in resolver.parameters or name.startswith("AWS::"):
            return _to_text(resolver.ref(name))
        if "." in name:
            logical_id, _, attribute = name.partition(".")
            return _to_text(resolver.get_att(logical_id, attribute))
        return _to_text(resolver.ref(name))

    return _SUB_VARIABLE.sub(substitute, text)


def _join(resolver: Resolver, argument: Any) -> str:
    delimiter, items = argument
    values = resolver.resolve(items)
    return str(delimiter).join(_to_text(item) for item in values)


def _select(resolver: Resolver, argument: Any) -> Any:
    index, items = resolver.resolve(argument)
    return items[int(index)]


def _split(resolver: Resolver, argument: Any) -> list[str]:
    delimiter, text = resolver.resolve(argument)
    return str(text).split(str(delimiter))


def _if(resolver: Resolver, argument: Any) -> Any:
    name, when_true, when_false = argument
    return resolver.resolve(when_true if resolver.condition(str(name)) else when_false)


def _equals(resolver: Resolver, argument: Any) -> bool:
    left, right = resolver.resolve(argument)
    return _to_text(left) == _to_text(right)


def _not(resolver: Resolver, argument: Any) -> bool:
    return not resolver.resolve(argument)[0]


def _and(resolver: Resolver, argument: Any) -> bool:
    return all(resolver.resolve(argument))


def _or(resolver: Resolver, argument: Any) -> bool:
    return any(resolver.resolve(argument))


def _find_in_map(resolver: Resolver, argument: Any) -> Any:
    map_name, top, second = (_to_text(part) for part in resolver.resolve(argument[:3]))
    try:
        return resolver.template.mappings[map_name][top][second]
    except KeyError:
        raise TemplateError(f"Fn::FindInMap: {map_name}/{top}/{second} not found") from None


def _base64(resolver: Resolver, argument: Any) -> str:
    return base64.b64encode(_to_text(resolver.resolve(argument)).encode()).decode()


def _get_azs(resolver: Resolver, argument: Any) -> list[str]:
    region = _to_text(resolver.resolve(argument)) or resolver.pseudo.region
    return [f"{region}{zone}" for zone in "abc"]


_FUNCTIONS: dict[str, Any] = {
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": _and,
    "Fn::Or": _or,
    "Fn::FindInMap": _find_in_map,
    "Fn::Base64": _base64,
    "Fn::GetAZs": _get_azs,
}


def _to_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"expected a string, got {value!r}")


def to_environment_value(value: Any) -> str:
    """A resolved value as Lambda would store it in an environment variable."""
    return _to_text(value)


def references(value: Any) -> set[str]:
    """Names ``value`` refers to through Ref, GetAtt or Sub (resources or not)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, Mapping):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                target = argument.partition(".")[0] if isinstance(argument, str) else argument[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text = argument[0] if isinstance(argument, list) else argument
                local = set(argument[1]) if isinstance(argument, list) else set()
                for name in _SUB_VARIABLE.findall(str(text)):
                    if not name.startswith("!") and name not in local:
                        found.add(name.partition(".")[0])
                if isinstance(argument, list):
                    found |= references(argument[1])
            else:
                found |= references(argument)
    return found
