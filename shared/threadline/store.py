"""The customer timeline in one DynamoDB table (docs/storage.md has the item map).

:class:`TimelineStore` is a small facade composed of the parts that do the work:
``threadline.ingest`` (filing inbound messages), ``threadline.conversations``,
``threadline.message_changes`` (edits and statuses), and the reads below. They
decide and build plain writes; ``threadline.dal.dynamodb`` is the one module that
turns them into DynamoDB requests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from threadline import aws, consent
from threadline.consent import Purpose as ConsentPurpose
from threadline.conversations import CONVERSATION_QUIET_PERIOD, quiet_period_from_env
from threadline.dal.dynamodb import DynamoTable
from threadline.errors import StorageUnavailable
from threadline.ingest import IngestStore
from threadline.items import (
    PROFILE_SK,
    customer_pk,
    decode_cursor,
    encode_cursor,
    identity_pk,
    message_from_item,
    message_sk,
)
from threadline.message_changes import MAX_ALIAS_HOPS, MessageChanges
from threadline.schema import (
    Channel,
    Customer,
    Identity,
    Message,
    RawPayloadRef,
    TimelinePage,
    utc_now,
)
from threadline.settings import StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

    from threadline.dal.base import TableAccess

__all__ = [
    "CONVERSATION_QUIET_PERIOD",
    "MAX_PAGE_SIZE",
    "IngestResult",
    "KeptRaw",
    "Profile",
    "RawPayload",
    "ThreadTarget",
    "TimelineStore",
    "decode_cursor",
    "encode_cursor",
    "identity_pk",
    "utc_now",
]

MAX_PAGE_SIZE = 100
# The timeline view leaves out the raw payload: it can be large.
_TIMELINE_ATTRIBUTES = (
    "pk",
    "sk",
    "message",
    "status",
    "status_history",
    "channel",
    "recipient",
    "sender",
    "provider_message_id",
    # Not repeated in the JSON document (threadline.items.message_document).
    "message_id",
    "customer_id",
    "conversation_id",
    "direction",
    "provider",
)


@dataclass(frozen=True)
class RawPayload:
    """The provider's request as kept for audit and replay."""

    envelope: bytes
    provider: str
    body_sha256: str
    content_type: str = "application/json"


@dataclass(frozen=True)
class KeptRaw:
    ref: RawPayloadRef
    inline: str | None
    """The envelope itself when it rides in the message item."""


@dataclass(frozen=True)
class IngestResult:
    message_id: str
    customer_id: str
    duplicate: bool = False
    customer_created: bool = False
    identity_linked: bool = False
    """The sender's identity was new and joined the customer owning a verified one."""


@dataclass(frozen=True)
class ThreadTarget:
    """A stored message an inbound one answers: where the reply belongs."""

    customer_id: str
    conversation_id: str
    message_id: str


@dataclass(frozen=True)
class Profile:
    """The customer plus what sending to them needs: recent channels and consent."""

    customer: Customer
    last_inbound: dict[Channel, datetime] = field(default_factory=dict)
    consent: dict[str, dict[str, Any]] = field(default_factory=dict)
    """identity (kind:value) -> the latest consent record for it."""
    open_conversation_id: str | None = None
    merge_state: str | None = None
    """``merging`` or ``merged`` when this customer is being / was absorbed by another."""
    merged_into: str | None = None

    def opted_out(self, identity: Identity) -> bool:
        """Replies (transactional messages) to ``identity`` are withdrawn."""
        return not self.allows(identity, ConsentPurpose.TRANSACTIONAL)

    def allows(self, identity: Identity, purpose: ConsentPurpose) -> bool:
        return consent.allows(self.consent.get(str(identity)), purpose)

    def refusal(self, identity: Identity, purpose: ConsentPurpose) -> str | None:
        """The error code that refuses a ``purpose`` send to ``identity``, if any."""
        return consent.refusal_code(self.consent.get(str(identity)), purpose)


