"""Erasing a customer: the privacy worker's erasure job (order: threadline.privacy)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from threadline.dal.base import Delete, Put, WriteCancelled
from threadline.items import (
    CONVERSATION_POINTER_SK,
    DEDUP_SK,
    EXTERNAL_ID_SK,
    IDEMPOTENCY_SK,
    IDENT_SK,
    PROFILE_SK,
    blob_pk,
    blob_ref_sk,
    conversation_pointer_pk,
    customer_pk,
    dedup_pk,
    external_id_pk,
    idempotency_pk,
    identity_pk,
    message_from_item,
    message_item,
    stored_objects,
)
from threadline.logs import logger
from threadline.merge import MERGED
from threadline.privacy_jobs import ERASURE_SK, JobRunner, JobState, erasure_pk
from threadline.schema import Identity, StatusChange, utc_now


class ErasureRunner(JobRunner):
    """``run_erasure``: delete (or anonymize) everything of one customer."""

    def run_erasure(self, customer_id: str, job_id: str, *, now: datetime | None = None) -> None:
        """Delete everything of the customer (see the module docstring for the order).

        ``mode=anonymize`` does the same to identities, pointers, S3 objects and
        exports, but keeps the messages, conversations and profile with their personal
        data removed (bodies, identities, names, raw payloads, provider ids) and their
        channels, directions, statuses and times kept, for analytics.
        """
        pk, sk = erasure_pk(customer_id), ERASURE_SK
        job_item = self.store.get_item(pk, sk, consistent=True)
        if job_item is None or job_item.get("state") == JobState.DONE:
            return
        if job_item.get("job_id") != job_id:
            return
        started = now or utc_now()
        anonymize = job_item.get("mode") == "anonymize"
        self._update_job(pk, sk, state=JobState.RUNNING.value, started_at=started.isoformat())
        counts = {
            "identities": 0,
            "messages": 0,
            "conversations": 0,
            "objects": 0,
            "pointers": 0,
            "exports": 0,
        }
        profile = self.store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)
        items = self._customer_items(customer_id)
        identities = set(profile.get("identities", []) if profile else [])
        for item in items:
            if item.get("type") == "message":
                identities.update(str(i) for i in (item.get("sender"), item.get("recipient")) if i)
        # 1. Release the identities first: nothing new lands on this customer after it.
        for identity in sorted(identities):
            with contextlib.suppress(ValueError):
                parsed = Identity.parse(identity)
                counts["identities"] += self._delete_if_ours(
                    identity_pk(parsed), IDENT_SK, customer_id
                )
        aliases = sorted(str(a) for a in (profile or {}).get("aliases") or [])
        owners = [customer_id, *aliases]
        # CRM ids lead to the customer too (GET /v1/customers?external_id=...).
        for system, external_id in sorted(((profile or {}).get("external_ids") or {}).items()):
            counts["pointers"] += self._delete_if_ours(
                external_id_pk(system, str(external_id)), EXTERNAL_ID_SK, customer_id
            )
        total_done = 0
        # Messages may still have been written while the identities were going: repeat
        # until a pass finds nothing (at most a few passes).
        for _ in range(5):
            items = [
                i
                for i in self._customer_items(customer_id)
                if i["sk"] != PROFILE_SK
                and not i.get("anonymized")
                and not (anonymize and i.get("type") == "conversation")
            ]
            if not items:
                break
            self._update_job(pk, sk, items_total=total_done + len(items), items_done=total_done)
            for item in items:
                kind = item.get("type")
                if kind == "message":
                    self._erase_message_pointers(item, owners, counts)
                    counts["messages"] += 1
                elif kind == "conversation":
                    counts["conversations"] += 1
                    if not anonymize:
                        # The global conversation -> customer pointer; anonymized
                        # conversations stay reachable by id, so theirs stays.
                        counts["pointers"] += self._delete_if_ours(
                            conversation_pointer_pk(str(item["conversation_id"])),
                            CONVERSATION_POINTER_SK,
                            customer_id,
                        )
            kept: list[dict[str, Any]] = []
            if anonymize:
                kept = [i for i in items if i.get("type") == "message"]
                for item in kept:
                    self.data.write([Put(_anonymized_message_item(item))])
                items = [i for i in items if i.get("type") != "message"]
            self.data.delete_all([(str(i["pk"]), str(i["sk"])) for i in items])
            total_done += len(items) + len(kept)
            self._update_job(pk, sk, items_done=total_done)
        counts["exports"] = self._delete_exports(customer_id)
        # Customers merged into this one left tombstone profiles that still hold their
        # ids and identities as records: they go with the survivor, in either mode.
        counts["merged_profiles"] = sum(self._delete_tombstone(alias) for alias in aliases)
        if anonymize and profile is not None:
            self.data.write([Put(_anonymized_profile_item(profile, started))])
        elif not anonymize:
            self.data.delete_all([(customer_pk(customer_id), PROFILE_SK)])
        # The audit record: ids, times and counts only. Its change to done is what
        # the publisher announces as customer.erased.
        self._update_job(
            pk,
            sk,
            state=JobState.DONE.value,
            completed_at=utc_now().isoformat(),
            counts=counts,
            items_total=total_done,
            items_done=total_done,
        )
        logger.info("customer erased", extra={"customer_id": customer_id, **counts})

    def _delete_if_ours(self, pk: str, sk: str, customer_id: str | list[str]) -> int:
        """Delete a pointer item if it still names this customer; 1 if it did.

        A list is the customer and the ids merged into it: pointers written before a
        merge (DEDUP, IDEMPOTENCY) keep naming the absorbed customer.
        """
        owners = [customer_id] if isinstance(customer_id, str) else customer_id
        # IN takes at most 100 operands: one attempt per 100 owners.
        for start in range(0, len(owners), 100):
            chunk = owners[start : start + 100]
            names = ", ".join(f":c{i}" for i in range(len(chunk)))
            delete = Delete(
                (pk, sk),
                condition=f"customer_id IN ({names})",
                values={f":c{i}": c for i, c in enumerate(chunk)},
            )
            try:
                self.data.write([delete])
            except WriteCancelled:
                continue  # gone already, or a fresh customer owns it now
            return 1
        return 0

    def _delete_tombstone(self, customer_id: str) -> int:
        """Delete a merged customer's tombstone PROFILE (only if merged); 1 if it was."""
        delete = Delete(
            (customer_pk(customer_id), PROFILE_SK),
            condition="merge_state = :merged",
            values={":merged": MERGED},
        )
        try:
            self.data.write([delete])
        except WriteCancelled:
            return 0
        return 1

    def _erase_message_pointers(
        self, item: dict[str, Any], owners: list[str], counts: dict[str, int]
    ) -> None:
        """The DEDUP and IDEMPOTENCY items and the S3 objects of one message.

        ``owners``: the customer, then the ids merged into it (a moved message's
        pointers still name, and an idempotency key is keyed by, the customer that
        wrote it).
        """
        message = message_from_item(item)
        if message.provider_message_id:
            counts["pointers"] += self._delete_if_ours(
                dedup_pk(message.provider, message.provider_message_id), DEDUP_SK, owners
            )
        if item.get("idempotency_key"):
            writers = owners if item.get("merged_from") else owners[:1]
            for writer in writers:
                deleted = self._delete_if_ours(
                    idempotency_pk(writer, str(item["idempotency_key"])), IDEMPOTENCY_SK, owners
                )
                counts["pointers"] += deleted
                if deleted:
                    break
        for bucket, key in stored_objects(message, self.store.settings.raw_bucket):
            counts["objects"] += self._release_object(bucket, key, message.id)

    def _release_object(self, bucket: str, key: str, message_id: str) -> int:
        """Drop this message's reference to an object; delete the object if it was the last.

        Versions are listed before the remaining references are read, so a copy that
        another customer's message is putting right now (a new version of the same
        content-hash key) is not among the versions deleted.
        """
        versions = self._versions(bucket, key)
        self.data.write([Delete((blob_pk(bucket, key), blob_ref_sk(message_id)))])
        others = self.data.newest_first(blob_pk(bucket, key), "REF#", limit=1, consistent=True)
        if others.items:
            return 0
        if not versions:
            return 0
        for start in range(0, len(versions), 1000):
            self.s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": versions[start : start + 1000], "Quiet": True},  # type: ignore[typeddict-item]
            )
        return 1

    def _versions(self, bucket: str, key: str) -> list[dict[str, str]]:
        """Every version and delete marker of exactly ``key`` (all must go for erasure)."""
        found: list[dict[str, str]] = []
        for page in self.s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=key
        ):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if entry.get("Key") == key:
                    found.append({"Key": key, "VersionId": str(entry.get("VersionId"))})
        return found

    def _delete_exports(self, customer_id: str) -> int:
        deleted = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.settings.export_bucket, Prefix=f"{customer_id}/"
        ):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(
                    Bucket=self.settings.export_bucket,
                    Delete={"Objects": keys, "Quiet": True},  # type: ignore[typeddict-item]
                )
                deleted += len(keys)
        return deleted


