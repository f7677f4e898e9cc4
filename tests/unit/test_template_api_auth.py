"""template.yaml's ApiAuth option: IAM by default, HTTP API's JWT authorizer with scopes."""

from __future__ import annotations

from typing import Any

from devstack.template import expand_sam
from tests.conftest import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
JWT_ROUTES = {
    name: r["Properties"]
    for name, r in RESOURCES.items()
    if r["Type"] == "AWS::ApiGatewayV2::Route" and r.get("Condition") == "UseJwtAuth"
}


def test_iam_stays_the_default():
    assert TEMPLATE["Parameters"]["ApiAuth"]["Default"] == "iam"
    auth = RESOURCES["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM"
    jwt_only = [n for n, r in RESOURCES.items() if r.get("Condition") == "UseJwtAuth"]
    assert set(jwt_only) >= {"ApiJwtAuthorizer", "ApiJwtIntegration", *JWT_ROUTES}


def test_the_jwt_authorizer_checks_the_issuer_and_audience_parameters():
    authorizer = RESOURCES["ApiJwtAuthorizer"]["Properties"]
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["JwtConfiguration"] == {
        "Issuer": {"Ref": "JwtIssuer"},
        "Audience": [{"Ref": "JwtAudience"}],
    }
    rule = TEMPLATE["Rules"]["JwtAuthNeedsAnIssuerAndAudience"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "jwt"]}


def test_reads_need_the_read_or_write_scope_and_every_change_the_write_scope():
    scopes = {props["RouteKey"]: props["AuthorizationScopes"] for props in JWT_ROUTES.values()}
    assert scopes == {
        "GET /v1/{proxy+}": ["threadline/read", "threadline/write"],
        "POST /v1/{proxy+}": ["threadline/write"],
        "PUT /v1/{proxy+}": ["threadline/write"],
        "PATCH /v1/{proxy+}": ["threadline/write"],
        "DELETE /v1/{proxy+}": ["threadline/write"],
    }
    for props in JWT_ROUTES.values():
        assert props["AuthorizationType"] == "JWT"
        assert props["AuthorizerId"] == {"Ref": "ApiJwtAuthorizer"}
        assert props["Target"] == {"Fn::Sub": "integrations/${ApiJwtIntegration}"}


def test_sam_expands_the_template_with_the_jwt_resources_kept_conditional():
    expanded = expand_sam(load_template(), region="us-east-1")["Resources"]
    for name in ("ApiJwtAuthorizer", "ApiJwtReadRoute", "ApiJwtInvokePermission"):
        assert expanded[name]["Condition"] == "UseJwtAuth"
