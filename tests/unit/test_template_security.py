"""template.yaml's data protection: checkov clean with every skip explained, private
TLS-only buckets, the customer-managed key option wired everywhere, retention."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, TEMPLATE_PATH, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
BUCKETS = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::S3::Bucket"]
CHECKOV = Path(sys.prefix) / "checkov" / "bin" / "checkov"


def test_checkov_finds_nothing_unexplained():
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed: run `make {CHECKOV.relative_to(REPO_ROOT)}`")
    result = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(TEMPLATE_PATH),
            "--config-file",
            str(REPO_ROOT / ".checkov.yaml"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] > 40  # it did check the template
    for skipped in report["results"].get("skipped_checks", []):
        assert len(skipped["check_result"].get("suppress_comment") or "") > 30, skipped


def test_every_globally_skipped_check_has_a_written_reason():
    lines = (REPO_ROOT / ".checkov.yaml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*- CKV_", line):
            assert lines[index - 1].strip().startswith("#"), f"no reason above {line.strip()}"


def _policy_statements(bucket: str) -> list[dict[str, Any]]:
    for resource in RESOURCES.values():
        if resource["Type"] == "AWS::S3::BucketPolicy" and resource["Properties"]["Bucket"] == {
            "Ref": bucket
        }:
            return list(resource["Properties"]["PolicyDocument"]["Statement"])
    return []


@pytest.mark.parametrize("bucket", BUCKETS)
def test_every_bucket_is_private_tls_only_and_encrypted_with_the_key_option(bucket):
    properties = RESOURCES[bucket]["Properties"]
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert properties["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    deny = [
        s
        for s in _policy_statements(bucket)
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert deny, f"{bucket} accepts plain HTTP"
    [rule] = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    condition, with_key, without_key = rule["ServerSideEncryptionByDefault"]["Fn::If"]
    assert condition == "UsesKmsKey"
    assert with_key == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "KmsKeyArn"}}
    assert without_key == {"SSEAlgorithm": "AES256"}
    assert properties.get("LifecycleConfiguration"), f"{bucket} keeps objects forever"


def test_the_table_has_pitr_ttl_and_the_key_option():
    properties = RESOURCES["Table"]["Properties"]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    condition, with_key, _ = properties["SSESpecification"]["Fn::If"]
    assert condition == "UsesKmsKey"
    assert with_key == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "KmsKeyArn"},
    }


KMS_POLICY = {"Fn::If": ["UsesKmsKey", {"Ref": "KmsKeyUsePolicy"}, {"Ref": "AWS::NoValue"}]}


@pytest.mark.parametrize(
    "function", sorted(n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")
)
def test_every_function_may_use_the_customer_managed_key(function):
    # In each function's own block, so a new function (a new channel's) carries it
    # without a list elsewhere to keep in step.
    assert RESOURCES["KmsKeyUsePolicy"]["Condition"] == "UsesKmsKey"
    assert "Roles" not in RESOURCES["KmsKeyUsePolicy"]["Properties"]
    assert KMS_POLICY in RESOURCES[function]["Properties"]["Policies"]


def test_retention_reaches_the_functions_and_the_raw_buckets():
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["MESSAGE_RETENTION_DAYS"] == {"Ref": "MessageRetentionDays"}
    for bucket in ("RawBucket", "InboundMailBucket"):
        [rule] = RESOURCES[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
        assert rule["ExpirationInDays"]["Fn::If"][1] == {"Ref": "RawPayloadRetentionDays"}
