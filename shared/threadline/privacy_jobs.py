"""Privacy jobs (export, erasure): their items, queue messages and shared runner parts.

``threadline.privacy`` starts and reports jobs; ``threadline.privacy_export`` and
``threadline.privacy_erasure`` run them in the privacy worker.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field

from threadline import aws
from threadline.dal.base import Update
from threadline.errors import StorageUnavailable
from threadline.items import customer_pk
from threadline.model import Model
from threadline.settings import required_env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from threadline.dal.base import TableAccess
    from threadline.store import TimelineStore

EXPORT_SK_PREFIX = "EXPORT#"
ERASURE_SK = "ERASURE"
# How long a download link of a finished export works. Short: whoever holds the
# link can read everything about the customer.
EXPORT_URL_SECONDS = 900
PROGRESS_EVERY = 25


def erasure_pk(customer_id: str) -> str:
    return f"ERASURE#{customer_id}"


def export_sk(job_id: str) -> str:
    return f"{EXPORT_SK_PREFIX}{job_id}"


def export_key(customer_id: str, job_id: str) -> str:
    return f"{customer_id}/{job_id}.zip"


class PrivacySettings(Model):
    model_config = ConfigDict(frozen=True)

    export_bucket: str
    queue_url: str

    @classmethod
    def from_env(cls) -> PrivacySettings:
        return cls(
            export_bucket=required_env("EXPORT_BUCKET"), queue_url=required_env("PRIVACY_QUEUE_URL")
        )


class JobKind(StrEnum):
    EXPORT = "export"
    ERASURE = "erasure"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PrivacyJob(Model):
    """An export or erasure job: its progress, and for a finished export the download."""

    job_id: str
    kind: JobKind
    customer_id: str
    state: JobState
    mode: Literal["delete", "anonymize"] | None = None
    requested_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    items_done: int = 0
    items_total: int | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    size: int | None = Field(default=None, description="the archive's size in bytes")
    download_url: str | None = Field(
        default=None, description="a presigned S3 URL of the zip (done exports only)"
    )
    download_expires_at: datetime | None = None


def job_from_item(item: dict[str, Any]) -> PrivacyJob:
    return PrivacyJob(
        job_id=item["job_id"],
        kind=item["kind"],
        customer_id=item["customer_id"],
        state=item["state"],
        mode=item.get("mode"),
        requested_at=datetime.fromisoformat(item["requested_at"]),
        started_at=datetime.fromisoformat(item["started_at"]) if item.get("started_at") else None,
        completed_at=(
            datetime.fromisoformat(item["completed_at"]) if item.get("completed_at") else None
        ),
        items_done=int(item.get("items_done", 0)),
        items_total=int(item["items_total"]) if item.get("items_total") is not None else None,
        counts={k: int(v) for k, v in (item.get("counts") or {}).items()},
        error=item.get("error"),
        size=int(item["size"]) if item.get("size") is not None else None,
    )


def job_message(job: PrivacyJob) -> str:
    return json.dumps({"kind": job.kind.value, "customer_id": job.customer_id, "job": job.job_id})


def job_from_queue_body(body: str) -> tuple[JobKind, str, str]:
    """(kind, customer id, job id) of a privacy-queue message."""
    try:
        document = json.loads(body)
        kind, customer_id, job_id = (
            JobKind(document["kind"]),
            document["customer_id"],
            document["job"],
        )
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError("not a privacy job") from exc
    if not (isinstance(customer_id, str) and customer_id and isinstance(job_id, str) and job_id):
        raise ValueError("a privacy job names its customer and job")
    return kind, customer_id, job_id


def job_item(pk: str, sk: str, item_type: str, job: PrivacyJob) -> dict[str, Any]:
    """The item of a new job (``export_job`` under the customer, ``erasure`` on its own)."""
    return {
        "pk": pk,
        "sk": sk,
        "type": item_type,
        "job_id": job.job_id,
        "kind": job.kind.value,
        "customer_id": job.customer_id,
        "state": job.state.value,
        "mode": job.mode,
        "requested_at": job.requested_at.isoformat(),
        "items_done": 0,
    }


class JobRunner:
    """What the export and erasure runners share: clients, the job item, the customer's items."""

    def __init__(
        self,
        store: TimelineStore,
        settings: PrivacySettings,
        *,
        s3: S3Client | None = None,
        sqs: Any = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._s3 = s3
        self._sqs = sqs

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            self._s3 = aws.s3()
        return self._s3

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = aws.sqs()
        return self._sqs

    @property
    def data(self) -> TableAccess:
        return self.store.data

    def _enqueue(self, job: PrivacyJob) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=job_message(job))
        except (BotoCoreError, ClientError) as exc:
            # The job item stays queued; asking again re-sends it (erasure) or makes
            # another (export).
            raise StorageUnavailable("the job could not be queued; retry") from exc

    def _update_job(self, pk: str, sk: str, **fields: Any) -> None:
        self.data.write(
            [
                Update(
                    key=(pk, sk),
                    expression="SET " + ", ".join(f"#{name} = :{name}" for name in fields),
                    condition="attribute_exists(pk)",
                    names={f"#{name}": name for name in fields},
                    values={f":{k}": v for k, v in fields.items()},
                )
            ]
        )

    def _customer_items(self, customer_id: str) -> list[dict[str, Any]]:
        """Every item under ``CUST#<cid>``: profile, messages, conversations, jobs."""
        return self.data.query_all(customer_pk(customer_id), consistent=True)
