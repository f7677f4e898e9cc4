"""The SES inbound path: an S3 ``ObjectCreated`` event for a raw mail, onto the timeline.

SES receipt rule -> raw MIME in the inbound mail bucket -> S3 event notification ->
``functions/email_inbound``. The S3 object *is* the raw payload: the message points
at it (``raw.location = "s3"``, the inbound bucket and key) instead of a copy.

S3 invokes Lambda asynchronously: an exception makes Lambda retry the event (twice,
then it is dropped), so only a storage failure raises. A mail that cannot be parsed
or must not be filed is logged and skipped; a retry would not change it, and its
bytes stay in the inbound bucket.

What is skipped (the raw mail stays in the inbound bucket, a log line names it):

- mail SES marked ``X-SES-Spam-Verdict``/``X-SES-Virus-Verdict: FAIL``: a spammer
  must not become a customer, and an infected attachment is not copied anywhere;
- auto-replies (out-of-office, ``Precedence: bulk``...) from an address that is not
  a customer's: newsletters and bounces would otherwise make customers of robots.

An auto-reply from a customer's address *is* filed, with ``author_role: system`` and
``channel_data.filtered = "auto_reply"``: "away until Monday" is useful to an agent,
and consumers already skip system messages as not written by the customer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from threadline.channels.base import InboundMessage
from threadline.channels.email.inbound import FILTER_AUTO_REPLY, PROVIDER, parse_email
from threadline.errors import MalformedRequest, StorageUnavailable
from threadline.items import DEDUP_SK, customer_pk, dedup_pk, message_sk
from threadline.logs import logger
from threadline.schema import RawPayloadRef
from threadline.store import IngestResult, KeptRaw, ThreadTarget, TimelineStore
from threadline.telemetry import MESSAGES_RECEIVED, count_message

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAIL_CONTENT_TYPE = "message/rfc822"
# SES writes this object (under the rule's prefix) when a rule with an S3 action is
# created, to prove it can write: not a mail from anyone.
SES_SETUP_NOTIFICATION = "AMAZON_SES_SETUP_NOTIFICATION"
# SES stores messages up to 40 MB; a Lambda with 512 MB holds that comfortably.
MAX_MAIL_BYTES = 40 * 1024 * 1024
# Message-IDs of a reply's In-Reply-To and References looked up (newest first): one
# BatchGetItem of at most twice as many keys, well under its limit of 100.
MAX_THREAD_LOOKUPS = 25
# SES gives each mail it sends the Message-ID <MessageId@<region>.amazonses.com>,
# whatever the raw mail said; the MessageId is what the dispatcher recorded.
_SES_MESSAGE_ID_DOMAIN = "amazonses.com"


@dataclass(frozen=True)
class MailOutcome:
    bucket: str
    key: str
    result: IngestResult | None = None
    skipped: str | None = None
    """Why the mail was not filed: malformed, spam, virus, auto_reply, not_found."""


def mail_objects(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every object-created record of an S3 event notification."""
    found = []
    for record in event.get("Records") or []:
        if not isinstance(record, Mapping):
            continue
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = (s3.get("object") or {}).get("key")
        if isinstance(bucket, str) and isinstance(key, str):
            # S3 event keys are URL-encoded with spaces as "+".
            found.append((bucket, unquote_plus(key)))
    return found


def ingest_mail(store: TimelineStore, bucket: str, key: str, raw: bytes) -> MailOutcome:
    """File one raw mail kept at ``bucket``/``key`` (which stays its raw payload)."""
    try:
        parsed = parse_email(raw)
    except MalformedRequest as error:
        logger.warning(
            "mail not filed", extra={"reason": "malformed", "detail": error.message, "key": key}
        )
        return MailOutcome(bucket, key, skipped="malformed")
    message = parsed.message
    logger.set_correlation_id(message.provider_message_id)
    if parsed.filtered and parsed.filtered != FILTER_AUTO_REPLY:
        logger.info("mail not filed", extra={"reason": parsed.filtered, "key": key})
        return MailOutcome(bucket, key, skipped=parsed.filtered)
    if parsed.filtered == FILTER_AUTO_REPLY and store.find_customer_id(message.sender) is None:
        logger.info("mail not filed", extra={"reason": "auto_reply_from_unknown", "key": key})
        return MailOutcome(bucket, key, skipped=FILTER_AUTO_REPLY)
    for attachment in parsed.attachments:
        store.keep_attachment(attachment.key, attachment.data, attachment.content_type)
    kept = KeptRaw(
        ref=RawPayloadRef(
            location="s3",
            content_type=MAIL_CONTENT_TYPE,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            bucket=bucket,
            key=key,
        ),
        inline=None,
    )
    thread = find_thread(store, message)
    result = store.ingest(message, kept, thread=thread)
    if not result.duplicate:
        count_message(MESSAGES_RECEIVED, message.channel.value)
    return MailOutcome(bucket, key, result=result)


