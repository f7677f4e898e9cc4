"""A message's media, on demand: a short-lived URL a CRM can fetch it from.

Webhooks never download media (a provider waits for their answer, and most media
is never looked at). WhatsApp Cloud API media arrives as an id only; the first time
someone asks for it, it is downloaded from the Graph API, kept in the raw bucket
under its content hash (``attachments/<sha256>``, as e-mail attachments are), and the
message's part is given that ``s3_key`` so later requests are a presigned URL and
no provider call. Parts that already carry a URL (Messenger, Instagram, Twilio,
Slack) are answered with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from pydantic import ConfigDict, Field

from threadline.channels.base import SendFailed
from threadline.dal.base import Update, WriteCancelled
from threadline.errors import NotFound, ThreadlineError
from threadline.items import (
    customer_pk,
    message_document,
    message_from_item,
    message_sk,
)
from threadline.logs import logger
from threadline.model import Model
from threadline.schema import MediaPart, Message
from threadline.store import TimelineStore

PRESIGNED_URL_SECONDS = 900


class MediaLink(Model):
    """Where a media part can be fetched."""

    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None
    expires_in: int | None = Field(
        default=None, description="seconds the URL stays valid; null for the provider's own URL"
    )


class MediaFetcher(Protocol):
    def fetch(self, media_id: str) -> tuple[bytes, str | None]: ...


class MediaUnavailable(ThreadlineError):
    status = 404
    code = "media_unavailable"


class MediaFetchFailed(ThreadlineError):
    status = 502
    code = "media_fetch_failed"


def media_link(
    store: TimelineStore,
    customer_id: str,
    message_id: str,
    index: int,
    fetchers: Mapping[str, MediaFetcher],
) -> MediaLink:
    """A URL for part ``index`` of the message, downloading it first if needs be."""
    item = store.get_item(customer_pk(customer_id), message_sk(message_id), consistent=True)
    if item is None:
        raise NotFound("no such message")
    message = message_from_item(item)
    part = message.parts[index] if 0 <= index < len(message.parts) else None
    if not isinstance(part, MediaPart):
        raise NotFound("the message has no media part at this index")
    if part.s3_key:
        return _presigned(store, part.s3_key, part.content_type)
    fetcher = fetchers.get(message.provider) if part.provider_media_id else None
    if fetcher is not None and part.provider_media_id:
        try:
            data, content_type = fetcher.fetch(part.provider_media_id)
        except SendFailed as exc:
            raise MediaFetchFailed(
                f"the provider did not hand over the media ({exc.code})"
            ) from exc
        key = f"attachments/{hashlib.sha256(data).hexdigest()}"
        content_type = part.content_type or content_type or "application/octet-stream"
        store.keep_attachment(key, data, content_type)
        _remember_key(store, item, message, index, key)
        return _presigned(store, key, content_type)
    if part.url:
        return MediaLink(url=part.url, content_type=part.content_type)
    raise MediaUnavailable("this media part has neither a stored copy nor a URL")


def _presigned(store: TimelineStore, key: str, content_type: str | None) -> MediaLink:
    url = store.s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": store.settings.raw_bucket, "Key": key},
        ExpiresIn=PRESIGNED_URL_SECONDS,
    )
    return MediaLink(url=url, content_type=content_type, expires_in=PRESIGNED_URL_SECONDS)


def _remember_key(
    store: TimelineStore, item: dict[str, object], message: Message, index: int, key: str
) -> None:
    """Put the S3 key on the part, unless the message changed meanwhile (then the next
    request downloads again and writes the same object: the key is the content hash)."""
    parts = list(message.parts)
    old = parts[index]
    assert isinstance(old, MediaPart)
    parts[index] = old.model_copy(update={"s3_key": key})
    updated = message.model_copy(update={"parts": parts})
    remember = Update(
        key=(str(item["pk"]), str(item["sk"])),
        expression="SET message = :new",
        condition="message = :old",
        values={
            ":new": message_document(updated),
            ":old": item["message"],
        },
    )
    try:
        store.data.write([remember])
    except WriteCancelled:
        logger.info("message changed while its media was fetched; key not recorded")