def _anonymized_message_item(item: dict[str, Any]) -> dict[str, Any]:
    """A message item with everything personal gone: what, who, and the provider's ids.

    Kept: ids, customer and conversation, channel, direction, provider, author role,
    times, statuses and error codes (error messages can quote a number: dropped).
    """
    message = message_from_item(item)
    anonymous = message.model_copy(
        update={
            "sender": None,
            "recipient": None,
            "parts": [],
            "provider_message_id": None,
            "author_id": None,
            "in_reply_to": None,
            "thread_id": None,
            "raw": None,
            "channel_data": {},
            "revisions": [],
            "status_history": [
                StatusChange(status=change.status, at=change.at, error_code=change.error_code)
                for change in message.status_history
            ],
        }
    )
    anonymized = message_item(anonymous)
    anonymized["anonymized"] = True
    for kept in ("expires_at", "dispatch_state"):
        if item.get(kept) is not None:
            anonymized[kept] = item[kept]
    return anonymized


def _anonymized_profile_item(profile: dict[str, Any], at: datetime) -> dict[str, Any]:
    kept = ("pk", "sk", "type", "customer_id", "created_at", "last_channel", "last_message_at")
    return {
        **{k: profile[k] for k in kept if profile.get(k) is not None},
        "last_inbound": profile.get("last_inbound") or {},
        "identities": [],
        "consent": {},
        "help_requested": {},
        "anonymized_at": at.isoformat(),
    }
