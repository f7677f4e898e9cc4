"""``POST /_dev/email``: a raw .eml delivered as SES inbound + S3 would deliver it.

SES receipt rules put the raw mail in the inbound mail bucket and S3's event
notification invokes the function; the local stack has neither SES inbound nor S3
notifications, so this puts the body in the bucket of every function with a
``Type: S3`` event (a bucket notification, once translated) and invokes that
function with the S3 event Lambda would get.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from devstack.functions import FunctionSpec, function_named
from devstack.resources import StackResources
from devstack.runtime import Invocation


@dataclass(frozen=True)
class MailTarget:
    function: str
    """Logical id of the function S3 would invoke."""
    bucket: str
    prefix: str = ""


def mail_targets(stack: StackResources, functions: Mapping[str, FunctionSpec]) -> list[MailTarget]:
    """Every function a bucket's object-created notification invokes (a ``Type: S3`` event)."""
    found = []
    for logical_id in stack.template.logical_ids_of_type("AWS::S3::Bucket"):
        properties = stack.template.properties(logical_id)
        notifications = properties.get("NotificationConfiguration") or {}
        for configuration in notifications.get("LambdaConfigurations") or []:
            function = function_named(configuration.get("Function"), functions)
            if function is None or "ObjectCreated" not in str(configuration.get("Event")):
                continue
            rules = ((configuration.get("Filter") or {}).get("S3Key") or {}).get("Rules")
            prefix = next(
                (str(r.get("Value", "")) for r in rules or [] if r.get("Name") == "prefix"), ""
            )
            found.append(MailTarget(function, stack.physical_id(logical_id), prefix))
    return found


def s3_event(bucket: str, key: str, size: int, region: str, etag: str) -> dict[str, Any]:
    """An S3 event notification, shaped as S3 hands it to Lambda."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:local-ses"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "local-mail-drop",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "size": size, "eTag": etag},
                },
            }
        ]
    }


class MailDrop:
    def __init__(
        self,
        targets: list[MailTarget],
        s3: Any,
        invoke: Callable[[str, Any], Invocation],
        region: str,
    ) -> None:
        self.targets = targets
        self.s3 = s3
        self.invoke = invoke
        self.region = region

    def deliver(self, raw: bytes) -> list[dict[str, Any]]:
        # SES names objects by its own message id; a hash plus the time is as unique.
        name = f"{time.time_ns()}-{hashlib.sha256(raw).hexdigest()[:16]}"
        results = []
        for target in self.targets:
            key = target.prefix + name
            put = self.s3.put_object(Bucket=target.bucket, Key=key, Body=raw)
            etag = str(put.get("ETag", "")).strip('"')
            invocation = self.invoke(
                target.function, s3_event(target.bucket, key, len(raw), self.region, etag)
            )
            results.append(
                {
                    "function": target.function,
                    "bucket": target.bucket,
                    "key": key,
                    "ok": invocation.ok,
                    "result": invocation.payload if invocation.ok else None,
                    "error": None if invocation.ok else invocation.error_message,
                }
            )
        return results


class EmbeddedSesOutbox:
    """What the dispatcher sent through the embedded SES (moto, in this process).

    moto keeps every accepted mail but has no API to list them, so the local stack
    reads its backend directly: ``GET /_dev/outbox?provider=ses`` shows them beside
    the sandbox's requests. Only for the embedded AWS; an external
    ``AWS_ENDPOINT_URL`` keeps its mail to itself.
    """

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region

    def _backend(self) -> Any:
        from moto.ses.models import ses_backends

        return ses_backends[self.account_id][self.region]

    def sent(self, to: str | None = None) -> list[dict[str, Any]]:
        from email.utils import parseaddr

        found = []
        for mail in list(self._backend().sent_messages):
            raw = getattr(mail, "raw_data", None)
            if raw is None:  # a Simple (non-raw) send: not one threadline makes
                continue
            recipients = [parseaddr(d)[1] for d in mail.destinations]
            if to is not None and to not in recipients:
                continue
            found.append(
                {
                    "provider": "ses",
                    "method": "POST",
                    "path": "/v2/email/outbound-emails",
                    "form": {"From": [mail.source], "To": recipients, "Raw": [raw]},
                    "status": 200,
                    "at": None,
                    "message_id": mail.id,
                }
            )
        return found

    def clear(self) -> None:
        self._backend().sent_messages.clear()
