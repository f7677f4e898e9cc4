"""Reading template.yaml: cfn-lint's YAML decoder, then SAM's own translator.

SAM (Globals, ``Events``, implicit APIs, roles, permissions) is turned into plain
CloudFormation by aws-sam-translator, as ``sam deploy`` would have CloudFormation
do it; everything else in the local stack reads only that CloudFormation. The
translator wants code in S3, so each local ``CodeUri`` / ``ContentUri`` is handed
to it as ``s3://LOCAL_CODE_BUCKET/<path>`` and read back from ``Code.S3Key``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAMBDA_FUNCTION = "AWS::Lambda::Function"
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Not a bucket: the marker of a local directory in a translated ``Code`` / ``Content``.
LOCAL_CODE_BUCKET = "devstack-local-code"
_LOCAL_CODE = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class TemplateError(ValueError):
    """The template cannot be run locally (it would not deploy either, usually)."""


def parse_template_text(text: str, *, region: str = "us-east-1") -> dict[str, Any]:
    """A template's CloudFormation body from YAML (or JSON) text, SAM expanded."""
    from cfnlint.decode import cfn_yaml

    try:
        body = _plain(cfn_yaml.loads(text))
    except Exception as exc:  # cfn-lint raises its own and PyYAML's errors
        raise TemplateError(f"not valid YAML: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), dict):
        raise TemplateError("not a CloudFormation template: no Resources section")
    return expand_sam(body, region=region) if _uses_sam(body) else body


def expand_sam(body: dict[str, Any], *, region: str) -> dict[str, Any]:
    """SAM's resources as the CloudFormation aws-sam-translator makes of them."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # The translator asks a boto3 session only for its region: no AWS profile is read.
    translator = Translator(None, Parser(), boto_session=_Region(region))
    try:
        return dict(
            translator.translate(
                _with_placeholder_code(body),
                parameter_values={},
                passthrough_metadata=True,
                # Managed policy names stay names: IAM is not emulated locally.
                get_managed_policy_map=dict,
            )
        )
    except InvalidDocumentException as exc:
        causes = "; ".join(cause.message for cause in exc.causes)
        raise TemplateError(f"SAM cannot translate the template: {causes}") from None


@dataclass(frozen=True)
class _Region:
    region_name: str


def _uses_sam(body: Mapping[str, Any]) -> bool:
    transforms = body.get("Transform") or []
    return SAM_TRANSFORM in ([transforms] if isinstance(transforms, str) else transforms)


def _with_placeholder_code(body: dict[str, Any]) -> dict[str, Any]:
    fragment = {**body, "Resources": dict(body["Resources"])}
    global_function = (body.get("Globals") or {}).get("Function") or {}
    for logical_id, resource in body["Resources"].items():
        key = _LOCAL_CODE.get(str(resource.get("Type")))
        if key is None:
            continue
        properties = dict(resource.get("Properties") or {})
        location = properties.get(key, global_function.get(key) if key == "CodeUri" else None)
        if isinstance(location, str) and not location.startswith("s3://"):
            properties[key] = f"s3://{LOCAL_CODE_BUCKET}/{location}"
        fragment["Resources"][logical_id] = {**resource, "Properties": properties}
    return fragment


def _plain(value: Any) -> Any:
    """cfn-lint's nodes as plain dicts, lists and strings; dates as CloudFormation reads them."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def local_code_path(code: Any) -> str | None:
    """The directory a translated ``Code`` / ``Content`` names, None if it is not local."""
    if isinstance(code, Mapping) and code.get("S3Bucket") == LOCAL_CODE_BUCKET:
        return str(code.get("S3Key") or ".")
    return None


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

    def resource(self, logical_id: str) -> Mapping[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"no resource {logical_id!r} in {self.path.name}") from None

    def resource_type(self, logical_id: str) -> str:
        return str(self.resource(logical_id).get("Type", ""))

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resource(logical_id).get("Properties") or {})

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


def load_template(path: str | Path, *, region: str = "us-east-1") -> Template:
    """Parse ``path`` into a :class:`Template` (SAM expanded for ``region``)."""
    template_path = Path(path).resolve()
    try:
        text = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {template_path}: {exc}") from exc
    try:
        body = parse_template_text(text, region=region)
    except TemplateError as exc:
        raise TemplateError(f"{template_path.name}: {exc}") from None
    return Template(template_path, body)


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
