"""Pollers wake as soon as their source has something (devstack.wakeups), not at their
next round: moto's SQS sends and DynamoDB stream writes signal the source's key."""

from __future__ import annotations

import threading
import time

import boto3
from moto import mock_aws

from devstack import wakeups
from devstack.pollers import Poller


class CountingPoller(Poller):
    def __init__(self, key: str) -> None:
        super().__init__("counting", interval=30.0, log=None)
        self.wake_key = key
        self.rounds = 0
        self.polled = threading.Event()

    def poll(self) -> bool:
        self.rounds += 1
        self.polled.set()
        return False


def test_a_signal_wakes_the_poller_of_that_source_only():
    mine, other = CountingPoller("sqs:mine"), CountingPoller("sqs:other")
    for poller in (mine, other):
        poller.start()
    try:
        for poller in (mine, other):
            assert poller.polled.wait(5)
            poller.polled.clear()
        started = time.monotonic()
        wakeups.signal("sqs:mine")
        assert mine.polled.wait(5)
        # Its interval is 30 s: only the signal can have woken it.
        assert time.monotonic() - started < 5
        assert mine.rounds == 2
        assert other.rounds == 1
    finally:
        for poller in (mine, other):
            poller.stop()
    assert not mine.running and not other.running


def test_a_poller_waiting_between_rounds_stops_at_once():
    poller = CountingPoller("sqs:idle")
    poller.start()
    assert poller.polled.wait(5)
    started = time.monotonic()
    poller.stop()
    assert not poller.running
    assert time.monotonic() - started < 5


@mock_aws
def test_moto_sends_and_stream_writes_signal_their_source():
    wakeups.signal_from_moto()
    wakeups.signal_from_moto()  # idempotent: one signal per send, not two
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
    key = wakeups.queue_key("deliveries")
    before = wakeups.generation(key)
    sqs.send_message(QueueUrl=url, MessageBody="one")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "two"}])
    assert wakeups.generation(key) == before + 2  # one per message

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="timeline",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    key = wakeups.table_key("timeline")
    before = wakeups.generation(key)
    dynamodb.put_item(TableName="timeline", Item={"pk": {"S": "a"}})
    assert wakeups.generation(key) == before + 1
