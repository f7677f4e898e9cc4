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

import contextlib
import json
import os
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from threadline import aws, consent
from threadline.consent import ConsentRecord, ConsentSource, ConsentState, Purpose
from threadline.errors import MalformedRequest, NotFound, StorageUnavailable, ThreadlineError
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
    from_item,
    idempotency_pk,
    identity_pk,
    message_from_item,
    message_item,
    new_id,
    stored_objects,
    to_item,
)
from threadline.logs import logger
from threadline.merge import MERGED
from threadline.schema import Identity, StatusChange, utc_now
from threadline.settings import required_env
from threadline.store import TimelineStore, profile_from_item

if TYPE_CHECKING:
    import zipfile

    from mypy_boto3_s3 import S3Client

EXPORT_SK_PREFIX = "EXPORT#"
ERASURE_SK = "ERASURE"
# How long a download link of a finished export works. Short: whoever holds the
# link can read everything about the customer.
EXPORT_URL_SECONDS = 900
PROGRESS_EVERY = 25
_CONSENT_ATTEMPTS = 5


def erasure_pk(customer_id: str) -> str:
    return f"ERASURE#{customer_id}"


def export_sk(job_id: str) -> str:
    return f"{EXPORT_SK_PREFIX}{job_id}"


def export_key(customer_id: str, job_id: str) -> str:
    return f"{customer_id}/{job_id}.zip"


class PrivacySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    export_bucket: str
    queue_url: str

    @classmethod
    def from_env(cls) -> PrivacySettings:
        return cls(
            export_bucket=required_env("EXPORT_BUCKET"), queue_url=required_env("PRIVACY_QUEUE_URL")
        )


# ----------------------------------------------------------------------------- consent


class ConsentEntry(BaseModel):
    """One identity's consent for one purpose, as the dispatcher sees it."""

    identity: str
    purpose: Purpose
    state: ConsentState | None = Field(description="null: never recorded (the default applies)")
    allowed: bool = Field(description="whether the dispatcher sends messages of this purpose")
    at: datetime | None = None
    source: ConsentSource | None = None
    evidence: str | None = None
    channel: str | None = None


class CustomerConsent(BaseModel):
    customer_id: str
    consent: list[ConsentEntry]


class ConsentUpdate(BaseModel):
    """``PUT /v1/customers/{id}/consent``: record a grant or a withdrawal, with evidence."""

    model_config = ConfigDict(extra="forbid")

    identity: str = Field(description="kind:value, one of the customer's identities")
    purpose: Purpose
    state: ConsentState
    source: ConsentSource = ConsentSource.API
    evidence: str | None = Field(
        default=None, max_length=1024, description="e.g. the signed form's id, a ticket URL"
    )
    channel: str | None = Field(default=None, max_length=32)


class IdentityNotOfCustomer(ThreadlineError):
    status = 422
    code = "identity_not_of_customer"


def consent_view(customer_id: str, item: dict[str, Any]) -> CustomerConsent:
    profile = profile_from_item(item)
    entries = []
    for identity in profile.customer.identities:
        records = consent.records_of(profile.consent.get(str(identity)))
        for purpose in Purpose:
            record = records.get(purpose)
            entries.append(
                ConsentEntry(
                    identity=str(identity),
                    purpose=purpose,
                    state=record.state if record else None,
                    allowed=profile.allows(identity, purpose),
                    at=record.at if record else None,
                    source=record.source if record else None,
                    evidence=record.evidence if record else None,
                    channel=record.channel if record else None,
                )
            )
    return CustomerConsent(customer_id=customer_id, consent=entries)


def get_consent(store: TimelineStore, customer_id: str) -> CustomerConsent:
    item = store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)
    if item is None:
        raise NotFound("no such customer")
    return consent_view(customer_id, item)


