"""Identity linking, customer merges and profile attributes against moto server.

The API handler and the Twilio handler are the real ones; merges also run through
``threadline.merge.Merger`` directly where a test must stop one half-way.
"""

# The Slack tests' fixtures are imported, which ruff reads as redefinitions when the
# tests take them as arguments.
# ruff: noqa: F811
from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.conftest import LambdaContext, http_api_event
from tests.integration.test_outbound import Pipeline
from tests.integration.test_slack import (  # noqa: F401
    _inline_raw,
    message_from,
    new_user,
    slack_identity,
    slack_module,
    slack_post,
)
from tests.integration.test_twilio_ingest import sms
from tests.unit import slack_payloads as sp
from threadline.channels.base import InboundMessage
from threadline.events import events_from_stream_record
from threadline.items import customer_pk
from threadline.merge import BATCH_ITEMS, STEPS, Merger, MergeStopped
from threadline.schema import Channel, Identity, TextPart


def _call(api_module, method: str, path: str, body: Any = None, query: str = "") -> dict:
    event = http_api_event(method, path, query=query)
    event["routeKey"] = "ANY /v1/{proxy+}"
    if body is not None:
        event["headers"]["content-type"] = "application/json"
        event["isBase64Encoded"] = False
        event["body"] = json.dumps(body)
    response: dict = api_module.lambda_handler(event, LambdaContext())
    return response


