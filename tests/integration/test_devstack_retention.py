"""What the embedded AWS keeps per message stays bounded over a long session."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from devstack import retention
from devstack.stack import MotoServer


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


def test_an_archive_keeps_its_newest_events(moto, monkeypatch):
    monkeypatch.setattr(retention, "ARCHIVE_KEEP_EVENTS", 30)
    events = boto3.client(
        "events",
        endpoint_url=moto.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bus_arn = events.create_event_bus(Name="retention-bus")["EventBusArn"]
    events.create_archive(ArchiveName="retention-archive", EventSourceArn=bus_arn)
    for batch in range(5):
        events.put_events(
            Entries=[
                {
                    "EventBusName": "retention-bus",
                    "Source": "threadline.test",
                    "DetailType": "message.received",
                    "Detail": json.dumps({"n": batch * 10 + i}),
                }
                for i in range(10)
            ]
        )
    assert events.describe_archive(ArchiveName="retention-archive")["EventCount"] == 30

    from moto.backends import get_backend

    backend = get_backend("events")["123456789012"]["us-east-1"]
    kept = [event["detail"]["n"] for event in backend.archives["retention-archive"].events]
    assert kept == list(range(20, 50))