def _lookup_ids(message: InboundMessage) -> list[str]:
    """The DEDUP ids that may name the mail this one answers, most specific first."""
    references = message.channel_data.get("references") or []
    candidates = [message.in_reply_to, *reversed(references)]
    ids: list[str] = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        if candidate == message.provider_message_id:
            continue
        if len(ids) >= 2 * MAX_THREAD_LOOKUPS:
            break
        ids.append(candidate)
        local, _, domain = candidate.strip("<>").rpartition("@")
        domain = domain.lower()
        if local and (
            domain == _SES_MESSAGE_ID_DOMAIN or domain.endswith("." + _SES_MESSAGE_ID_DOMAIN)
        ):
            ids.append(local)
    return ids


def find_thread(store: TimelineStore, message: InboundMessage) -> ThreadTarget | None:
    """The stored message (inbound mail or our reply) this mail answers, if any.

    One ``BatchGetItem`` on the DEDUP items of its In-Reply-To and References (no
    call at all for a mail that names none); the first id found, in that order,
    wins. An id nobody stored is ignored: the mail is filed as before.
    """
    ids = _lookup_ids(message)
    if not ids:
        return None
    keys = {dedup_pk(PROVIDER, i): i for i in ids}
    try:
        items = store.data.get_many(
            [(pk, DEDUP_SK) for pk in keys],
            consistent=True,
            attributes=["pk", "customer_id", "message_id", "conversation_id"],
        )
    except StorageUnavailable as exc:
        raise StorageUnavailable("could not look up the thread") from exc
    found = {str(item["pk"]): item for item in items}
    for pk in keys:
        item = found.get(pk)
        if item is None:
            continue
        customer_id, message_id = str(item["customer_id"]), str(item["message_id"])
        conversation_id = item.get("conversation_id")
        if not conversation_id:
            # Written before DEDUP items carried the conversation: read the message.
            stored = store.get_item(customer_pk(customer_id), message_sk(message_id))
            conversation_id = (stored or {}).get("conversation_id")
        if conversation_id:
            return ThreadTarget(customer_id, str(conversation_id), message_id)
    return None


def handle_s3_event(
    event: Mapping[str, Any], store: TimelineStore, s3: S3Client | None = None
) -> list[MailOutcome]:
    """Every mail an S3 event names, read and filed; raises only when storage failed."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3 or store.s3
    outcomes = []
    for bucket, key in mail_objects(event):
        if key.rsplit("/", 1)[-1] == SES_SETUP_NOTIFICATION:
            logger.info("mail not filed", extra={"reason": "ses_setup_notification", "key": key})
            outcomes.append(MailOutcome(bucket, key, skipped="ses_setup_notification"))
            continue
        try:
            obj = client.get_object(Bucket=bucket, Key=key)
            if obj["ContentLength"] > MAX_MAIL_BYTES:
                obj["Body"].close()
                logger.warning("mail not filed", extra={"reason": "too_large", "key": key})
                outcomes.append(MailOutcome(bucket, key, skipped="too_large"))
                continue
            raw = obj["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                # Deleted since (a lifecycle rule, an operator): nothing left to file.
                logger.warning("mail not filed", extra={"reason": "not_found", "key": key})
                outcomes.append(MailOutcome(bucket, key, skipped="not_found"))
                continue
            raise StorageUnavailable("could not read the mail") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("could not read the mail") from exc
        outcomes.append(ingest_mail(store, bucket, key, raw))
    return outcomes
