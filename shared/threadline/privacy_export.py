"""Building a customer's export archive: the privacy worker's export job."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from threadline.item_codec import inline_envelope
from threadline.items import (
    IDENT_SK,
    PROFILE_SK,
    customer_pk,
    identity_pk,
    message_from_item,
    stored_objects,
)
from threadline.logs import logger
from threadline.privacy_consent import consent_view
from threadline.privacy_jobs import PROGRESS_EVERY, JobRunner, JobState, export_key, export_sk
from threadline.schema import Identity, utc_now

if TYPE_CHECKING:
    import zipfile


class ExportRunner(JobRunner):
    """``run_export``: the archive of everything kept about one customer."""

    def run_export(self, customer_id: str, job_id: str, *, now: datetime | None = None) -> None:
        """Build the customer's archive and put it in the export bucket."""
        # Only the worker builds archives: the API does not pay for these imports.
        import tempfile
        import zipfile

        pk, sk = customer_pk(customer_id), export_sk(job_id)
        job_item = self.store.get_item(pk, sk, consistent=True)
        if job_item is None or job_item.get("state") == JobState.DONE:
            return  # erased meanwhile, or a redelivered job already finished
        started = now or utc_now()
        items = self._customer_items(customer_id)
        profile = next((i for i in items if i["sk"] == PROFILE_SK), None)
        if profile is None:
            self._update_job(pk, sk, state=JobState.FAILED.value, error="customer_gone")
            return
        messages = sorted(
            (i for i in items if str(i["sk"]).startswith("MSG#")), key=lambda i: str(i["sk"])
        )
        conversations = [i for i in items if str(i["sk"]).startswith("CONV#")]
        parsed = [message_from_item(item) for item in messages]
        objects = {
            message.id: stored_objects(message, self.store.settings.raw_bucket)
            for message in parsed
        }
        total = len(messages) + sum(len(found) for found in objects.values())
        self._update_job(
            pk,
            sk,
            state=JobState.RUNNING.value,
            started_at=started.isoformat(),
            items_total=total,
            items_done=0,
        )
        done = reported = 0
        counts = {"messages": 0, "raw_payloads": 0, "attachments": 0, "conversations": 0}
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "export.zip")
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                identities = [
                    _public(self.store.get_item(identity_pk(Identity.parse(i)), IDENT_SK) or {})
                    for i in profile.get("identities", [])
                ]
                _write_json(archive, "customer.json", _public(profile))
                _write_json(archive, "identities.json", [i for i in identities if i])
                _write_json(
                    archive,
                    "consent.json",
                    consent_view(customer_id, profile).model_dump(mode="json"),
                )
                _write_json(archive, "conversations.json", [_public(c) for c in conversations])
                counts["conversations"] = len(conversations)
                for item, message in zip(messages, parsed, strict=True):
                    archive.writestr(
                        f"messages/{message.id}.json", message.model_dump_json(indent=2)
                    )
                    counts["messages"] += 1
                    envelope = inline_envelope(item)
                    if envelope:
                        archive.writestr(f"raw/{message.id}/inline", envelope)
                        counts["raw_payloads"] += 1
                    done += 1
                    for bucket, key in objects[message.id]:
                        is_raw = bool(
                            (message.raw and message.raw.key == key)
                            or any(r.raw and r.raw.key == key for r in message.revisions)
                        )
                        folder = "raw" if is_raw else "attachments"
                        body = self._read_object(bucket, key)
                        if body is not None:
                            archive.writestr(
                                f"{folder}/{message.id}/{key.rsplit('/', 1)[-1]}", body
                            )
                            counts["raw_payloads" if is_raw else "attachments"] += 1
                        done += 1
                    if done - reported >= PROGRESS_EVERY:
                        self._update_job(pk, sk, items_done=done)
                        reported = done
                _write_json(
                    archive,
                    "manifest.json",
                    {
                        "customer_id": customer_id,
                        "job_id": job_id,
                        "exported_at": utc_now().isoformat(),
                        "counts": counts,
                        "layout": {
                            "customer.json": "the profile: names, identities, consent, channels",
                            "identities.json": "each identity and what is kept about it",
                            "consent.json": "consent per identity and purpose with evidence",
                            "conversations.json": "conversations",
                            "messages/<id>.json": "every message in the common schema",
                            "raw/<id>/...": "the provider's raw payload of the message",
                            "attachments/<id>/...": "files the customer sent that we kept",
                        },
                    },
                )
            size = os.path.getsize(path)
            self.s3.upload_file(path, self.settings.export_bucket, export_key(customer_id, job_id))
        if self.store.get_item(pk, sk, consistent=True) is None:
            # Erased while we built it: the archive must not outlive the erasure.
            self.s3.delete_object(
                Bucket=self.settings.export_bucket, Key=export_key(customer_id, job_id)
            )
            logger.info("export dropped: customer erased meanwhile", extra={"job_id": job_id})
            return
        self._update_job(
            pk,
            sk,
            state=JobState.DONE.value,
            completed_at=utc_now().isoformat(),
            items_done=done,
            counts=counts,
            size=size,
        )
        logger.info("export built", extra={"customer_id": customer_id, "job_id": job_id, **counts})

    def _read_object(self, bucket: str, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None  # expired by the retention rule
            raise
        return body


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """An item without its table keys, JSON-ready (sets as sorted lists)."""
    return {k: _plain(v) for k, v in item.items() if k not in {"pk", "sk"}}


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _write_json(archive: zipfile.ZipFile, name: str, document: Any) -> None:
    archive.writestr(name, json.dumps(document, indent=2, sort_keys=True, default=str))
