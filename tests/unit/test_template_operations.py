"""template.yaml is deployable and operable: data kept, alarms heard, prod guarded."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.secrets import default_secret_location, secret_env_name
from tests.conftest import REPO_ROOT, TEMPLATE_PATH, load_template

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
SECRET_PARAMETERS = sorted(p for p in PARAMETERS if secret_env_name(p) is not None)


def _cfn_lint(*arguments: str) -> subprocess.CompletedProcess[str]:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    return subprocess.run(
        [str(cfn_lint), *arguments, "--", str(TEMPLATE_PATH)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cfn_lint_informational_checks_find_no_missing_deletion_policy():
    result = _cfn_lint("--include-checks", "I")
    assert "I3011" not in result.stdout, result.stdout
    assert "I3013" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    "logical_id",
    sorted(
        name
        for name, resource in RESOURCES.items()
        if resource["Type"] in {"AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SQS::Queue"}
    ),
)
def test_stateful_resources_are_kept_when_the_stack_goes(logical_id):
    resource = RESOURCES[logical_id]
    assert resource.get("DeletionPolicy") == "Retain"
    assert resource.get("UpdateReplacePolicy") == "Retain"


def test_every_alarm_notifies_the_alarm_topic_in_alarm_and_ok():
    alarms = {n: r for n, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms
    topic = {"Fn::If": ["CreatesAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
    for name, alarm in alarms.items():
        assert alarm["Properties"].get("AlarmActions") == [topic], name
        assert alarm["Properties"].get("OKActions") == [topic], name
    assert RESOURCES["AlarmTopic"]["Condition"] == "CreatesAlarmTopic"


@pytest.mark.parametrize("parameter", SECRET_PARAMETERS)
def test_an_empty_secret_name_means_the_stages_path(parameter):
    """Every use of a secret parameter falls back to /threadline/${Stage}/..., the same
    path the local stack provisions (devstack.secrets.default_secret_location)."""
    assert PARAMETERS[parameter]["Default"] == ""
    condition = f"Has{parameter}"
    assert TEMPLATE["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]
    }
    expected = default_secret_location(parameter, "${Stage}")
    text = json.dumps(RESOURCES)
    uses = re.findall(rf'\{{"Fn::If": \["{condition}", (.*?)\]\}}', text)
    assert uses, f"{parameter} is never used"
    for use in uses:
        assert expected in use, use
    # No use bypasses the fallback.
    without_fallbacks = re.sub(rf'\{{"Fn::If": \["{condition}", .*?\]\}}', "", text)
    assert f'"Ref": "{parameter}"' not in without_fallbacks
    assert f"${{{parameter}}}" not in without_fallbacks


def test_a_prod_stack_refuses_twilios_test_number():
    rule = TEMPLATE["Rules"]["ProdSendsFromRealNumbers"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    asserted = json.dumps(rule["Assertions"])
    assert PARAMETERS["TwilioSmsFrom"]["Default"] == "+15005550006"
    assert '{"Ref": "TwilioSmsFrom"}, "+15005550006"' in asserted


def test_the_stream_batching_window_is_a_parameter_defaulting_to_zero():
    assert PARAMETERS["StreamBatchingWindowSeconds"]["Default"] == 0
    stream = RESOURCES["PublisherFunction"]["Properties"]["Events"]["TableStream"]["Properties"]
    assert stream["MaximumBatchingWindowInSeconds"] == {"Ref": "StreamBatchingWindowSeconds"}


def test_the_dashboard_body_is_json_with_the_channel_metrics():
    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]
    text = json.dumps(widgets)
    for metric in ("MessagesReceived", "MessagesSent", "MessagesFailed"):
        assert metric in text
    assert "ApproximateAgeOfOldestMessage" in text


def test_samconfig_has_dev_and_prod_environments():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    for environment in ("default", "dev", "prod"):
        deploy = config[environment]["deploy"]["parameters"]
        stage = re.search(r"Stage=(\S+)", deploy["parameter_overrides"])
        assert stage is not None
        assert deploy["stack_name"] == f"threadline-{stage.group(1)}"
    assert "+15005550006" not in config["prod"]["deploy"]["parameters"]["parameter_overrides"]
