"""Filing inbound messages: the decisions of threadline.ingest against the in-memory
fake of the data-access interface (the DynamoDB side: tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit import twilio_payloads as tw
from tests.unit.fake_table import FakeTable
from threadline.channels.twilio.messaging import normalize_form
from threadline.conversations import KnownConversation, plan_inbound
from threadline.dal.base import Put, Update
from threadline.ingest_writes import BOOKKEEPING_REFRESH
from threadline.items import IDENT_SK, identity_item, identity_pk, profile_item
from threadline.outcomes import csat_pending
from threadline.schema import AuthorRole, Channel, Identity, IdentityKind, RawPayloadRef
from threadline.settings import StoreSettings
from threadline.store import KeptRaw, TimelineStore

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
QUIET = timedelta(hours=24)
RAW = KeptRaw(
    ref=RawPayloadRef(location="inline", content_type="application/json", size=2, sha256="0" * 64),
    inline="{}",
)


@pytest.fixture
def table() -> FakeTable:
    return FakeTable()


@pytest.fixture
def store(table: FakeTable) -> TimelineStore:
    settings = StoreSettings(table_name="threadline", raw_bucket="raw")
    return TimelineStore(settings, data=table, conversation_quiet_period=QUIET)


def sms(sid: str, sender: str = tw.CUSTOMER):
    return normalize_form(
        {**tw.SMS, "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "From": sender}
    )


def test_a_first_message_makes_a_customer_in_one_read_and_one_write(store, table):
    result = store.ingest(sms(tw.sid("SM", 901)), RAW, received_at=AT)

    assert result.customer_created and not result.duplicate
    assert table.calls == ["get", "write"]
    (writes,) = table.written
    assert {w.item["type"] for w in writes if isinstance(w, Put)} == {
        "dedup",
        "message",
        "identity",
        "customer",
        "conversation",
        "conversation_pointer",
    }
    (identity,) = table.of_type("identity")
    assert identity["customer_id"] == result.customer_id
    assert identity["conversation_channel"] == "sms"


def test_a_known_sender_costs_one_read_and_one_write_and_continues_the_conversation(store, table):
    first = store.ingest(sms(tw.sid("SM", 902)), RAW, received_at=AT)
    table.calls.clear()

    second = store.ingest(sms(tw.sid("SM", 903)), RAW, received_at=AT + timedelta(minutes=5))

    assert second.customer_id == first.customer_id and not second.customer_created
    assert table.calls == ["get", "write"]
    updates = [w for w in table.written[-1] if isinstance(w, Update)]
    conversation = next(u for u in updates if u.key[1].startswith("CONV#"))
    assert "ADD message_count" in conversation.expression
    assert len(table.of_type("customer")) == 1


def test_a_provider_retry_is_acknowledged_as_the_first_message(store, table):
    message = sms(tw.sid("SM", 904))
    first = store.ingest(message, RAW, received_at=AT)

    again = store.ingest(message, RAW, received_at=AT + timedelta(seconds=3))

    assert again.duplicate
    assert (again.message_id, again.customer_id) == (first.message_id, first.customer_id)
    assert len(table.of_type("message")) == 1


def test_a_new_identity_with_a_verified_one_of_a_customer_joins_that_customer(store, table):
    email = Identity(kind=IdentityKind.EMAIL, value="ana@example.com")
    owner = "01KNOWNCUSTOMER"
    table.items[(identity_pk(email), IDENT_SK)] = identity_item(email, owner, AT)
    profile = profile_item(
        owner,
        AT,
        display_name="Ana",
        identities=[str(email)],
        channel="email",
        open_conversation_id="01OLD",
        consent={},
        help_requested={},
    )
    table.items[(profile["pk"], profile["sk"])] = profile
    slack = sms(tw.sid("SM", 905)).model_copy(
        update={
            "channel": Channel.SLACK,
            "provider": "slack",
            "sender": Identity(kind=IdentityKind.SLACK, value="T123ABC456:U061F7AUR"),
            "verified_identities": [email],
        }
    )

    result = store.ingest(slack, RAW, received_at=AT)

    assert result.identity_linked and result.customer_id == owner
    linked = next(i for i in table.of_type("identity") if i["identity"].startswith("slack:"))
    assert linked["link_source"] == "automatic"
    assert linked["linked_via"] == str(email)


def test_identity_items_have_one_shape_whoever_links_them():
    phone = Identity(kind=IdentityKind.PHONE, value="+14155550100")
    by_api = identity_item(phone, "01C", AT, link_source="api")
    by_message = identity_item(phone, "01C", AT, conversation_id="01V", channel="sms")

    assert set(by_api) == set(by_message)
    assert by_api["linked_at"] == AT.isoformat() and by_message["linked_at"] is None
    assert by_message["last_message_at"] == AT.isoformat() and by_api["last_message_at"] is None


def known(last_message_at: datetime, channel: str | None = "sms") -> KnownConversation:
    return KnownConversation(
        id="01CONV", last_message_at=last_message_at.isoformat(), last_channel=channel
    )


def test_a_message_within_the_quiet_period_continues_the_conversation():
    plan = plan_inbound(
        "01C", known(AT), "sms", AuthorRole.CUSTOMER, AT + QUIET / 2, "01M", "01NEW", QUIET
    )

    assert plan.conversation_id == "01CONV" and not plan.opened
    (write,) = plan.writes
    assert isinstance(write, Update) and "channel_switches" not in write.expression


def test_a_message_on_another_channel_counts_a_switch():
    plan = plan_inbound(
        "01C", known(AT), "whatsapp", AuthorRole.CUSTOMER, AT, "01M", "01NEW", QUIET
    )

    (write,) = plan.writes
    assert isinstance(write, Update) and "channel_switches" in write.expression
    assert write.values[":switch"] == {
        "from": "sms",
        "to": "whatsapp",
        "message_id": "01M",
        "at": AT.isoformat(),
    }


def test_a_message_after_the_quiet_period_closes_the_old_conversation_and_opens_one():
    plan = plan_inbound(
        "01C", known(AT), "sms", AuthorRole.CUSTOMER, AT + QUIET, "01M", "01NEW", QUIET
    )

    assert plan.opened and plan.conversation_id == "01NEW"
    close, conversation, pointer = plan.writes
    assert isinstance(close, Update) and close.values[":closed_at"] == (AT + QUIET).isoformat()
    assert isinstance(conversation, Put) and conversation.item["state"] == "open"
    assert isinstance(pointer, Put) and pointer.item["customer_id"] == "01C"
    assert plan.profile_values == {":previous_conversation": "01CONV"}


def test_the_first_conversation_needs_no_open_one_on_the_profile():
    plan = plan_inbound("01C", None, "sms", AuthorRole.CUSTOMER, AT, "01M", "01NEW", QUIET)

    assert plan.opened
    assert plan.profile_condition == "attribute_not_exists(open_conversation_id)"


# ------------------------------------------------------------------ satisfaction answers


def asked(store: TimelineStore, table: FakeTable, sid: int) -> tuple[str, str]:
    """A customer whose conversation closed and whose phone was asked the question
    (the mark the outbound store leaves on the identity)."""
    first = store.ingest(sms(tw.sid("SM", sid)), RAW, received_at=AT)
    key = (identity_pk(Identity.parse(f"phone:{tw.CUSTOMER}")), IDENT_SK)
    conversation_id = str(table.items[key]["conversation_id"])
    table.items[key]["csat_pending"] = csat_pending(conversation_id, AT + timedelta(hours=1))
    table.calls.clear()
    return first.customer_id, conversation_id


def answer(sid: int, text: str):
    return normalize_form(
        {**tw.SMS, "MessageSid": tw.sid("SM", sid), "SmsSid": tw.sid("SM", sid), "Body": text}
    )


def test_a_score_answering_the_question_rates_the_conversation_at_the_same_cost(store, table):
    _, conversation_id = asked(store, table, 950)

    store.ingest(answer(951, "5"), RAW, received_at=AT + timedelta(hours=2))

    assert table.calls == ["get", "write"]  # what any message of a known sender costs
    writes = table.written[-1]
    puts = [w.item["type"] for w in writes if isinstance(w, Put)]
    assert sorted(puts) == ["dedup", "message"]  # no conversation opens
    (message,) = [w.item for w in writes if isinstance(w, Put) and w.item["type"] == "message"]
    assert message["conversation_id"] == conversation_id
    updates = {w.key[1].split("#")[0]: w for w in writes if isinstance(w, Update)}
    assert updates["CONV"].expression == "SET rating = :rating"
    assert updates["CONV"].values[":rating"]["score"] == 5
    assert updates["CONV"].key[1] == f"CONV#{conversation_id}"
    assert "last_csat = :rating" in updates["PROFILE"].expression
    assert "open_conversation_id" not in updates["PROFILE"].expression
    assert updates["IDENT"].expression == "REMOVE csat_pending"


def test_a_message_that_is_no_score_is_an_ordinary_message_and_ends_the_question(store, table):
    asked(store, table, 960)

    store.ingest(answer(961, "2 parcels are missing"), RAW, received_at=AT + timedelta(hours=2))

    assert table.calls == ["get", "write"]
    updates = [w for w in table.written[-1] if isinstance(w, Update)]
    assert not any("rating" in u.expression for u in updates)
    identity = next(u for u in updates if u.key[1] == IDENT_SK)
    assert identity.expression.endswith("REMOVE csat_pending")


def test_a_score_after_the_deadline_is_an_ordinary_message(store, table):
    asked(store, table, 970)

    store.ingest(answer(971, "5"), RAW, received_at=AT + timedelta(hours=26))

    assert not any("rating" in w.expression for w in table.written[-1] if isinstance(w, Update))


# ------------------------------------------------ what a known customer's message writes


def written_kinds(writes: list) -> list[str]:
    """The sort-key kind of each write of one transaction: DEDUP, MSG, CONV, IDENT..."""
    keys = [w.key if isinstance(w, Update) else (w.item["pk"], w.item["sk"]) for w in writes]
    return [sk.split("#")[0] for _, sk in keys]


def test_a_known_customers_message_in_its_conversation_writes_three_items(store, table):
    store.ingest(sms(tw.sid("SM", 1001)), RAW, received_at=AT)
    table.calls.clear()

    store.ingest(sms(tw.sid("SM", 1002)), RAW, received_at=AT + timedelta(minutes=1))

    assert table.calls == ["get", "write"]
    assert written_kinds(table.written[-1]) == ["DEDUP", "MSG", "CONV"]


def test_the_identity_and_profile_are_refreshed_once_the_hint_is_minutes_old(store, table):
    store.ingest(sms(tw.sid("SM", 1003)), RAW, received_at=AT)
    later = AT + BOOKKEEPING_REFRESH

    store.ingest(sms(tw.sid("SM", 1004)), RAW, received_at=later)

    assert written_kinds(table.written[-1]) == ["DEDUP", "MSG", "CONV", "IDENT", "PROFILE"]
    identity, profile = table.written[-1][3:]
    assert "last_message_at = :now" in identity.expression
    assert "last_inbound.#ch = :now" in profile.expression
    assert identity.values[":now"] == profile.values[":now"] == later.isoformat()


def test_a_channel_switch_refreshes_them_at_once(store, table):
    store.ingest(sms(tw.sid("SM", 1005)), RAW, received_at=AT)
    whatsapp = normalize_form({**tw.WHATSAPP_TEXT, "MessageSid": tw.sid("SM", 1006)})
    at = AT + timedelta(seconds=30)

    store.ingest(whatsapp, RAW, received_at=at)

    assert written_kinds(table.written[-1]) == ["DEDUP", "MSG", "CONV", "IDENT", "PROFILE"]
    profile = table.written[-1][-1]
    assert profile.names["#ch"] == "whatsapp" and profile.values[":now"] == at.isoformat()


def test_a_stop_keyword_is_recorded_on_the_profile_whatever_the_hint(store, table):
    store.ingest(sms(tw.sid("SM", 1007)), RAW, received_at=AT)
    stop = normalize_form({**tw.SMS, "MessageSid": tw.sid("SM", 1008), "Body": "STOP"})

    store.ingest(stop, RAW, received_at=AT + timedelta(seconds=10))

    profile = table.written[-1][-1]
    assert "consent.#identity = :consent" in profile.expression
    assert profile.names["#identity"] == f"phone:{tw.CUSTOMER}"