def set_consent(
    store: TimelineStore, customer_id: str, update: ConsentUpdate, *, now: datetime | None = None
) -> CustomerConsent:
    """Record one purpose's consent of one identity; other purposes keep theirs.

    Read-modify-write with the identity's previous entry as the condition, so a STOP
    arriving meanwhile is never overwritten by a stale copy.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        identity = Identity.parse(update.identity)
    except ValueError as exc:
        raise MalformedRequest(f"identity is not valid: {exc}", code="invalid_identity") from exc
    record = ConsentRecord(
        state=update.state,
        at=now or utc_now(),
        source=update.source,
        evidence=update.evidence,
        channel=update.channel,
    )
    key = to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK})
    for _ in range(_CONSENT_ATTEMPTS):
        item = store.get_item(customer_pk(customer_id), PROFILE_SK, consistent=True)
        if item is None:
            raise NotFound("no such customer")
        if str(identity) not in item.get("identities", []):
            raise IdentityNotOfCustomer(f"{identity.kind.value} identity is not this customer's")
        previous = (item.get("consent") or {}).get(str(identity))
        entry = {
            p.value: r.model_dump(mode="json", exclude_none=True)
            for p, r in consent.records_of(previous).items()
        }
        entry[update.purpose.value] = record.model_dump(mode="json", exclude_none=True)
        condition = (
            "consent.#identity = :previous"
            if previous is not None
            else "attribute_not_exists(consent.#identity)"
        )
        values: dict[str, Any] = {":entry": entry}
        if previous is not None:
            values[":previous"] = previous
        try:
            store.dynamodb.update_item(
                TableName=store.table,
                Key=key,
                UpdateExpression="SET consent.#identity = :entry",
                ConditionExpression=f"attribute_exists(pk) AND {condition}",
                ExpressionAttributeNames={"#identity": str(identity)},
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                continue
            raise StorageUnavailable("the consent could not be written") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("the consent could not be written") from exc
        logger.info(
            "consent recorded",
            extra={
                "customer_id": customer_id,
                "purpose": update.purpose.value,
                "state": update.state.value,
                "source": update.source.value,
            },
        )
        return get_consent(store, customer_id)
    raise StorageUnavailable("the consent kept changing under us; retry")


# -------------------------------------------------------------------------------- jobs


class JobKind(StrEnum):
    EXPORT = "export"
    ERASURE = "erasure"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PrivacyJob(BaseModel):
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


def _job_from_item(item: dict[str, Any]) -> PrivacyJob:
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


class PrivacyService:
    """Starts, runs and reports export and erasure jobs."""

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
    def dynamodb(self) -> Any:
        return self.store.dynamodb

    @property
    def table(self) -> str:
        return self.store.table

    # ------------------------------------------------------------------ requests

    def _enqueue(self, job: PrivacyJob) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=job_message(job))
        except (BotoCoreError, ClientError) as exc:
            # The job item stays queued; asking again re-sends it (erasure) or makes
            # another (export).
            raise StorageUnavailable("the job could not be queued; retry") from exc

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
        self.dynamodb.put_item(
            TableName=self.table,
            Item=to_item(
                {
                    "pk": customer_pk(customer_id),
                    "sk": export_sk(job.job_id),
                    "type": "export_job",
                    **_job_fields(job),
                }
            ),
        )
        self._enqueue(job)
        logger.info("export requested", extra={"customer_id": customer_id, "job_id": job.job_id})
        return job

    def export_status(self, customer_id: str, job_id: str) -> PrivacyJob:
        item = self.store.get_item(customer_pk(customer_id), export_sk(job_id), consistent=True)
        if item is None:
            raise NotFound("no such export")
        job = _job_from_item(item)
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
        from botocore.exceptions import ClientError

        now = now or utc_now()
        existing = self.store.get_item(erasure_pk(customer_id), ERASURE_SK, consistent=True)
        if existing is not None:
            job = _job_from_item(existing)
            if job.state is not JobState.DONE:
                self._enqueue(job)
            return job, False
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
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=to_item(
                    {
                        "pk": erasure_pk(customer_id),
                        "sk": ERASURE_SK,
                        "type": "erasure",
                        **_job_fields(job),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return self.request_erasure(customer_id, mode=mode, now=now)
            raise StorageUnavailable("the erasure could not be recorded") from exc
        self._enqueue(job)
        logger.info("erasure requested", extra={"customer_id": customer_id, "job_id": job.job_id})
        return job, True

    def erasure_status(self, customer_id: str) -> PrivacyJob:
        item = self.store.get_item(erasure_pk(customer_id), ERASURE_SK, consistent=True)
        if item is None:
            raise NotFound("no erasure of this customer")
        return _job_from_item(item)

    # ------------------------------------------------------------------ job item

    def _update_job(self, pk: str, sk: str, **fields: Any) -> None:
        names = {f"#{name}": name for name in fields}
        self.dynamodb.update_item(
            TableName=self.table,
            Key=to_item({"pk": pk, "sk": sk}),
            UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in fields),
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({f":{k}": v for k, v in fields.items()}),
        )

    # ------------------------------------------------------------------ reading

    def _customer_items(self, customer_id: str) -> list[dict[str, Any]]:
        """Every item under ``CUST#<cid>``: profile, messages, conversations, jobs."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": customer_pk(customer_id)}),
            "ConsistentRead": True,
        }
        while True:
            response = self.dynamodb.query(**query)
            items += [from_item(raw) for raw in response.get("Items", [])]
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            query["ExclusiveStartKey"] = last

    # ------------------------------------------------------------------ export

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
                    if item.get("raw"):
                        archive.writestr(f"raw/{message.id}/inline", str(item["raw"]))
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

    # ------------------------------------------------------------------ erasure

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
                    self.dynamodb.put_item(
                        TableName=self.table, Item=to_item(_anonymized_message_item(item))
                    )
                items = [i for i in items if i.get("type") != "message"]
            self._delete_keys([(str(i["pk"]), str(i["sk"])) for i in items])
            total_done += len(items) + len(kept)
            self._update_job(pk, sk, items_done=total_done)
        counts["exports"] = self._delete_exports(customer_id)
        # Customers merged into this one left tombstone profiles that still hold their
        # ids and identities as records: they go with the survivor, in either mode.
        counts["merged_profiles"] = sum(self._delete_tombstone(alias) for alias in aliases)
        if anonymize and profile is not None:
            self.dynamodb.put_item(
                TableName=self.table, Item=to_item(_anonymized_profile_item(profile, started))
            )
        elif not anonymize:
            self._delete_keys([(customer_pk(customer_id), PROFILE_SK)])
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
        from botocore.exceptions import ClientError

        owners = [customer_id] if isinstance(customer_id, str) else customer_id
        # IN takes at most 100 operands: one attempt per 100 owners.
        for start in range(0, len(owners), 100):
            chunk = owners[start : start + 100]
            try:
                self.dynamodb.delete_item(
                    TableName=self.table,
                    Key=to_item({"pk": pk, "sk": sk}),
                    ConditionExpression="customer_id IN ("
                    + ", ".join(f":c{i}" for i in range(len(chunk)))
                    + ")",
                    ExpressionAttributeValues=to_item({f":c{i}": c for i, c in enumerate(chunk)}),
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue  # gone already, or a fresh customer owns it now
                raise
            return 1
        return 0

    def _delete_tombstone(self, customer_id: str) -> int:
        """Delete a merged customer's tombstone PROFILE (only if merged); 1 if it was."""
        from botocore.exceptions import ClientError

        try:
            self.dynamodb.delete_item(
                TableName=self.table,
                Key=to_item({"pk": customer_pk(customer_id), "sk": PROFILE_SK}),
                ConditionExpression="merge_state = :merged",
                ExpressionAttributeValues=to_item({":merged": MERGED}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return 0
            raise
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
        self.dynamodb.delete_item(
            TableName=self.table,
            Key=to_item({"pk": blob_pk(bucket, key), "sk": blob_ref_sk(message_id)}),
        )
        others = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": blob_pk(bucket, key)}),
            ConsistentRead=True,
            Limit=1,
        )
        if others.get("Items"):
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

    def _delete_keys(self, keys: list[tuple[str, str]]) -> None:
        for start in range(0, len(keys), 25):
            requests: list[dict[str, Any]] = [
                {"DeleteRequest": {"Key": to_item({"pk": pk, "sk": sk})}}
                for pk, sk in keys[start : start + 25]
            ]
            pending: dict[str, Any] = {self.table: requests}
            for _ in range(10):
                response = self.dynamodb.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise StorageUnavailable("DynamoDB kept items unprocessed; the job is retried")


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


def _job_fields(job: PrivacyJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "kind": job.kind.value,
        "customer_id": job.customer_id,
        "state": job.state.value,
        "mode": job.mode,
        "requested_at": job.requested_at.isoformat(),
        "items_done": 0,
    }


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
