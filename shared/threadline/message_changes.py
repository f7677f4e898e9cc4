"""Changes to stored messages after they were filed: provider edits and statuses.

Both find the message through its ``DEDUP`` item (or the ids a status callback
carries), follow it to the surviving customer when a merge moved it, and write one
conditional update, so a late, repeated or out-of-order change changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from threadline.channels.base import MessageEdit, StatusUpdate
from threadline.dal.base import Update, WriteCancelled
from threadline.errors import StorageUnavailable
from threadline.items import (
    DEDUP_SK,
    customer_pk,
    dedup_pk,
    message_document,
    message_from_item,
    message_sk,
)
from threadline.logs import logger
from threadline.schema import Direction, MessageRevision, MessageStatus, StatusChange, utc_now

if TYPE_CHECKING:
    from threadline.dal.base import TableAccess
    from threadline.store import KeptRaw

# The statuses a message may be in for a status update to move it on: statuses
# only go forward, and failure ends a message that was not yet delivered.
STATUS_PREDECESSORS: dict[MessageStatus, tuple[MessageStatus, ...]] = {
    MessageStatus.SENT: (MessageStatus.QUEUED,),
    MessageStatus.DELIVERED: (MessageStatus.QUEUED, MessageStatus.SENT),
    MessageStatus.READ: (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED),
    MessageStatus.FAILED: (MessageStatus.QUEUED, MessageStatus.SENT),
}
# A merged customer's id resolves to the survivor; merges of merges make a chain.
MAX_ALIAS_HOPS = 8
_EDIT_ATTEMPTS = 12


def status_write(
    customer_id: str, message_id: str, update: StatusUpdate, change: StatusChange
) -> Update:
    """Move an outbound message on to ``update.status`` if it is in a status before it."""
    predecessors = STATUS_PREDECESSORS[update.status]
    allowed = {f":from{i}": status.value for i, status in enumerate(predecessors)}
    return Update(
        key=(customer_pk(customer_id), message_sk(message_id)),
        expression=(
            "SET #status = :status, "
            "status_history = list_append(status_history, :change), "
            "provider_message_id = if_not_exists(provider_message_id, :pmid)"
        ),
        condition=(
            f"attribute_exists(pk) AND direction = :outbound AND #status IN ({', '.join(allowed)})"
        ),
        names={"#status": "status"},
        values={
            ":status": update.status.value,
            ":change": [change.model_dump(mode="json", exclude_none=True)],
            ":pmid": update.provider_message_id,
            ":outbound": Direction.OUTBOUND.value,
            **allowed,
        },
    )


class MessageChanges:
    """Edits and statuses; TimelineStore mixes this in."""

    data: TableAccess

    def merged_into(self, customer_id: str) -> str | None:
        raise NotImplementedError

    def apply_edit(
        self, edit: MessageEdit, raw: KeptRaw | None = None, *, now: datetime | None = None
    ) -> bool:
        """Update a stored message the provider says was edited or deleted.

        The message keeps its place on the timeline; its earlier parts go to
        ``revisions``. Returns False, changing nothing, for a message we never stored,
        a repeated change (same ``edit_id``), an edit after a deletion, an edit older
        than the one stored, or one that leaves the parts as they were (Slack sends
        ``message_changed`` when it adds a link preview).
        """
        try:
            located = self.data.get(
                (dedup_pk(edit.provider, edit.provider_message_id), DEDUP_SK), consistent=True
            )
            if located is None:
                logger.info("edit of an unknown message ignored", extra={"kind": edit.kind})
                return False
            customer_id = str(located["customer_id"])
            sk = message_sk(str(located["message_id"]))
            for _ in range(_EDIT_ATTEMPTS):
                item = self.data.get((customer_pk(customer_id), sk), consistent=True)
                if item is None:
                    # A merge may have moved the message (same id) to the surviving customer.
                    moved_to = self.merged_into(customer_id)
                    if moved_to is None:
                        return False
                    customer_id = moved_to
                    continue
                if edit.edit_id in (item.get("edit_ids") or set()):
                    return False
                message = message_from_item(item)
                at = edit.at or now or utc_now()
                if message.deleted_at is not None:
                    return False
                if edit.kind == "edited" and (
                    edit.parts == message.parts
                    or (message.edited_at is not None and at <= message.edited_at)
                ):
                    return False
                revision = MessageRevision(
                    kind=edit.kind, at=at, parts=message.parts, raw=raw.ref if raw else None
                )
                changes: dict[str, Any] = {
                    "parts": edit.parts if edit.kind == "edited" else [],
                    "revisions": [*message.revisions, revision],
                    ("edited_at" if edit.kind == "edited" else "deleted_at"): at,
                }
                updated = message.model_copy(update=changes)
                try:
                    self.data.write(
                        [
                            Update(
                                key=(customer_pk(customer_id), sk),
                                expression="SET message = :new ADD edit_ids :edit",
                                # Optimistic: a concurrent change makes us re-read and re-apply.
                                condition="message = :old",
                                values={
                                    ":new": message_document(updated),
                                    ":old": item["message"],
                                    ":edit": {edit.edit_id},
                                },
                            )
                        ]
                    )
                except WriteCancelled:
                    continue
                logger.info(
                    "message changed",
                    extra={"kind": edit.kind, "message_id": located["message_id"]},
                )
                return True
        except StorageUnavailable as exc:
            raise StorageUnavailable("the edit could not be written") from exc
        raise StorageUnavailable("the message kept changing under us; retry")

    def apply_status(self, update: StatusUpdate, *, now: datetime | None = None) -> bool:
        """Move a message we sent forward to ``update.status``.

        Returns False, changing nothing, when the message is unknown or the update
        is stale: a late or out-of-order callback never moves a status backwards,
        and a repeated one is not recorded twice.
        """
        if not STATUS_PREDECESSORS.get(update.status):
            return False
        try:
            located = self._locate(update)
            if located is None:
                logger.info(
                    "status for an unknown message ignored", extra={"status": update.status}
                )
                return False
            customer_id, message_id = located
            change = StatusChange(
                status=update.status,
                at=update.at or now or utc_now(),
                error_code=update.error_code,
                error_message=update.error_message,
            )
            for _ in range(MAX_ALIAS_HOPS + 1):
                try:
                    self.data.write([status_write(customer_id, message_id, update, change)])
                    return True
                except WriteCancelled:
                    # A merge may have moved the message (same id) to the surviving customer.
                    moved_to = self.merged_into(customer_id)
                    if moved_to is None:
                        logger.info("stale status ignored", extra={"status": update.status.value})
                        return False
                    customer_id = moved_to
        except StorageUnavailable as exc:
            raise StorageUnavailable("the status could not be written") from exc
        return False

    def _locate(self, update: StatusUpdate) -> tuple[str, str] | None:
        """(customer id, message id) of the message a status update is about."""
        if update.customer_id and update.message_id:
            return update.customer_id, update.message_id
        key = (dedup_pk(update.provider, update.provider_message_id), DEDUP_SK)
        item = self.data.get(key, consistent=True)
        if item is None:
            return None
        return str(item["customer_id"]), str(item["message_id"])
