"""The channel registry is the one list of channels, and everything else agrees with it.

- every channel and identity kind is declared once, with references that resolve;
- no module outside the channel modules names channels by hand (an AST scan);
- the lists template.yaml keeps beside the code (the KMS key policy's roles, each
  function's secret parameters, the webhook and dispatcher secrets, the provider
  API roots) are checked against the template itself and the registry.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from tests.conftest import REPO_ROOT, load_template, serverless_functions
from threadline.channels import registry
from threadline.channels.registry import CHANNELS, IDENTITY_RULES, Channel, IdentityKind
from threadline.outbound import MessageTag

PACKAGE = REPO_ROOT / "shared" / "threadline"
FUNCTIONS = serverless_functions()


# ---------------------------------------------------------------- the registry itself


def test_every_channel_is_declared_exactly_once():
    declared = [spec.channel for spec in CHANNELS]
    assert sorted(declared) == sorted(Channel)
    assert len(declared) == len(set(declared))


ACME_SPEC = """
import re

from threadline.channels.registry import ChannelSpec, IdentityRule, Webhook

IDENTITY_RULES = {{"acme": IdentityRule(pattern=re.compile(r"^u_[a-z0-9]+$"), hint="u_...")}}
CHANNELS = (
    ChannelSpec(
        name="{name}",
        identity="{identity}",
        provider="acme",
        webhooks=(Webhook("AcmeWebhookFunction", "acme_module:AcmeWebhook"),),
        sender="acme_module:sender_from_env",
    ),
)
"""


def _packages(tmp_path, monkeypatch, **specs: str) -> tuple[str, str]:
    """A channels folder of its own (a package name per test: imports are cached),
    one package per keyword holding ``spec.py``."""
    package = "made_up_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    for folder, source in specs.items():
        (root / folder).mkdir()
        (root / folder / "__init__.py").write_text('"""A made-up channel."""\n')
        (root / folder / "spec.py").write_text(source)
    (root / "not_a_channel").mkdir()  # a folder without spec.py is not a channel
    monkeypatch.syspath_prepend(str(tmp_path))
    return str(root), package


def test_a_channel_package_with_a_spec_module_is_found_without_editing_the_registry(
    tmp_path, monkeypatch
):
    root, package = _packages(
        tmp_path, monkeypatch, acme=ACME_SPEC.format(name="acme", identity="acme")
    )
    specs, rules = registry.declared(root, package)
    assert [spec.name for spec in specs] == ["acme"]
    assert specs[0].webhooks[0].function == "AcmeWebhookFunction"
    assert rules["acme"].apply(" u_1a2b ") == "u_1a2b"
    with pytest.raises(ValueError, match="u_"):
        rules["acme"].apply("U-1")


def test_two_packages_declaring_one_channel_are_refused(tmp_path, monkeypatch):
    source = ACME_SPEC.format(name="acme", identity="acme")
    root, package = _packages(
        tmp_path, monkeypatch, acme=source, acme2=source.replace("IDENTITY_RULES = ", "_ = ")
    )
    with pytest.raises(ValueError, match="declared twice"):
        registry.declared(root, package)


def test_a_channel_whose_identity_kind_has_no_rule_is_refused(tmp_path, monkeypatch):
    root, package = _packages(
        tmp_path, monkeypatch, acme=ACME_SPEC.format(name="acme", identity="acmeid")
    )
    with pytest.raises(ValueError, match="acmeid"):
        registry.declared(root, package)


def test_the_enums_are_the_declared_values():
    assert [c.value for c in Channel] == [spec.name for spec in CHANNELS]
    assert Channel.SMS == "sms" and IdentityKind.PHONE == "phone"
    assert registry.channel_spec(Channel.VOICE).reply_channel is Channel.SMS


def test_every_identity_kind_has_a_canonicalization_rule():
    assert set(IDENTITY_RULES) == set(IdentityKind)
    assert {spec.identity_kind for spec in CHANNELS} <= set(IDENTITY_RULES)


def _references() -> list[str]:
    references: list[str] = []
    for spec in CHANNELS:
        references += [w.adapter for w in spec.webhooks]
        references += [spec.sender] if spec.sender else []
        references += list(spec.media_fetchers.values())
    return references


@pytest.mark.parametrize("reference", sorted(set(_references())))
def test_every_reference_names_something_callable(reference):
    assert callable(registry.resolve(reference)), reference


def test_reply_channels_point_at_channels_that_send():
    for spec in CHANNELS:
        if spec.reply_channel is not None:
            assert registry.channel_spec(spec.reply_channel).sender, spec.channel


def test_the_api_message_tags_are_the_send_windows_tags():
    declared = {tag for spec in CHANNELS if spec.window for tag in spec.window.tags}
    assert set(get_args(MessageTag)) == declared


def test_importing_the_registry_loads_no_provider_sdk():
    probe = (
        "import sys, threadline.schema, threadline.channels.registry\n"
        "heavy = [m for m in ('twilio', 'slack_sdk', 'urllib3', 'phonenumbers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- nobody else lists channels

# Where naming a channel by hand is the point: the channel modules themselves (and
# the registry among them), and the e-mail channel's inbound and SES feedback
# modules, which predate the channels package.
CHANNEL_MODULES = (PACKAGE / "channels",)
CHANNEL_FILES = {PACKAGE / "email_inbound.py", PACKAGE / "email_feedback.py"}
# (function name, literal) pairs allowed anywhere, each with its reason.
ALLOWED_IN_FUNCTIONS: set[tuple[str, str]] = set()
ENUMS = ("Channel", "IdentityKind")


def _hand_listed(path: Path, root: Path = REPO_ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ENUMS
            and node.attr.isupper()
        ):
            literal = f"{node.value.id}.{node.attr}"
            if (function, literal) not in ALLOWED_IN_FUNCTIONS:
                found.append(f"{path.relative_to(root)}:{node.lineno} {literal}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "")
    return found


def _consumers() -> list[Path]:
    sources = [*PACKAGE.rglob("*.py"), *(REPO_ROOT / "functions").rglob("*.py")]
    return [
        path
        for path in sources
        if path not in CHANNEL_FILES
        and not any(path.is_relative_to(folder) for folder in CHANNEL_MODULES)
    ]


def test_the_scan_sees_hand_listed_channels(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "SENDERS = {Channel.SMS: 1, IdentityKind.PHONE: 2}\n"
        "def pick():\n    return Channel.EMAIL\n",
        encoding="utf-8",
    )
    assert _hand_listed(sample, tmp_path) == [
        "sample.py:1 Channel.SMS",
        "sample.py:1 IdentityKind.PHONE",
        "sample.py:3 Channel.EMAIL",
    ]


def test_no_consumer_lists_channels_by_hand():
    consumers = _consumers()
    assert any(p.name == "outbound.py" for p in consumers), "the scan lost its consumers"
    hand_listed = [hit for path in consumers for hit in _hand_listed(path)]
    assert not hand_listed, (
        "declare per-channel facts in the channel's spec module and read them "
        f"from threadline.channels.registry: {hand_listed}"
    )


# ---------------------------------------------------------------- template.yaml in step

_SSM_PARAMETER = re.compile(r"parameter\$\{(\w+)\}")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _variables(properties: dict[str, Any]) -> dict[str, Any]:
    return dict((properties.get("Environment") or {}).get("Variables") or {})


def _parameter_named(value: Any) -> str | None:
    """The template parameter behind a secret location: ``!Ref P``, or the
    ``!If [HasP, !Ref P, !Sub '/threadline/${Stage}/...']`` that defaults it by stage."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::If" in value:
        return _parameter_named(value["Fn::If"][1])
    return None


