"""The local stack with the customer-managed key option on: the template's KMS
branches are created in the embedded AWS (table and buckets name the key), the key
policy resource is named, and writes still work."""

from __future__ import annotations

import os

import pytest

from devstack.stack import EmbeddedAws

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0b5e6a1c-7d2f-4e8a-9c3b-1f2e3d4c5b6a"


@pytest.fixture(scope="module")
def kms_stack():
    # Its own moto server and stage: the session stack (which tests may have pointed
    # AWS_ENDPOINT_URL at) already holds tables and buckets of the default names.
    environ = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    parameters = {"KmsKeyArn": KEY_ARN, "Stage": "kms"}
    with EmbeddedAws.start(environ=environ, parameters=parameters) as embedded:
        yield embedded


def test_the_table_and_every_bucket_use_the_customer_managed_key(kms_stack):
    table = kms_stack.client("dynamodb").describe_table(TableName=kms_stack.physical_id("Table"))
    description = table["Table"]["SSEDescription"]
    assert (description["SSEType"], description["KMSMasterKeyArn"]) == ("KMS", KEY_ARN)
    s3 = kms_stack.client("s3")
    for bucket in ("RawBucket", "InboundMailBucket", "ExportBucket"):
        name = kms_stack.physical_id(bucket)
        [rule] = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": KEY_ARN,
        }
        assert rule["BucketKeyEnabled"] is True
        s3.put_object(Bucket=name, Key="probe", Body=b"kept")
        assert s3.get_object(Bucket=name, Key="probe")["Body"].read() == b"kept"
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=kms_stack.physical_id("ExportBucket"))
    assert lifecycle["Rules"][0]["Expiration"] == {"Days": 7}


def test_the_key_policy_is_named_only_with_the_option_on(kms_stack, stack):
    assert kms_stack.resources["KmsKeyUsePolicy"].type == "AWS::IAM::ManagedPolicy"
    assert "KmsKeyUsePolicy" not in stack.resources
