"""template.yaml and the code agree: handlers exist, env vars are set, lint is clean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    REPO_ROOT,
    TEMPLATE_PATH,
    import_handler_cleanly,
    load_template,
    serverless_functions,
)

FUNCTIONS = serverless_functions()


def test_cfn_lint_passes():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE_PATH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _environment(properties: dict) -> dict:
    return dict((properties.get("Environment") or {}).get("Variables") or {})


def _environment_names(properties: dict) -> set[str]:
    return set(_environment(properties))


def _global_environment_names() -> set[str]:
    globals_ = load_template().get("Globals", {}).get("Function", {})
    return _environment_names(globals_)


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_imports_with_only_its_template_environment(logical_id):
    """Import each handler in a clean interpreter given just its template variables
    (placeholder values): a module that reads at import time a variable the template
    does not set fails here."""
    module, _, attribute = FUNCTIONS[logical_id]["Handler"].rpartition(".")
    result = import_handler_cleanly(logical_id, f"assert callable({module}.{attribute})")
    assert result.returncode == 0, result.stderr


def _env_names_read_by(path: Path) -> set[str]:
    """Names passed as string literals to the ways our code reads the environment."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            value = node.args[0].value
            func = ast.unparse(node.func)
            if not isinstance(value, str):
                continue
            if func in {
                "required_env",
                "api_base_url",
                "os.environ.get",
                "os.getenv",
                "environ.get",
            }:
                names.add(value)
            elif func == "get_secret":
                names.add(f"{value}_PARAM")
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names.add(node.slice.value)
    return names


def test_every_environment_variable_the_code_reads_is_set_in_the_template():
    sources = [
        *(REPO_ROOT / "shared" / "threadline").rglob("*.py"),
        *(REPO_ROOT / "functions").rglob("*.py"),
    ]
    read = set().union(*(_env_names_read_by(path) for path in sources))
    assert read, "the scan found no environment reads at all: the scanner is broken"
    provided = _global_environment_names().union(
        *(_environment_names(p) for p in FUNCTIONS.values())
    )
    missing = sorted(read - provided)
    assert not missing, f"read by the code but set nowhere in template.yaml: {missing}"


def test_every_function_has_a_log_group_with_retention():
    resources = load_template()["Resources"]
    log_groups = [r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    named = {str(g["Properties"]["LogGroupName"]) for g in log_groups}
    for logical_id in FUNCTIONS:
        assert any(logical_id in name for name in named), f"{logical_id} has no log group"
    assert all("RetentionInDays" in g["Properties"] for g in log_groups)


def test_only_webhook_routes_skip_iam_auth():
    for logical_id, properties in FUNCTIONS.items():
        for event in (properties.get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            authorizer = (event["Properties"].get("Auth") or {}).get("Authorizer")
            if authorizer == "NONE":
                # Webhooks verify their provider's signature; web chat sessions are the
                # visitor's own (CORS allowlist, signed token, user_hash).
                path = event["Properties"]["Path"]
                assert path.startswith(("/webhooks/", "/webchat/v1/")), logical_id


def test_service_integration_routes_are_webhooks_only():
    # Routes declared as raw ApiGatewayV2 resources bypass SAM's default authorizer,
    # so each must be a webhook that verifies its provider's signature downstream,
    # or (ApiAuth=jwt) a /v1 route behind the JWT authorizer.
    resources = load_template()["Resources"]
    websocket_apis = {
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::ApiGatewayV2::Api" and r["Properties"]["ProtocolType"] == "WEBSOCKET"
    }
    routes = {
        k: r
        for k, r in resources.items()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
        and r["Properties"]["ApiId"].get("Ref") not in websocket_apis
    }
    assert routes, "the Twilio fallback route is declared as a raw route"
    for logical_id, route in routes.items():
        _method, path = route["Properties"]["RouteKey"].split(" ", 1)
        if route["Properties"].get("AuthorizationType") == "JWT":
            # ApiAuth=jwt: the /v1 routes behind the JWT authorizer, with scopes.
            assert route["Condition"] == "UseJwtAuth", logical_id
            assert path == "/v1/{proxy+}", logical_id
            assert route["Properties"]["AuthorizerId"] == {"Ref": "ApiJwtAuthorizer"}
            assert route["Properties"]["AuthorizationScopes"], logical_id
            continue
        assert path.startswith("/webhooks/"), logical_id
        assert route["Properties"].get("AuthorizationType", "NONE") == "NONE", logical_id


def test_websocket_routes_reach_only_the_web_chat_function():
    # The WebSocket API's routes are open to any client: $connect checks the signed
    # session token itself, so every route must land on that one function.
    resources = load_template()["Resources"]
    routes = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
        and r["Properties"]["ApiId"].get("Ref") == "WebchatSocketApi"
    ]
    assert {r["RouteKey"] for r in routes} == {"$connect", "$disconnect", "$default"}
    integration = resources["WebchatSocketIntegration"]["Properties"]
    assert "WebchatSocketFunction.Arn" in str(integration["IntegrationUri"])
    assert all("WebchatSocketIntegration" in str(r["Target"]) for r in routes)