def _secret_parameters(properties: dict[str, Any]) -> dict[str, str]:
    """``<NAME>_PARAM`` variable -> the template parameter that names its location."""
    found = {}
    for name, value in _variables(properties).items():
        parameter = _parameter_named(value)
        if name.endswith("_PARAM") and parameter is not None:
            found[name] = parameter
    return found


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_a_function_may_read_exactly_the_secrets_it_is_told_about(logical_id):
    properties = FUNCTIONS[logical_id]
    named = set(_secret_parameters(properties).values())
    readable = {
        match
        for text in _strings(properties.get("Policies") or [])
        for match in _SSM_PARAMETER.findall(text)
    }
    assert named == readable, f"{logical_id}: env names {named}, IAM allows {readable}"


def test_each_webhook_function_is_given_its_channel_secrets():
    for spec in CHANNELS:
        for webhook in spec.webhooks:
            assert webhook.function in FUNCTIONS, webhook.function
            variables = _variables(FUNCTIONS[webhook.function])
            for secret in webhook.secrets:
                assert f"{secret}_PARAM" in variables, (webhook.function, secret)


def test_the_dispatcher_is_given_every_sender_secret():
    variables = _variables(FUNCTIONS["DispatcherFunction"])
    for spec in CHANNELS:
        for secret in spec.sender_secrets:
            assert f"{secret}_PARAM" in variables, (spec.channel, secret)


def test_provider_api_roots_default_to_the_real_apis():
    parameters = load_template()["Parameters"]
    roots = {name: p for name, p in parameters.items() if name.endswith("ApiBaseUrl")}
    assert roots, "no <Provider>ApiBaseUrl parameters"
    for name, parameter in roots.items():
        assert str(parameter["Default"]).startswith("https://"), name
        provider = name.removesuffix("ApiBaseUrl").upper()
        users = [
            logical_id
            for logical_id, properties in FUNCTIONS.items()
            if _variables(properties).get(f"{provider}_API_BASE_URL") == {"Ref": name}
        ]
        assert "DispatcherFunction" in users, name


# ---------------------------------------------------------------- code reads what the registry says


def _secrets_read(path: Path) -> set[str]:
    """The literal names passed to ``get_secret(...)`` in one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "get_secret"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def _module_path(reference: str) -> Path:
    module = reference.partition(":")[0]
    base = REPO_ROOT / "shared" / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_the_secret_scan_sees_get_secret_calls(tmp_path):
    sample = tmp_path / "app.py"
    sample.write_text('x = lambda: get_secret("A_SECRET")\ny = get_secret(name)\n')
    assert _secrets_read(sample) == {"A_SECRET"}


def test_webhook_functions_read_only_the_secrets_their_registry_entries_name():
    declared: dict[str, set[str]] = {}
    for spec in CHANNELS:
        for webhook in spec.webhooks:
            declared.setdefault(webhook.function, set()).update(webhook.secrets)
    assert {"WebchatSessionsFunction", "WebchatSocketFunction"} <= set(declared)
    for function, secrets in declared.items():
        handler = REPO_ROOT / str(FUNCTIONS[function]["CodeUri"]) / "app.py"
        assert handler.exists(), handler
        read = _secrets_read(handler)
        assert read <= secrets, f"{function} reads {read - secrets}: declare it in the registry"


def test_senders_read_only_the_secrets_the_registry_gives_the_dispatcher():
    given = {secret for spec in CHANNELS for secret in spec.sender_secrets}
    modules = {_module_path(spec.sender) for spec in CHANNELS if spec.sender}
    assert all(path.exists() for path in modules), modules
    read = {secret for path in modules for secret in _secrets_read(path)}
    assert read, "the scan found no sender reading a secret"
    assert read <= given, f"senders read {read - given}: add them to sender_secrets"
