"""The AWS the local stack talks to: an endpoint, a region, an account, fake keys.

Every client is built from an isolated botocore session: the developer's own
profiles, config files and credentials never take part, so nothing local can
reach a real AWS account by accident.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_REGION = "us-east-1"
# moto's default account; an external endpoint is asked for its own.
DEFAULT_ACCOUNT_ID = "123456789012"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

_CLIENTS: dict[tuple[AwsTarget, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class AwsTarget:
    endpoint_url: str
    region: str
    account_id: str = DEFAULT_ACCOUNT_ID

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this endpoint, with dummy credentials.

        Clients are cached per target and service: building one costs tens of
        milliseconds, and boto3 clients are safe to share between threads.
        """
        key = (self, service)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = self._new_client(service)
            return _CLIENTS[key]

    def _new_client(self, service: str) -> Any:
        import boto3
        import botocore.session
        from botocore.config import Config

        # No profile, no config files, whatever AWS_PROFILE or ~/.aws say: a
        # developer's own AWS setup must not change (or break) the local stack.
        core = botocore.session.Session(
            session_vars={
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None),
            }
        )
        session: Any = boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
            botocore_session=core,
        )
        # A developer's HTTP(S)_PROXY must not capture calls to the loopback endpoint.
        config = Config(proxies={}) if self.is_loopback else None
        return session.client(service, endpoint_url=self.endpoint_url, config=config)

    @property
    def is_loopback(self) -> bool:
        host = urlsplit(self.endpoint_url).hostname or ""
        return host in {"127.0.0.1", "localhost", "::1"}

    def client_environment(self) -> dict[str, str]:
        """Environment variables that point any AWS SDK at this endpoint."""
        return {
            **DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def discover_account_id(self) -> AwsTarget:
        """This target with the account the endpoint says it is (moto: 123456789012)."""
        try:
            identity = self.client("sts").get_caller_identity()
        except Exception:  # an endpoint without STS keeps the default
            return self
        return AwsTarget(self.endpoint_url, self.region, str(identity["Account"]))


def stable_suffix(*parts: str, length: int = 12) -> str:
    """An id that looks like CloudFormation's random suffix but is the same every run.

    Stable names make restarts against a persistent endpoint (AWS_ENDPOINT_URL)
    find the resources they created last time instead of piling up new ones.
    """
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


def physical_name(
    stack_name: str, logical_id: str, *, max_length: int = 128, lowercase: bool = False
) -> str:
    """``<stack>-<LogicalId>-<SUFFIX>``, shortened the way CloudFormation shortens it."""
    suffix = stable_suffix(stack_name, logical_id)
    room = max_length - len(suffix) - 2
    stack_part = stack_name[: max(room // 2, room - len(logical_id))]
    logical_part = logical_id[: room - len(stack_part)]
    name = f"{stack_part}-{logical_part}-{suffix}"
    return name.lower() if lowercase else name
