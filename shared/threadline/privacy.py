"""Data subject rights: consent records, export and erasure of one customer.

Consent lives on the PROFILE item (identity -> purpose -> record, threadline.consent).
Export and erasure are jobs: the API writes a job item and puts the job on the
privacy queue; ``functions/privacy_worker`` runs it, recording progress on the job
item (``items_done`` / ``items_total``). docs/api.md describes the routes,
docs/storage.md the items.

Erasure removes everything of the customer, in an order that a crash can resume:

1. the IDENT items (conditional on still naming this customer), so from here on a
   new message from those identities starts a fresh customer and nothing new lands
   on this one;
2. every S3 object the messages point at, when no other message references it
   (attachments are shared by content hash: ``BLOB#`` reference items count them);
3. DEDUP and IDEMPOTENCY items of the messages, then every item under
   ``CUST#<cid>`` (messages, conversations, export jobs), the PROFILE last, and the
   customer's export archives;
4. the ERASURE item becomes ``done`` with counts only: the audit record, which the
   publisher turns into ``customer.erased``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from threadline.dal.base import Put, WriteCancelled, put_once
from threadline.errors import NotFound, StorageUnavailable
from threadline.items import PROFILE_SK, customer_pk, new_id
from threadline.logs import logger
from threadline.privacy_consent import (
    ConsentEntry,
    ConsentUpdate,
    CustomerConsent,
    IdentityNotOfCustomer,
    consent_view,
    get_consent,
    set_consent,
)
from threadline.privacy_erasure import ErasureRunner
from threadline.privacy_export import ExportRunner
from threadline.privacy_jobs import (
    ERASURE_SK,
    EXPORT_URL_SECONDS,
    JobKind,
    JobState,
    PrivacyJob,
    PrivacySettings,
    erasure_pk,
    export_key,
    export_sk,
    job_from_item,
    job_from_queue_body,
    job_item,
    job_message,
)
from threadline.schema import utc_now

__all__ = [
    "ConsentEntry",
    "ConsentUpdate",
    "CustomerConsent",
    "IdentityNotOfCustomer",
    "JobKind",
    "JobState",
    "PrivacyJob",
    "PrivacyService",
    "PrivacySettings",
    "consent_view",
    "export_key",
    "get_consent",
    "job_from_queue_body",
    "job_message",
    "set_consent",
]


class PrivacyService(ExportRunner, ErasureRunner):
    """Starts and reports export and erasure jobs; the runners run them."""

    def request_export(self, customer_id: str, *, now: datetime | None = None) -> PrivacyJob:
        now = now or utc_now()
        if self.store.get_item(customer_pk(customer_id), PROFILE_SK) is None:
            raise NotFound("no such customer")
        job = PrivacyJob(
            job_id=new_id(now),
            kind=JobKind.EXPORT,
            customer_id=customer_id,
            state=JobState.QUEUED,
            requested_at=now,
        )
        self.data.write(
            [Put(job_item(customer_pk(customer_id), export_sk(job.job_id), "export_job", job))]
        )
        self._enqueue(job)
        logger.info("export requested", extra={"customer_id": customer_id, "job_id": job.job_id})
        return job

    def export_status(self, customer_id: str, job_id: str) -> PrivacyJob:
        item = self.store.get_item(customer_pk(customer_id), export_sk(job_id), consistent=True)
        if item is None:
            raise NotFound("no such export")
        job = job_from_item(item)
        if job.state is JobState.DONE:
            # Signing is local (no AWS call); each status read gets a fresh link.
            url = self.s3.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.settings.export_bucket,
                    "Key": export_key(customer_id, job_id),
                },
                ExpiresIn=EXPORT_URL_SECONDS,
            )
            job = job.model_copy(
                update={
                    "download_url": url,
                    "download_expires_at": utc_now() + timedelta(seconds=EXPORT_URL_SECONDS),
                }
            )
        return job

    def request_erasure(
        self,
        customer_id: str,
        *,
        mode: Literal["delete", "anonymize"] = "delete",
        now: datetime | None = None,
    ) -> tuple[PrivacyJob, bool]:
        """(the erasure job, whether it is new). Asking again returns the same job,
        re-queued while unfinished (so a lost queue message cannot strand it)."""
        now = now or utc_now()
        existing = self.store.get_item(erasure_pk(customer_id), ERASURE_SK, consistent=True)
        if existing is not None:
            return self._requeue(job_from_item(existing)), False
        if self.store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True) is None:
            raise NotFound("no such customer")
        job = PrivacyJob(
            job_id=new_id(now),
            kind=JobKind.ERASURE,
            customer_id=customer_id,
            state=JobState.QUEUED,
            mode=mode,
            requested_at=now,
        )
        key = (erasure_pk(customer_id), ERASURE_SK)
        try:
            self.data.write([put_once(job_item(*key, "erasure", job), replay=True)])
        except WriteCancelled as cancelled:
            # Asked twice at once: the first request's job is the job.
            first = self.data.first_writer(cancelled, 0, key)
            if first is None:
                raise StorageUnavailable("the erasure could not be recorded") from cancelled
            return self._requeue(job_from_item(first)), False
        except StorageUnavailable as exc:
            raise StorageUnavailable("the erasure could not be recorded") from exc
        self._enqueue(job)
        logger.info("erasure requested", extra={"customer_id": customer_id, "job_id": job.job_id})
        return job, True

    def erasure_status(self, customer_id: str) -> PrivacyJob:
        item = self.store.get_item(erasure_pk(customer_id), ERASURE_SK, consistent=True)
        if item is None:
            raise NotFound("no erasure of this customer")
        return job_from_item(item)

    def _requeue(self, job: PrivacyJob) -> PrivacyJob:
        """An unfinished job asked for again is queued again (a lost message cannot
        strand it)."""
        if job.state is not JobState.DONE:
            self._enqueue(job)
        return job
