"""customer.identity_linked and customer.merged from committed items, and the items a
merge copies, which must not be announced again."""

from __future__ import annotations

from tests.unit.test_events import (
    CONVERSATION_ITEM,
    CUSTOMER_ID,
    INBOUND,
    LINKED_IDENTITY_ITEM,
    MERGED_PROFILE_ITEM,
    PROFILE_ITEM,
    SENT,
    msg,
    record,
)
from threadline.events import (
    CustomerIdentityLinked,
    CustomerMerged,
    MessageStatusChanged,
    events_from_stream_record,
)
from threadline.schema import Identity, MessageStatus

ABSORBED = MERGED_PROFILE_ITEM["customer_id"]


def test_an_identity_linked_through_the_api_is_announced():
    [event] = events_from_stream_record(record("INSERT", LINKED_IDENTITY_ITEM))
    assert isinstance(event, CustomerIdentityLinked)
    assert event.customer_id == CUSTOMER_ID
    assert event.identity == Identity.parse("email:jane@example.com")
    assert event.link_source == "api" and event.linked_via is None


def test_slacks_automatic_link_by_email_is_announced_with_what_matched():
    item = {
        "pk": "IDENT#slack#T0001:U0002",
        "sk": "IDENT",
        "type": "identity",
        "identity": "slack:T0001:U0002",
        "customer_id": CUSTOMER_ID,
        "conversation_id": "01J9Z8X7W6V5T4S3R2Q1P0N9CV",
        "created_at": "2026-11-23T07:16:49+00:00",
        "linked_via": "email:jane@example.com",
        "linked_at": "2026-11-23T07:16:49+00:00",
        "link_source": "automatic",
    }
    [event] = events_from_stream_record(record("INSERT", item))
    assert isinstance(event, CustomerIdentityLinked)
    assert event.link_source == "automatic"
    assert event.linked_via == Identity.parse("email:jane@example.com")


def test_an_identity_written_by_a_first_message_or_updated_is_not_a_link():
    plain = {k: v for k, v in LINKED_IDENTITY_ITEM.items() if k not in ("linked_at", "link_source")}
    assert events_from_stream_record(record("INSERT", plain)) == []
    # A message updates the identity's conversation; a merge moves it: same linked_at.
    touched = {**LINKED_IDENTITY_ITEM, "conversation_id": "C2", "customer_id": "OTHER"}
    assert events_from_stream_record(record("MODIFY", touched, LINKED_IDENTITY_ITEM)) == []
    # merge=true stamps a new linked_at on the identity the merge brought: announced.
    relinked = {**LINKED_IDENTITY_ITEM, "linked_at": "2026-11-24T00:00:00+00:00"}
    [event] = events_from_stream_record(record("MODIFY", relinked, LINKED_IDENTITY_ITEM))
    assert isinstance(event, CustomerIdentityLinked)


def test_the_tombstone_turning_merged_is_customer_merged_for_the_survivor():
    merging = {**MERGED_PROFILE_ITEM, "merge_state": "merging"}
    [event] = events_from_stream_record(record("MODIFY", MERGED_PROFILE_ITEM, merging))
    assert isinstance(event, CustomerMerged)
    assert event.customer_id == CUSTOMER_ID == event.surviving_customer_id
    assert event.absorbed_customer_id == ABSORBED
    assert [str(i) for i in event.identities] == PROFILE_ITEM["identities"]
    # Beginning a merge, or touching a merged tombstone again, is no event.
    assert events_from_stream_record(record("MODIFY", merging, PROFILE_ITEM)) == []
    again = {**MERGED_PROFILE_ITEM, "merged_at": "later"}
    assert events_from_stream_record(record("MODIFY", again, MERGED_PROFILE_ITEM)) == []


def test_items_a_merge_copies_are_not_announced_but_later_changes_are():
    copied = msg(INBOUND, merged_from=ABSORBED)
    assert events_from_stream_record(record("INSERT", copied)) == []
    conversation = {**CONVERSATION_ITEM, "merged_from": ABSORBED}
    assert events_from_stream_record(record("INSERT", conversation)) == []
    delivered = SENT.model_copy(update={"status": MessageStatus.DELIVERED})
    [event] = events_from_stream_record(
        record("MODIFY", msg(delivered, merged_from=ABSORBED), msg(SENT, merged_from=ABSORBED))
    )
    assert isinstance(event, MessageStatusChanged)
