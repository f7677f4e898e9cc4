"""One-off cleanup: remove secret headers from raw envelopes stored before the allowlist.

Envelopes written before :func:`threadline.channels.base.audit_headers` kept every
request header, Telegram's ``X-Telegram-Bot-Api-Secret-Token`` among them. This
rewrites each stored envelope with only the allowed headers, wherever one is kept:

* inline in a message item (``raw``: text in older items, zlib-compressed bytes in
  newer ones, rewritten in the same form), with the message's raw reference (size,
  hash) updated to match;
* in the raw bucket (``raw/<provider>/...``): the cleaned object is written as a new
  version and every version that still holds a secret header is deleted (the bucket
  is versioned, so overwriting alone would keep the secret);
* in export zips in the export bucket (``raw/...`` entries), rewritten in place.

It is idempotent: an envelope with nothing to remove is left untouched, so running it
again changes nothing. Run it once per deployment, with the function's environment::

    TABLE_NAME=... RAW_BUCKET=... EXPORT_BUCKET=... python -m threadline.envelope_cleanup

It reads the whole table (a Scan): a maintenance job, never a request path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

from threadline import aws
from threadline.channels.base import AUDIT_HEADERS, audit_headers
from threadline.item_codec import compress, inline_envelope, stored_bytes
from threadline.items import from_item, to_item
from threadline.logs import logger

# The header that names the provider of a stored envelope (envelopes do not say).
_PROVIDER_BY_HEADER = {
    "x-twilio-signature": "twilio",
    "x-slack-signature": "slack",
    "x-hub-signature-256": "meta",
    "x-hub-signature": "meta",
    "x-telegram-bot-api-secret-token": "telegram",
}


@dataclass
class CleanupCounts:
    items: int = 0
    objects: int = 0
    versions_deleted: int = 0
    exports: int = 0


def provider_of(headers: dict[str, str]) -> str | None:
    for name in headers:
        provider = _PROVIDER_BY_HEADER.get(name.lower())
        if provider:
            return provider
    return None


def clean_envelope(data: bytes | str) -> bytes | None:
    """``data`` with only the allowed headers; None when it is not an envelope or is clean."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("headers"), dict):
        return None
    headers = document["headers"]
    provider = provider_of(headers)
    kept = audit_headers(headers, provider if provider in AUDIT_HEADERS else None)
    if kept == headers:
        return None
    document["headers"] = kept
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")


def clean_table(table: str) -> int:
    """Rewrite every message item whose inline envelope holds a header not allowed."""
    client = aws.dynamodb()
    cleaned = 0
    pages = client.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="attribute_exists(#raw)",
        ExpressionAttributeNames={"#raw": "raw"},
    )
    for page in pages:
        for stored in page.get("Items", []):
            item = from_item(stored)
            new_raw = clean_envelope(inline_envelope(item) or b"")
            if new_raw is None:
                continue
            names = {"#raw": "raw"}
            # Written back in the form it was stored in: text (older items) or compressed.
            text = new_raw.decode("utf-8")
            new_value = text if isinstance(item["raw"], str) else compress(text)
            values: dict[str, Any] = {":old": item["raw"], ":new": new_value}
            update = "SET #raw = :new"
            message = _with_raw_ref(item.get("message"), new_raw)
            if message is not None:
                update += ", #message = :message"
                names["#message"] = "message"
                values[":message"] = message
            try:
                client.update_item(
                    TableName=table,
                    Key=to_item({"pk": item["pk"], "sk": item["sk"]}),
                    UpdateExpression=update,
                    # Only the envelope read: a concurrent change is left to the next run.
                    ConditionExpression="#raw = :old",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=to_item(values),
                )
            except client.exceptions.ConditionalCheckFailedException:
                continue
            cleaned += 1
    return cleaned


def _with_raw_ref(message: Any, envelope: bytes) -> str | bytes | None:
    """The message document with its inline raw reference's size and hash updated,
    in the form it was stored in (text, or compressed)."""
    stored = stored_bytes(message)
    if stored is None:
        return None
    document = json.loads(stored)
    ref = document.get("raw")
    if not isinstance(ref, dict) or ref.get("location") != "inline":
        return None
    ref["size"] = len(envelope)
    ref["sha256"] = hashlib.sha256(envelope).hexdigest()
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return text if isinstance(message, str) else compress(text)


def clean_raw_bucket(bucket: str, counts: CleanupCounts) -> None:
    """Rewrite envelopes in the raw bucket and delete the versions holding secrets."""
    client = aws.s3()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="raw/"):
        for version in page.get("Versions", []):
            key, version_id = version["Key"], version["VersionId"]
            body = client.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
            cleaned = clean_envelope(body)
            if cleaned is None:
                continue
            if version.get("IsLatest"):
                client.put_object(
                    Bucket=bucket, Key=key, Body=cleaned, ContentType="application/json"
                )
                counts.objects += 1
            client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
            counts.versions_deleted += 1


def clean_exports(bucket: str) -> int:
    """Rewrite export zips whose raw entries hold secret headers."""
    client = aws.s3()
    rewritten = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for listed in page.get("Contents", []):
            key = listed["Key"]
            if not key.endswith(".zip"):
                continue
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            changed = False
            out = io.BytesIO()
            with (
                zipfile.ZipFile(io.BytesIO(data)) as source,
                zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target,
            ):
                for entry in source.infolist():
                    content = source.read(entry)
                    if entry.filename.startswith("raw/"):
                        cleaned = clean_envelope(content)
                        if cleaned is not None:
                            content, changed = cleaned, True
                    target.writestr(entry, content)
            if changed:
                client.put_object(
                    Bucket=bucket, Key=key, Body=out.getvalue(), ContentType="application/zip"
                )
                rewritten += 1
    return rewritten


def run(table: str, raw_bucket: str, export_bucket: str | None) -> CleanupCounts:
    counts = CleanupCounts()
    counts.items = clean_table(table)
    clean_raw_bucket(raw_bucket, counts)
    if export_bucket:
        counts.exports = clean_exports(export_bucket)
    logger.info("stored envelopes cleaned", extra=counts.__dict__)
    return counts


def main() -> None:
    counts = run(
        os.environ["TABLE_NAME"], os.environ["RAW_BUCKET"], os.environ.get("EXPORT_BUCKET")
    )
    print(
        f"items cleaned: {counts.items}, raw objects rewritten: {counts.objects}, "
        f"versions deleted: {counts.versions_deleted}, export zips rewritten: {counts.exports}"
    )


if __name__ == "__main__":
    main()
