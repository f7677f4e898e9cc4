"""The embedded DynamoDB under load: transactions cost what they touch, streams stay bounded.

moto copied every table a transaction named (stream records included), so a
transaction's cost grew with the table and functions timed out under load. These
tests hold the fix with ratios measured in the same run, never absolute times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack import isolation

BLOB = "x" * 1000  # items of a realistic size make a whole-table copy show


Clients = Callable[[str], Any]


@pytest.fixture(scope="module")
def moto(bare_moto_client: Clients) -> Clients:
    """Clients of the local stack's embedded moto (tests/integration/conftest.py)."""
    return bare_moto_client


class Table:
    def __init__(self, moto: Clients, name: str) -> None:
        self.name = name
        self.client = moto("dynamodb")
        self.streams = moto("dynamodbstreams")
        keys = [("pk", "HASH"), ("sk", "RANGE")]
        description = self.client.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
            KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in keys],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        self.stream_arn = description["TableDescription"]["LatestStreamArn"]
        self.count = 0

    def fill_to(self, count: int) -> None:
        while self.count < count:
            batch = min(25, count - self.count)
            requests = [
                {"PutRequest": {"Item": self._item(f"fill{self.count + i}")}} for i in range(batch)
            ]
            self.client.batch_write_item(RequestItems={self.name: requests})
            self.count += batch

    def transaction(self, prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": self._item(f"{prefix}-{i}"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for i in range(5)
        ]

    def timed_transaction(self, label: str) -> float:
        items = self.transaction(label)
        started = time.perf_counter()
        self.client.transact_write_items(TransactItems=items)
        self.count += 5
        return time.perf_counter() - started

    def get(self, pk: str) -> dict[str, Any] | None:
        return self.client.get_item(
            TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": "s"}}
        ).get("Item")

    def shard(self) -> dict[str, Any]:
        [shard] = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"][
            "Shards"
        ]
        return dict(shard)

    def iterator(self, kind: str = "TRIM_HORIZON") -> str:
        return str(
            self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=self.shard()["ShardId"], ShardIteratorType=kind
            )["ShardIterator"]
        )

    def read_all(self, iterator: str) -> tuple[list[dict[str, Any]], str]:
        records: list[dict[str, Any]] = []
        while True:
            response = self.streams.get_records(ShardIterator=iterator, Limit=100)
            records += response["Records"]
            if not response["Records"]:
                return records, iterator
            iterator = response["NextShardIterator"]

    @staticmethod
    def _item(pk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": "s"}, "blob": {"S": BLOB}}


def test_a_transaction_costs_the_same_on_a_large_table(moto):
    small, large = Table(moto, "cost-small"), Table(moto, "cost-large")
    small.fill_to(100)
    large.fill_to(2000)
    durations: dict[str, list[float]] = {"small": [], "large": []}
    # Alternating, so a busy moment of the machine falls on both; the fastest of each
    # is what the work costs.
    for round_ in range(9):
        durations["small"].append(small.timed_transaction(f"t{round_}"))
        durations["large"].append(large.timed_transaction(f"t{round_}"))
    fastest_small, fastest_large = min(durations["small"]), min(durations["large"])
    # moto alone: about 10x (it copied the whole table, stream included, each time).
    assert fastest_large < 3 * fastest_small, (
        f"5-item transaction: {fastest_small * 1000:.1f} ms at 100 items, "
        f"{fastest_large * 1000:.1f} ms at 2000"
    )


def test_a_cancelled_transaction_leaves_items_and_stream_as_they_were(moto):
    table = Table(moto, "cancel")
    table.client.put_item(TableName="cancel", Item={**Table._item("a"), "v": {"N": "1"}})
    table.client.put_item(TableName="cancel", Item=Table._item("taken"))
    records_before, iterator = table.read_all(table.iterator())
    with pytest.raises(ClientError, match="TransactionCanceled"):
        table.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "cancel",
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "s"}},
                        "UpdateExpression": "SET v = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": "cancel", "Item": Table._item("new")}},
                {
                    "Put": {
                        "TableName": "cancel",
                        "Item": {**Table._item("taken"), "v": {"N": "9"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert table.get("a")["v"] == {"N": "1"}
    assert table.get("new") is None
    assert "v" not in table.get("taken")
    assert len(records_before) == 2
    assert table.read_all(iterator)[0] == []  # nothing streamed for writes that never happened
    table.client.put_item(TableName="cancel", Item=Table._item("after"))
    [after] = table.read_all(iterator)[0]
    assert after["dynamodb"]["Keys"]["pk"] == {"S": "after"}


def test_stream_records_every_reader_has_read_are_dropped(moto, monkeypatch):
    monkeypatch.setattr(isolation, "KEEP_STREAM_RECORDS", 10)
    table = Table(moto, "trim")
    early = table.iterator()  # a second reader that never reads holds the records back
    first = table.shard()["SequenceNumberRange"]["StartingSequenceNumber"]
    reader = table.iterator()
    table.fill_to(60)
    records, reader = table.read_all(reader)
    assert len(records) == 60
    assert table.shard()["SequenceNumberRange"]["StartingSequenceNumber"] == first
    records, early = table.read_all(early)
    assert len(records) == 60  # it reads everything, then all may go
    table.fill_to(80)
    records, reader = table.read_all(reader)
    assert len(records) == 20
    assert len(table.read_all(table.iterator())[0]) == 20  # what `early` has not read yet
    records, early = table.read_all(early)
    assert len(records) == 20
    kept = table.read_all(table.iterator())[0]
    assert len(kept) == 10  # the newest KEEP_STREAM_RECORDS
    assert kept[-1]["dynamodb"]["SequenceNumber"] == records[-1]["dynamodb"]["SequenceNumber"]
    assert int(table.shard()["SequenceNumberRange"]["StartingSequenceNumber"]) > int(first)


def test_an_idle_reader_does_not_pile_up_iterators(moto):
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    table = Table(moto, "idle")
    backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
    iterator = table.iterator("LATEST")
    before = len(backend.shard_iterators)
    for _ in range(50):
        table.streams.get_records(ShardIterator=iterator)  # an empty read, as a poller does
    assert len(backend.shard_iterators) <= before + 1


def _put_partition(table: Table, pk: str, count: int) -> None:
    for start in range(0, count, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {"pk": {"S": pk}, "sk": {"S": f"m#{i:04d}"}, "n": {"N": str(i)}}
                }
            }
            for i in range(start, min(start + 25, count))
        ]
        table.client.batch_write_item(RequestItems={table.name: requests})


def _query_pages(table: Table, **query: Any) -> list[list[str]]:
    pages = []
    while True:
        response = table.client.query(TableName=table.name, **query)
        pages.append([item["sk"]["S"] for item in response["Items"]])
        if "LastEvaluatedKey" not in response:
            return pages
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def test_a_query_reads_its_partition_only_and_answers_as_before(moto, monkeypatch):
    table = Table(moto, "query-partition")
    table.fill_to(500)  # other partitions, one item each
    _put_partition(table, "customer", 60)
    keyed = {"KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)"}
    values = {":pk": {"S": "customer"}, ":p": {"S": "m#"}}
    # Paged both ways, with a range condition: the pages DynamoDB would give.
    forward = _query_pages(table, **keyed, ExpressionAttributeValues=values, Limit=25)
    assert [len(page) for page in forward] == [25, 25, 10]
    assert [sk for page in forward for sk in page] == [f"m#{i:04d}" for i in range(60)]
    backward = _query_pages(
        table, **keyed, ExpressionAttributeValues=values, Limit=40, ScanIndexForward=False
    )
    assert [sk for page in backward for sk in page] == [f"m#{i:04d}" for i in reversed(range(60))]
    only = _query_pages(
        table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "fill7"}},
    )
    assert only == [["s"]]
    assert _query_pages(
        table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "nobody"}},
    ) == [[]]
    # moto alone sorts the whole table for each query: that path must not be taken.
    from moto.dynamodb.models.table import Table as MotoTable

    whole_table_reads = []
    original = MotoTable.all_items
    monkeypatch.setattr(
        MotoTable, "all_items", lambda self: whole_table_reads.append(self.name) or original(self)
    )
    _query_pages(table, **keyed, ExpressionAttributeValues=values)
    assert whole_table_reads == []
    table.client.scan(TableName=table.name, Limit=1)  # a scan still reads the table
    assert whole_table_reads == [table.name]


