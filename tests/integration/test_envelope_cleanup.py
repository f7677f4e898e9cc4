"""The one-off cleanup removes secret headers from envelopes already stored, once."""

from __future__ import annotations

import io
import json
import zipfile

from threadline.envelope_cleanup import run
from threadline.items import to_item

SECRET = "tg-shared-secret-0123456789"


def _old_envelope(body: str) -> str:
    return json.dumps(
        {
            "method": "POST",
            "url": "https://hooks.example.com/webhooks/telegram",
            "headers": {
                "content-type": "application/json",
                "x-telegram-bot-api-secret-token": SECRET,
            },
            "received_at": "2026-01-01T00:00:00+00:00",
            "body": body,
        }
    )


def test_the_cleanup_rewrites_items_objects_versions_and_exports_then_finds_nothing(aws, stack):
    envelope = _old_envelope('{"update_id":1}')
    message = json.dumps({"id": "m1", "raw": {"location": "inline", "size": 1, "sha256": "0"}})
    aws.dynamodb.put_item(
        TableName=aws.table,
        Item=to_item(
            {
                "pk": "CUST#cleanup-test",
                "sk": "MSG#m1",
                "type": "message",
                "raw": envelope,
                "message": message,
            }
        ),
    )
    key = "raw/telegram/cleanup-test.json"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=envelope.encode())
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=_old_envelope("{}").encode())
    export_bucket = stack.physical_id("ExportBucket")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("raw/m1/inline", envelope)
        zipped.writestr("messages/m1.json", "{}")
    aws.s3.put_object(Bucket=export_bucket, Key="exports/cleanup-test.zip", Body=archive.getvalue())

    first = run(aws.table, aws.bucket, export_bucket)
    assert (first.items, first.objects, first.versions_deleted, first.exports) == (1, 1, 2, 1)

    item = aws.dynamodb.get_item(
        TableName=aws.table, Key=to_item({"pk": "CUST#cleanup-test", "sk": "MSG#m1"})
    )["Item"]
    assert SECRET not in json.dumps(item)
    assert json.loads(item["message"]["S"])["raw"]["size"] == len(item["raw"]["S"].encode())
    versions = aws.s3.list_object_versions(Bucket=aws.bucket, Prefix=key)["Versions"]
    for version in versions:
        body = aws.s3.get_object(Bucket=aws.bucket, Key=key, VersionId=version["VersionId"])
        assert SECRET.encode() not in body["Body"].read()
    zipped_now = aws.s3.get_object(Bucket=export_bucket, Key="exports/cleanup-test.zip")
    with zipfile.ZipFile(io.BytesIO(zipped_now["Body"].read())) as opened:
        assert SECRET.encode() not in opened.read("raw/m1/inline")

    again = run(aws.table, aws.bucket, export_bucket)
    assert (again.items, again.objects, again.versions_deleted, again.exports) == (0, 0, 0, 0)