@pytest.fixture
def api(api_module):
    def call(method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:
        response = _call(api_module, method, path, body, query)
        return response["statusCode"], json.loads(response["body"] or "null")

    return call


def _number() -> str:
    return "+1555" + str(secrets.randbelow(9_000_000) + 1_000_000)


def _sid() -> str:
    return "SM" + secrets.token_hex(16)


@pytest.fixture
def customer(twilio_post, api):
    """A new SMS customer: (customer id, phone number)."""

    def make() -> tuple[str, str]:
        number = _number()
        assert twilio_post(sms(_sid(), sender=number))["statusCode"] == 200
        status, body = api("GET", "/v1/customers", query=f"identity=phone:{number}")
        assert status == 200, body
        return body["id"], number

    return make


def drained(stack) -> Pipeline:
    """A stream reader past every record so far (moto pages them 1000 at a time)."""
    pipeline = Pipeline(stack, None, None)
    while pipeline.stream_records():
        pass
    return pipeline


def merge_until_done(api, target: str, source: str, attempts: int = 5) -> tuple[int, Any]:
    """POST the merge until it is finished, as a client does with a 202 (resumable)."""
    for _ in range(attempts):
        status, result = api(
            "POST", f"/v1/customers/{target}/merge", {"source_customer_id": source}
        )
        if status != 202:
            return status, result
    return status, result


def partition(aws, customer_id: str) -> list[dict]:
    items: list[dict] = []
    start = None
    while True:
        query = {
            "TableName": aws.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": customer_pk(customer_id)}},
            "ConsistentRead": True,
        }
        if start:
            query["ExclusiveStartKey"] = start
        response = aws.dynamodb.query(**query)
        items.extend(response["Items"])
        start = response.get("LastEvaluatedKey")
        if not start:
            return items


def message_ids(aws, customer_id: str) -> list[str]:
    keys = [i["sk"]["S"] for i in partition(aws, customer_id)]
    return [k.removeprefix("MSG#") for k in keys if k.startswith("MSG#")]


def full_timeline(api, customer_id: str) -> list[dict]:
    items: list[dict] = []
    cursor = ""
    while True:
        query = "limit=100" + (f"&cursor={cursor}" if cursor else "")
        status, page = api("GET", f"/v1/customers/{customer_id}/timeline", query=query)
        assert status == 200, page
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


# ---------------------------------------------------------------------- linking


def test_linking_an_email_is_idempotent_and_a_taken_identity_answers_409(customer, api):
    ana, _ = customer()
    bob, _ = customer()
    email = {"kind": "email", "value": f"Ana.{secrets.token_hex(4)}@Example.COM"}

    status, body = api("POST", f"/v1/customers/{ana}/identities", email)
    assert status == 201, body
    canonical = f"email:{email['value'].lower()}"
    assert canonical in [f"{i['kind']}:{i['value']}" for i in body["identities"]]

    status, again = api("POST", f"/v1/customers/{ana}/identities", email)
    assert status == 200, again
    assert again["identities"] == body["identities"]  # not appended twice

    status, error = api("POST", f"/v1/customers/{bob}/identities", email)
    assert status == 409
    assert error["error"]["code"] == "identity_linked_elsewhere"
    assert error["error"]["details"]["customer_id"] == ana

    status, found = api("GET", "/v1/customers", query=f"identity={canonical}")
    assert status == 200 and found["id"] == ana


def test_linking_refuses_an_identity_that_is_not_canonicalisable(customer, api):
    ana, _ = customer()
    status, body = api("POST", f"/v1/customers/{ana}/identities", {"kind": "phone", "value": "12"})
    assert status == 400, body
    status, body = api(
        "POST", f"/v1/customers/{ana}/identities", {"kind": "fax", "value": "+15551234567"}
    )
    assert status == 400, body
    status, body = api(
        "POST", "/v1/customers/NOPE/identities", {"kind": "webchat", "value": "v_visitor01"}
    )
    assert status == 404, body


def test_link_with_merge_absorbs_the_owner_and_the_timeline_is_whole(customer, twilio_post, api):
    ana, ana_phone = customer()
    bob, bob_phone = customer()
    twilio_post(sms(_sid(), sender=bob_phone, body="second from bob"))

    link = {"kind": "phone", "value": bob_phone}
    status, body = api("POST", f"/v1/customers/{ana}/identities", link, "merge=true")
    assert status == 200, body
    assert body["id"] == ana
    phones = {i["value"] for i in body["identities"] if i["kind"] == "phone"}
    assert phones == {ana_phone, bob_phone}
    texts = Counter(m["sender"]["value"] for m in full_timeline(api, ana))
    assert texts == {ana_phone: 1, bob_phone: 2}
    status, via_alias = api("GET", f"/v1/customers/{bob}")
    assert status == 200 and via_alias["id"] == ana


# ---------------------------------------------------------------------- merging


def test_merge_moves_everything_and_the_source_id_stays_an_alias(customer, twilio_post, api, aws):
    target, _ = customer()
    source, source_phone = customer()
    for n in range(3):
        twilio_post(sms(_sid(), sender=source_phone, body=f"source {n}"))
    before = {m["id"] for m in full_timeline(api, source)} | {
        m["id"] for m in full_timeline(api, target)
    }
    status, cursor_page = api("GET", f"/v1/customers/{source}/timeline", query="limit=2")
    assert status == 200

    status, result = api("POST", f"/v1/customers/{target}/merge", {"source_customer_id": source})
    assert status == 200, result
    assert result["state"] == "merged"
    assert result["surviving_customer_id"] == target
    assert result["absorbed_customer_id"] == source

    after = full_timeline(api, target)
    assert {m["id"] for m in after} == before and len(after) == len(before)
    assert all(m["customer_id"] == target for m in after)
    ids = [m["id"] for m in after]
    assert ids == sorted(ids, reverse=True)  # ULIDs kept: still newest first

    # Only the tombstone stays behind, pointing at the survivor.
    (tombstone,) = partition(aws, source)
    assert tombstone["sk"]["S"] == "PROFILE"
    assert tombstone["merge_state"]["S"] == "merged"
    assert tombstone["merged_into"]["S"] == target
    assert "consent" not in tombstone and "display_name" not in tombstone

    # The alias resolves: profile, timeline (an old cursor too), lookup by identity.
    assert api("GET", f"/v1/customers/{source}")[1]["id"] == target
    assert [m["id"] for m in full_timeline(api, source)] == ids
    status, next_page = api(
        "GET", f"/v1/customers/{source}/timeline", query=f"cursor={cursor_page['next_cursor']}"
    )
    oldest_seen = cursor_page["items"][-1]["id"]
    assert status == 200 and all(m["id"] < oldest_seen for m in next_page["items"])
    assert api("GET", "/v1/customers", query=f"identity=phone:{source_phone}")[1]["id"] == target
    # A message from the absorbed number now lands on the survivor.
    twilio_post(sms(_sid(), sender=source_phone, body="after the merge"))
    assert len(full_timeline(api, target)) == len(before) + 1
    assert [i for i in partition(aws, source) if i["sk"]["S"] != "PROFILE"] == []

    # Merging again is a no-op; merging into itself or the other way round is refused.
    assert merge_until_done(api, target, source)[0] == 200
    status, error = api("POST", f"/v1/customers/{source}/merge", {"source_customer_id": target})
    assert status == 400 and error["error"]["code"] == "invalid_merge"
    status, error = api("POST", f"/v1/customers/{target}/merge", {"source_customer_id": "NOPE"})
    assert status == 404


def test_a_reply_sent_to_the_alias_goes_to_the_survivor(
    customer, api, stack, publisher_module, dispatcher_module, provider_sandbox
):
    pipeline = drained(stack)
    pipeline.publisher, pipeline.dispatcher = publisher_module, dispatcher_module
    while records := pipeline.receive(wait=False):
        pipeline.delete(records)
    target, _ = customer()
    source, _ = customer()
    # Queued before the merge, dispatched after it: the dispatcher follows the alias.
    status, queued = api("POST", f"/v1/customers/{source}/messages", {"text": "before"})
    assert status == 202
    assert merge_until_done(api, target, source)[0] == 200
    status, later = api("POST", f"/v1/customers/{source}/messages", {"text": "after"})
    assert status == 202 and later["customer_id"] == target
    for _ in range(3):
        pipeline.run()
    sent = [r.form["Body"][0] for r in provider_sandbox.outbox("twilio")]
    assert sorted(sent) == ["after", "before"]
    statuses = {m["id"]: m["status"] for m in full_timeline(api, target)}
    assert statuses[queued["id"]] == "sent" and statuses[later["id"]] == "sent"


def test_merge_events_no_message_is_announced_twice(customer, twilio_post, api, stack, aws_env):
    pipeline = drained(stack)
    target, _ = customer()
    source, source_phone = customer()
    twilio_post(sms(_sid(), sender=source_phone))
    pipeline_events = [e for r in pipeline.stream_records() for e in events_from_stream_record(r)]
    received_before = [e for e in pipeline_events if e.type == "message.received"]
    assert len(received_before) == 3

    email = {"kind": "email", "value": f"m.{secrets.token_hex(4)}@example.com"}
    assert api("POST", f"/v1/customers/{source}/identities", email)[0] == 201
    assert merge_until_done(api, target, source)[0] == 200
    events = [e for r in pipeline.stream_records() for e in events_from_stream_record(r)]
    types = Counter(e.type for e in events)
    assert types == {"customer.identity_linked": 1, "customer.merged": 1}, types
    (linked,) = [e for e in events if e.type == "customer.identity_linked"]
    assert linked.customer_id == source and linked.link_source == "api"
    assert str(linked.identity) == f"email:{email['value']}"
    (merged,) = [e for e in events if e.type == "customer.merged"]
    assert merged.customer_id == target == merged.surviving_customer_id
    assert merged.absorbed_customer_id == source
    assert {str(i) for i in merged.identities} == {f"phone:{source_phone}", str(linked.identity)}


@pytest.mark.parametrize("step", [s for s in STEPS if s != "finished"])
def test_a_merge_stopped_at_any_step_finishes_when_run_again(
    step, customer, twilio_post, api, api_module, aws
):
    target, _ = customer()
    source, source_phone = customer()
    for n in range(3):
        twilio_post(sms(_sid(), sender=source_phone, body=f"m{n}"))
    expected = set(message_ids(aws, source)) | set(message_ids(aws, target))

    def crash(at: str) -> None:
        if at == step:
            raise MergeStopped(at)

    # Batches of 1 item: "items_batch" strikes with most of the timeline still to move.
    with pytest.raises(MergeStopped):
        Merger(api_module.store, checkpoint=crash, batch_items=1).merge(source, target)
    # Half-way, the source already answers for the target, and no message is lost.
    assert api("GET", f"/v1/customers/{source}")[1]["id"] == target
    halfway = message_ids(aws, source) + message_ids(aws, target)
    assert sorted(halfway) == sorted(expected)
    # A message arriving mid-merge is not lost either.
    twilio_post(sms(_sid(), sender=source_phone, body="mid-merge"))

    status, result = api("POST", f"/v1/customers/{target}/merge", {"source_customer_id": source})
    assert status == 200 and result["state"] == "merged", result
    final = message_ids(aws, target)
    assert len(final) == len(set(final)) == len(expected) + 1
    assert set(final) > expected
    assert message_ids(aws, source) == []


def test_a_merge_bounded_by_max_items_resumes(customer, twilio_post, api_module, aws):
    target, _ = customer()
    source, source_phone = customer()
    for n in range(5):
        twilio_post(sms(_sid(), sender=source_phone, body=f"m{n}"))
    expected = set(message_ids(aws, source)) | set(message_ids(aws, target))
    merger = Merger(api_module.store)
    runs = 0
    while (result := merger.merge(source, target, max_items=2)).state != "merged":
        runs += 1
        assert result.moved_items == 2
        assert runs < 10
    assert runs >= 2
    assert set(message_ids(aws, target)) == expected


def test_merge_with_concurrent_inbound_traffic_loses_and_duplicates_nothing(
    customer, twilio_post, api, api_module, aws
):
    target, target_phone = customer()
    source, source_phone = customer()
    extra = [_number(), _number()]
    for number in extra:
        body = {"kind": "phone", "value": number}
        assert api("POST", f"/v1/customers/{source}/identities", body)[0] == 201
    for n in range(4):
        twilio_post(sms(_sid(), sender=source_phone, body=f"old {n}"))
    senders = [source_phone, *extra, target_phone]
    per_sender = 4
    sent: Counter[str] = Counter()
    lock = threading.Lock()
    started = threading.Event()
    merge_running = threading.Event()
    overlapped: list[int] = []

    def traffic(number: str) -> None:
        for _ in range(per_sender):
            response = twilio_post(sms(_sid(), sender=number, body="during"))
            assert response["statusCode"] == 200, response
            with lock:
                sent[number] += 1
                if merge_running.is_set():
                    overlapped.append(1)
            started.set()

    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        futures = [pool.submit(traffic, number) for number in senders]
        started.wait(30)
        merge_running.set()
        result = Merger(api_module.store, batch_items=2).merge(source, target)
        merge_running.clear()
        for future in futures:
            future.result()
    assert result.state == "merged"
    assert overlapped  # traffic really ran while the merge did
    assert sum(sent.values()) == per_sender * len(senders)

    timeline = full_timeline(api, target)
    ids = [m["id"] for m in timeline]
    assert len(ids) == len(set(ids))
    by_sender = Counter(m["sender"]["value"] for m in timeline if m["direction"] == "inbound")
    assert by_sender[source_phone] == 1 + 4 + sent[source_phone]
    assert by_sender[target_phone] == 1 + sent[target_phone]
    for number in extra:
        assert by_sender[number] == sent[number]
    assert [i["sk"]["S"] for i in partition(aws, source)] == ["PROFILE"]


def test_customers_with_different_crm_ids_merge_only_when_forced(customer, api):
    target, _ = customer()
    source, _ = customer()
    t_id, s_id = "003" + secrets.token_hex(6), "003" + secrets.token_hex(6)
    assert api("PATCH", f"/v1/customers/{target}", {"external_ids": {"salesforce": t_id}})[0] == 200
    patch = {"external_ids": {"salesforce": s_id, "hubspot": "hs-" + s_id}}
    assert api("PATCH", f"/v1/customers/{source}", patch)[0] == 200

    status, error = api("POST", f"/v1/customers/{target}/merge", {"source_customer_id": source})
    assert status == 409 and error["error"]["code"] == "external_id_conflict"
    assert error["error"]["details"]["salesforce"] == {"surviving": t_id, "absorbed": s_id}
    assert api("GET", f"/v1/customers/{source}")[1]["id"] == source  # untouched

    status, result = api(
        "POST", f"/v1/customers/{target}/merge", {"source_customer_id": source, "force": True}
    )
    assert status == 200, result
    survivor = api("GET", f"/v1/customers/{target}")[1]
    assert survivor["external_ids"] == {"salesforce": t_id, "hubspot": "hs-" + s_id}
    # Both CRM ids find the survivor: the adopted one directly, the other via the alias.
    for lookup in (f"salesforce:{t_id}", f"salesforce:{s_id}", f"hubspot:hs-{s_id}"):
        status, found = api("GET", "/v1/customers", query=f"external_id={lookup}")
        assert status == 200 and found["id"] == target, lookup


# ---------------------------------------------------------------------- profile


def test_patch_is_a_json_merge_patch(customer, api):
    ana, _ = customer()
    status, body = api(
        "PATCH",
        f"/v1/customers/{ana}",
        {"display_name": "Ana Example", "language": "pt-br", "tags": ["vip", "vip", "b2b"]},
    )
    assert status == 200, body
    assert (body["display_name"], body["language"], body["tags"]) == (
        "Ana Example",
        "pt-BR",
        ["vip", "b2b"],
    )
    status, body = api("PATCH", f"/v1/customers/{ana}", {"display_name": None, "tags": ["new"]})
    assert status == 200
    assert body["display_name"] is None and body["language"] == "pt-BR" and body["tags"] == ["new"]
    assert api("PATCH", f"/v1/customers/{ana}", {})[0] == 200
    for bad in ({"language": "english!"}, {"tags": [""]}, {"colour": "red"}, {"tags": "vip"}):
        status, error = api("PATCH", f"/v1/customers/{ana}", bad)
        assert status == 400, (bad, error)
    assert api("PATCH", "/v1/customers/NOPE", {"tags": ["x"]})[0] == 404


def test_external_ids_are_unique_and_found_by_lookup(customer, api, aws):
    ana, _ = customer()
    bob, _ = customer()
    first, second = "003" + secrets.token_hex(6), "003" + secrets.token_hex(6)

    assert api("PATCH", f"/v1/customers/{ana}", {"external_ids": {"salesforce": first}})[0] == 200
    status, found = api("GET", "/v1/customers", query=f"external_id=salesforce:{first}")
    assert status == 200 and found["id"] == ana and found["external_ids"] == {"salesforce": first}

    status, error = api("PATCH", f"/v1/customers/{bob}", {"external_ids": {"salesforce": first}})
    assert status == 409 and error["error"]["code"] == "external_id_taken"
    assert error["error"]["details"]["customer_id"] == ana
    assert api("GET", f"/v1/customers/{bob}")[1]["external_ids"] == {}

    # Changing Ana's id releases the old one (its pointer is deleted), which Bob can take.
    assert api("PATCH", f"/v1/customers/{ana}", {"external_ids": {"salesforce": second}})[0] == 200
    assert api("GET", "/v1/customers", query=f"external_id=salesforce:{first}")[0] == 404
    assert api("PATCH", f"/v1/customers/{bob}", {"external_ids": {"salesforce": first}})[0] == 200
    assert api("GET", "/v1/customers", query=f"external_id=salesforce:{first}")[1]["id"] == bob

    status, body = api("PATCH", f"/v1/customers/{ana}", {"external_ids": {"salesforce": None}})
    assert status == 200 and body["external_ids"] == {}
    assert api("GET", "/v1/customers", query=f"external_id=salesforce:{second}")[0] == 404
    pointers = aws.dynamodb.get_item(
        TableName=aws.table, Key={"pk": {"S": f"EXTID#salesforce#{second}"}, "sk": {"S": "EXTID"}}
    )
    assert "Item" not in pointers

    for query in ("external_id=salesforce", "external_id=Sales Force:1", ""):
        assert api("GET", "/v1/customers", query=query)[0] == 400, query
    both = "identity=phone:+15551230001&external_id=x:1"
    assert api("GET", "/v1/customers", query=both)[0] == 400


def test_concurrent_claims_of_one_external_id_leave_one_holder(customer, api):
    customers = [customer()[0] for _ in range(4)]
    value = "003" + secrets.token_hex(6)

    def claim(cid: str) -> int:
        return api("PATCH", f"/v1/customers/{cid}", {"external_ids": {"salesforce": value}})[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(claim, customers))
    assert sorted(statuses) == [200, 409, 409, 409]
    holder = customers[statuses.index(200)]
    assert api("GET", "/v1/customers", query=f"external_id=salesforce:{value}")[1]["id"] == holder
    owners = [c for c in customers if api("GET", f"/v1/customers/{c}")[1]["external_ids"]]
    assert owners == [holder]


def test_a_merge_writes_in_batches(customer, twilio_post, api_module, aws):
    target, _ = customer()
    source, source_phone = customer()
    batch = 2  # the default (BATCH_ITEMS) works the same, on more messages
    for n in range(2 * batch + 1):
        twilio_post(sms(_sid(), sender=source_phone, body=f"m{n}"))
    moving = len(partition(aws, source)) - 2  # all but the PROFILE and the open conversation
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client = api_module.store.dynamodb
    client.meta.events.register("before-call.dynamodb.*", record)
    try:
        result = Merger(api_module.store, batch_items=batch).merge(source, target)
    finally:
        client.meta.events.unregister("before-call.dynamodb.*", record)
    # The identity step takes the conversation(s) its hint names with it; under load
    # a message may open a second conversation, so the sweep moves at most the rest.
    assert result.state == "merged" and 0 < result.moved_items <= moving
    assert [i["sk"]["S"] for i in partition(aws, source)] == ["PROFILE"]
    counts = Counter(calls)
    # begin + one identity (with its conversation) + the items in batches + finish
    batches = -(-result.moved_items // batch)
    assert batches < result.moved_items and batch <= BATCH_ITEMS
    assert counts["TransactWriteItems"] == 1 + 1 + batches + 1, counts
    assert counts["Query"] == 2, counts  # one page of items, then the pass that finds none


# ---------------------------------------------------------------------- Slack


def _email_customer(address: str) -> str:
    from threadline.settings import store_settings
    from threadline.store import TimelineStore

    store = TimelineStore(store_settings())
    stored = store.ingest(
        InboundMessage(
            channel=Channel.EMAIL,
            provider="ses",
            provider_message_id="<" + secrets.token_hex(8) + "@example.com>",
            sender=Identity(kind="email", value=address),
            parts=[TextPart(text="My order is late")],
        ),
        _inline_raw(),
    )
    return stored.customer_id


def test_slacks_automatic_link_by_email_is_announced(
    slack_post, api, provider_sandbox, stack, aws_env
):
    pipeline = drained(stack)
    address = f"auto.{secrets.token_hex(3)}@example.com"
    owner = _email_customer(address)
    user = new_user()
    provider_sandbox.add_slack_user(user, email=address, real_name="Ana Example")
    assert slack_post(message_from(user, base=sp.DIRECT_MESSAGE))["statusCode"] == 200

    events = [e for r in pipeline.stream_records() for e in events_from_stream_record(r)]
    [linked] = [e for e in events if e.type == "customer.identity_linked"]
    assert linked.customer_id == owner
    assert str(linked.identity) == slack_identity(user)
    assert linked.link_source == "automatic"
    assert str(linked.linked_via) == f"email:{address}"


def test_a_slack_user_whose_email_was_merged_away_joins_the_survivor(
    slack_post, api, customer, provider_sandbox, aws_env
):
    target, _ = customer()
    address = f"moved.{secrets.token_hex(3)}@example.com"
    source = _email_customer(address)
    assert merge_until_done(api, target, source)[0] == 200
    user = new_user()
    provider_sandbox.add_slack_user(user, email=address, real_name="Ana Example")
    assert slack_post(message_from(user, base=sp.DIRECT_MESSAGE))["statusCode"] == 200
    status, found = api("GET", "/v1/customers", query=f"identity={slack_identity(user)}")
    assert status == 200 and found["id"] == target
    assert sorted(m["channel"] for m in full_timeline(api, target)) == ["email", "slack", "sms"]


def test_a_moved_conversation_still_resolves_by_its_id(customer, twilio_post, api):
    target, _ = customer()
    source, _ = customer()
    status, page = api("GET", f"/v1/customers/{source}/conversations")
    assert status == 200, page
    (conversation,) = page["items"]

    status, result = merge_until_done(api, target, source)
    assert status == 200, result

    # The pointer follows the conversation, so its id keeps working for CRMs.
    status, moved = api("GET", f"/v1/conversations/{conversation['id']}")
    assert status == 200, moved
    assert moved["customer_id"] == target
    status, closed = api("POST", f"/v1/conversations/{conversation['id']}/close")
    assert status == 200, closed
    assert closed["state"] == "closed"
    listed = {c["id"] for c in api("GET", f"/v1/customers/{target}/conversations")[1]["items"]}
    assert conversation["id"] in listed