def test_an_index_query_reads_the_items_its_key_matches_only(moto, monkeypatch):
    client = moto("dynamodb")
    client.create_table(
        TableName="query-index",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "bucket", "due")
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "due",
                "KeySchema": [
                    {"AttributeName": "bucket", "KeyType": "HASH"},
                    {"AttributeName": "due", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    requests = []
    for n in range(300):
        item = {"pk": {"S": f"c{n}"}, "sk": {"S": "conv"}}
        if n % 3 == 0:  # a sparse index: one item in three carries its keys
            item |= {"bucket": {"S": f"h{n % 2}"}, "due": {"S": f"{n:04d}"}}
        requests.append({"PutRequest": {"Item": item}})
    for start in range(0, len(requests), 25):
        client.batch_write_item(RequestItems={"query-index": requests[start : start + 25]})

    from moto.dynamodb.models.table import Table as MotoTable

    whole_table_reads = []
    original = MotoTable.all_items
    monkeypatch.setattr(
        MotoTable, "all_items", lambda self: whole_table_reads.append(self.name) or original(self)
    )
    found = client.query(
        TableName="query-index",
        IndexName="due",
        KeyConditionExpression="bucket = :b AND due <= :until",
        ExpressionAttributeValues={":b": {"S": "h0"}, ":until": {"S": "0100"}},
    )["Items"]
    expected = [f"{n:04d}" for n in range(0, 101, 6)]  # n % 3 == 0 and n % 2 == 0
    assert [item["due"]["S"] for item in found] == expected
    assert whole_table_reads == []
