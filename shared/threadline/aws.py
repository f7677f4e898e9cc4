"""boto3 clients, created once per execution environment and reused while warm.

boto3 reads ``AWS_ENDPOINT_URL`` itself, which is how the local stack points every
client at the embedded AWS without a line of code here knowing about it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# Short timeouts: a webhook has seconds, not minutes, and a provider retries a 5xx.
_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 2,
    "read_timeout": 5,
    "retries": {"mode": "standard", "max_attempts": 3},
}


@cache
def _client(service: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(service, config=Config(**_CLIENT_CONFIG))


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def s3() -> S3Client:
    client: S3Client = _client("s3")
    return client


def events() -> EventBridgeClient:
    client: EventBridgeClient = _client("events")
    return client


def sqs() -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


def sesv2() -> Any:
    # No mypy_boto3_sesv2 stubs in the dev dependencies: typed loosely.
    return _client("sesv2")