class TimelineStore(IngestStore, MessageChanges):
    """Reads and writes customers, identities and timelines in the threadline table."""

    data: TableAccess

    def __init__(
        self,
        settings: StoreSettings,
        *,
        dynamodb: DynamoDBClient | None = None,
        s3: S3Client | None = None,
        conversation_quiet_period: timedelta | None = None,
        data: TableAccess | None = None,
    ) -> None:
        """``data`` replaces the DynamoDB table (the unit tests' in-memory fake)."""
        self.settings = settings
        self._table = DynamoTable(settings.table_name, dynamodb=dynamodb)
        self.data = data or self._table
        self._s3 = s3
        self.quiet_period = conversation_quiet_period or quiet_period_from_env()

    @property
    def table(self) -> str:
        return self.settings.table_name

    @property
    def dynamodb(self) -> DynamoDBClient:
        return self._table.dynamodb

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            self._s3 = aws.s3()
        return self._s3

    # ----------------------------------------------------------------- raw payloads

    def keep_raw(self, raw: RawPayload, *, may_inline: bool = True) -> KeptRaw:
        """Keep the provider's request: inline when small, else in the raw bucket.

        The S3 key is derived from the body's hash, so a provider's retry of the
        same request overwrites (a new version of) the same object, not a new one.
        """
        digest = hashlib.sha256(raw.envelope).hexdigest()
        size = len(raw.envelope)
        if may_inline and size <= self.settings.raw_inline_max_bytes:
            ref = RawPayloadRef(
                location="inline", content_type=raw.content_type, size=size, sha256=digest
            )
            return KeptRaw(ref=ref, inline=raw.envelope.decode("utf-8"))
        key = f"raw/{raw.provider}/{raw.body_sha256}.json"
        self._put_object(key, raw.envelope, raw.content_type, "could not keep the raw payload")
        ref = RawPayloadRef(
            location="s3",
            content_type=raw.content_type,
            size=size,
            sha256=digest,
            bucket=self.settings.raw_bucket,
            key=key,
        )
        return KeptRaw(ref=ref, inline=None)

    def keep_attachment(self, key: str, data: bytes, content_type: str) -> None:
        """Put an e-mail attachment in the raw bucket under its content hash.

        The key is ``attachments/<sha256>``: a redelivered mail, or one file sent
        twice, writes the same object again rather than another copy.
        """
        self._put_object(key, data, content_type, "could not keep the attachment")

    def _put_object(self, key: str, body: bytes, content_type: str, failure: str) -> None:
        try:
            self.s3.put_object(
                Bucket=self.settings.raw_bucket, Key=key, Body=body, ContentType=content_type
            )
        except Exception as exc:
            raise StorageUnavailable(failure) from exc

    # ----------------------------------------------------------------- reads

    def get_item(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        """One item of the table, as plain Python values; None when absent."""
        return self.data.get((pk, sk), consistent=consistent)

    def get_profile(
        self, customer_id: str, *, consistent: bool = False, follow_merges: bool = False
    ) -> Profile | None:
        """The customer's profile. With ``follow_merges`` an id a merge absorbed (an
        alias) stands for the surviving customer: the one place aliases resolve. One
        GetItem unless the id is an alias."""
        for _ in range(MAX_ALIAS_HOPS + 1):
            item = self.get_item(customer_pk(customer_id), PROFILE_SK, consistent=consistent)
            profile = profile_from_item(item) if item else None
            if not follow_merges or profile is None or profile.merged_into is None:
                return profile
            customer_id = profile.merged_into
        raise StorageUnavailable("the customer's merge aliases do not end")

    def resolve_profile(self, customer_id: str, *, consistent: bool = False) -> Profile | None:
        """The profile ``customer_id`` stands for (get_profile following merges)."""
        return self.get_profile(customer_id, consistent=consistent, follow_merges=True)

    def merged_into(self, customer_id: str) -> str | None:
        """The customer that absorbed ``customer_id`` (merging or merged), else None."""
        profile = self.get_profile(customer_id, consistent=True)
        return profile.merged_into if profile else None

    def surviving_customer_id(self, customer_id: str) -> str | None:
        profile = self.get_profile(customer_id, consistent=True, follow_merges=True)
        return profile.customer.id if profile else None

    def find_customer_id(self, identity: Identity) -> str | None:
        record = self._read_identity(identity)
        return record.customer_id if record else None

    def get_customer(self, customer_id: str) -> Customer | None:
        profile = self.get_profile(customer_id)
        return profile.customer if profile else None

    def get_message(self, customer_id: str, message_id: str) -> Message | None:
        item = self.get_item(customer_pk(customer_id), message_sk(message_id), consistent=True)
        return message_from_item(item) if item else None

    def timeline(
        self, customer_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> TimelinePage:
        """One page of the customer's messages, newest first."""
        page = self.data.newest_first(
            customer_pk(customer_id),
            "MSG#",
            limit=max(1, min(limit, MAX_PAGE_SIZE)),
            cursor=cursor,
            attributes=_TIMELINE_ATTRIBUTES,
        )
        return TimelinePage(
            items=[message_from_item(item) for item in page.items], next_cursor=page.next_cursor
        )


def profile_from_item(item: dict[str, Any]) -> Profile:
    """A PROFILE item (as from_item returns it) as a Profile."""
    customer = Customer(
        id=item["customer_id"],
        display_name=item.get("display_name"),
        identities=[Identity.parse(text) for text in item.get("identities", [])],
        created_at=datetime.fromisoformat(item["created_at"]),
        last_channel=item.get("last_channel"),
        last_message_at=(
            datetime.fromisoformat(item["last_message_at"]) if item.get("last_message_at") else None
        ),
        language=item.get("language"),
        tags=list(item.get("tags") or []),
        external_ids=dict(item.get("external_ids") or {}),
    )
    return Profile(
        customer=customer,
        last_inbound={
            Channel(name): datetime.fromisoformat(at)
            for name, at in (item.get("last_inbound") or {}).items()
        },
        consent=dict(item.get("consent") or {}),
        open_conversation_id=item.get("open_conversation_id"),
        merge_state=item.get("merge_state"),
        merged_into=item.get("merged_into"),
    )
