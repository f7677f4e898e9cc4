"""Every event put on the template's EventBridge buses, kept for ``GET /_dev/events``.

Built from real parts, so what it shows is what a subscriber would get: at start a
catch-all rule on each ``AWS::Events::EventBus`` of the template sends every event
to a dev-only SQS queue (both created in the embedded AWS, never in the template),
and a poller drains that queue into memory. Each entry is the event exactly as
EventBridge delivered it (``id``, ``detail-type``, ``source``, ``time``,
``detail``, ...).

With a lake, each batch's events (their ``detail``, as the template's analytics rule
sends them to Firehose) are also written as the lake's JSON-lines files, so
``make report`` sees what Athena would.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TextIO

from devstack.aws import AwsTarget
from devstack.pollers import DEFAULT_POLL_INTERVAL, QueuePoller
from devstack.resources import StackResources
from threadline_analytics.lake import LakeWriter

EVENT_BUS = "AWS::Events::EventBus"
RULE_NAME = "devstack-all-events"
# Matches every event: EventBridge has no "match all" pattern, but every event
# has a source and every string starts with "".
CATCH_ALL_PATTERN = json.dumps({"source": [{"prefix": ""}]})
# A long session must not grow without bound; the newest events are the ones kept.
DEFAULT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class _KeptEvent:
    """One event as its JSON text (about a third of the memory of the parsed dict)
    and the two fields :meth:`EventLog.events` filters on."""

    detail_type: str | None
    customer_id: str | None
    text: str


class EventLog:
    """The events of some buses, oldest first, filled by :meth:`poller`."""

    def __init__(
        self,
        aws: AwsTarget,
        buses: list[str],
        queue_name: str,
        *,
        limit: int = DEFAULT_LIMIT,
        lake: LakeWriter | None = None,
    ) -> None:
        self.aws = aws
        self.lake = lake
        self.buses = buses
        self.queue_name = queue_name
        self.queue_url: str | None = None
        self.queue_arn: str | None = None
        self._events: deque[_KeptEvent] = deque(maxlen=limit)
        self._lock = threading.Lock()

    @classmethod
    def for_stack(
        cls, stack: StackResources, *, limit: int = DEFAULT_LIMIT, lake: LakeWriter | None = None
    ) -> EventLog:
        """One log for every bus of the stack's template."""
        buses = [
            stack.physical_id(logical_id)
            for logical_id in stack
            if stack[logical_id].type == EVENT_BUS
        ]
        queue_name = f"{stack.pseudo.stack_name}-devstack-events"[:80]
        return cls(stack.aws, buses, queue_name, limit=limit, lake=lake)

    def provision(self) -> None:
        """Create the queue and the catch-all rules; forget what an earlier run left."""
        sqs = self.aws.client("sqs")
        self.queue_url = str(sqs.create_queue(QueueName=self.queue_name)["QueueUrl"])
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.queue_arn = str(attributes["Attributes"]["QueueArn"])
        # A persistent AWS_ENDPOINT_URL keeps the queue between runs; its old events
        # belong to the last run, not this one.
        with contextlib.suppress(sqs.exceptions.PurgeQueueInProgress):
            sqs.purge_queue(QueueUrl=self.queue_url)
        events = self.aws.client("events")
        rule_arns = []
        for bus in self.buses:
            rule_arns.append(
                events.put_rule(
                    Name=RULE_NAME,
                    EventBusName=bus,
                    EventPattern=CATCH_ALL_PATTERN,
                    State="ENABLED",
                    Description="devstack: every event, for GET /_dev/events (local only)",
                )["RuleArn"]
            )
            events.put_targets(
                Rule=RULE_NAME,
                EventBusName=bus,
                Targets=[{"Id": "devstack-event-log", "Arn": self.queue_arn}],
            )
        # What EventBridge needs to send to a queue (moto does not check it; AWS does).
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": self.queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)})

    def poller(
        self, *, interval: float = DEFAULT_POLL_INTERVAL, log: TextIO | None = None
    ) -> QueuePoller:
        assert self.queue_arn is not None, "provision() first"
        buses = ", ".join(self.buses)
        return QueuePoller(
            "events",
            self.aws,
            self.queue_arn,
            self.record,
            interval=interval,
            log=log,
            description=f"EventBridge {buses} -> GET /_dev/events (catch-all rule, dev queue)",
        )

    def record(self, records: list[dict[str, Any]]) -> Collection[str]:
        """Keep a batch of the dev queue's messages; none ever fails."""
        kept = []
        details = []
        for record in records:
            text = record["body"]
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {"undecodable": text}
                text = json.dumps(event)
            detail_type = event.get("detail-type")
            kept.append(
                _KeptEvent(
                    detail_type if isinstance(detail_type, str) else None,
                    _customer_of(event),
                    text,
                )
            )
            if isinstance(event.get("detail"), dict):
                details.append(event["detail"])
        with self._lock:
            self._events.extend(kept)
        if self.lake is not None:
            self.lake.write(details)
        return ()

    def events(
        self, detail_type: str | None = None, *, customer_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The events kept, oldest first; filtered by ``detail-type`` and customer."""
        events: list[dict[str, Any]] = json.loads(self.events_json(detail_type, customer_id))
        return events

    def events_json(self, detail_type: str | None = None, customer_id: str | None = None) -> str:
        """:meth:`events` as a JSON array, joined from the kept texts (none decoded:
        ``threadline events --follow`` asks for them twice a second)."""
        with self._lock:
            events = list(self._events)
        return (
            "["
            + ",".join(
                event.text
                for event in events
                if (detail_type is None or event.detail_type == detail_type)
                and (customer_id is None or event.customer_id == customer_id)
            )
            + "]"
        )

    def clear(self) -> None:
        with self._lock:
            self._events.clear()


def _customer_of(event: dict[str, Any]) -> str | None:
    detail = event.get("detail")
    customer_id = detail.get("customer_id") if isinstance(detail, dict) else None
    return customer_id if isinstance(customer_id, str) else None
