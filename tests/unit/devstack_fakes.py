"""A translated template's resources as create_resources would name them, with no AWS."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.aws import AwsTarget
from devstack.functions import FunctionSpec
from devstack.intrinsics import PseudoParameters
from devstack.resources import PhysicalResource, StackResources
from devstack.template import Template


def fake_stack(
    template: Template | Mapping[str, Any],
    resources: Mapping[str, tuple[str, Mapping[str, str]]] | None = None,
    parameters: Mapping[str, str] | None = None,
) -> StackResources:
    """Every resource named ``demo-dev-<LogicalId>`` unless ``resources`` says otherwise."""
    if not isinstance(template, Template):
        template = Template(Path("template.yaml").resolve(), template)
    aws = AwsTarget("http://127.0.0.1:4566", "us-east-1", "123456789012")
    pseudo = PseudoParameters("us-east-1", "123456789012", "demo-dev")
    stack = StackResources(template, aws, pseudo, template.parameter_values(parameters))
    for logical_id in template.resources:
        ref, attributes = (resources or {}).get(
            logical_id,
            (
                f"demo-dev-{logical_id}",
                {"Arn": f"arn:aws:lambda:us-east-1:123456789012:{logical_id}"},
            ),
        )
        kind = template.resource_type(logical_id)
        stack.resources[logical_id] = PhysicalResource(logical_id, kind, ref, attributes, False)
    return stack


def function_spec(logical_id: str = "Fn") -> FunctionSpec:
    return FunctionSpec(
        logical_id=logical_id,
        name=logical_id.lower(),
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id.lower()}",
        handler="app.handler",
        runtime="python3.12",
        code_dir=Path("."),
        layer_dirs=(),
        memory_mb=128,
        timeout_seconds=3,
        variables={},
    )
