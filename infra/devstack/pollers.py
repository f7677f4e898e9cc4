"""Lambda's event source mappings, locally: SQS queues and DynamoDB streams feed functions.

Deployed, Lambda itself polls a function's ``Type: SQS`` and ``Type: DynamoDB``
event sources and invokes the function with batches; locally each such event gets
a :class:`QueuePoller` or a :class:`StreamPoller` on its own thread, reading the
embedded AWS through boto3 and invoking through the function runtime, with the
semantics the Lambda documentation gives:

* DynamoDB streams: records in order per shard, from ``StartingPosition``; a batch
  is sent when it holds ``BatchSize`` records or ``MaximumBatchingWindowInSeconds``
  has passed since its first record (or it reaches the 6 MB payload limit). With
  ``ReportBatchItemFailures`` the lowest reported sequence number is the
  checkpoint: records before it are done, the rest are retried. A function error
  (or an unusable failure report) retries the whole batch, split in two first if
  ``BisectBatchOnFunctionError`` is set. Past ``MaximumRetryAttempts`` (or
  ``MaximumRecordAgeInSeconds``) the failed records' description goes to the
  ``OnFailure`` destination and the shard moves on. Retries come one poll
  interval apart.
* SQS: up to ``BatchSize`` messages per invoke; the ones that succeeded are
  deleted (all, unless ``batchItemFailures`` names some; none after a function
  error). Failed messages are left to their visibility timeout, and the queue's
  own redrive policy moves them to its dead-letter queue.

A function is never invoked with an empty batch.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from devstack import wakeups
from devstack.aws import AwsTarget
from devstack.functions import EventSource, FunctionSpec, event_sources
from devstack.resources import StackResources
from devstack.runtime import Invocation
from devstack.template import TemplateError

DEFAULT_POLL_INTERVAL = 0.25
# Empty rounds in a row (about 5 s at the default interval) before polling slows down.
IDLE_ROUNDS_BEFORE_SLOWING = 20
# Lambda's limit for a synchronous invocation's payload.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# DynamoDB Streams keeps records for 24 hours: "retry forever" ends there.
STREAM_RETENTION_SECONDS = 24 * 3600
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
STOP_TIMEOUT_SECONDS = 5.0

Invoke = Callable[[str, dict[str, Any]], Invocation]
# A batch consumer: given Lambda-shaped SQS records, the messageIds that failed.
QueueConsumer = Callable[[list[dict[str, Any]]], Collection[str]]


# --------------------------------------------------------------------- mappings


@dataclass(frozen=True)
class StreamMapping:
    """One ``Type: DynamoDB`` event, with Lambda's defaults filled in."""

    function: str  # logical id
    function_arn: str
    event: str
    stream_arn: str
    starting_position: str
    batch_size: int = 100
    batching_window: float = 0.0
    max_retries: int = -1  # -1: until the record leaves the stream
    max_record_age: float = -1
    bisect: bool = False
    report_item_failures: bool = False
    on_failure: str | None = None  # destination ARN


@dataclass(frozen=True)
class QueueMapping:
    """One ``Type: SQS`` event, with Lambda's defaults filled in."""

    function: str
    function_arn: str
    event: str
    queue_arn: str
    batch_size: int = 10
    batching_window: float = 0.0
    report_item_failures: bool = False


EventSourceMapping = StreamMapping | QueueMapping


@dataclass(frozen=True)
class MappingsFound:
    mappings: list[EventSourceMapping]
    # One line each for what the local stack reads but does not apply.
    notes: list[str] = field(default_factory=list)


EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
_STREAM_KEYS = {
    "FunctionName",
    "EventSourceArn",
    "StartingPosition",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
    "DestinationConfig",
    "Enabled",
}
_QUEUE_KEYS = {
    "FunctionName",
    "EventSourceArn",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "FunctionResponseTypes",
    "Enabled",
}


def event_source_mappings(
    stack: StackResources, functions: Mapping[str, FunctionSpec]
) -> MappingsFound:
    """The SQS and DynamoDB-stream ``AWS::Lambda::EventSourceMapping``s of ``functions``.

    Values a deploy would reject (a batch size out of range, an unknown starting
    position) raise :class:`TemplateError`, so they fail locally as in AWS.
    """
    mappings: list[EventSourceMapping] = []
    notes: list[str] = []
    sources = event_sources(stack, functions, EVENT_SOURCE_MAPPING, lambda p: p.get("FunctionName"))
    for source in sources:
        where = f"{source.function} event {source.event}"
        if source.error is not None:
            # The other event sources still run.
            notes.append(
                f"{where}: not polled, its properties could not be resolved: {source.error}"
            )
            continue
        arn = str(source.properties.get("EventSourceArn") or "")
        if not _flag(source.properties.get("Enabled", True)):
            notes.append(f"{where}: Enabled is false; not polled")
        elif ":dynamodb:" in arn:
            mappings.append(_stream_mapping(functions[source.function], source, where))
            notes += _ignored(where, source, _STREAM_KEYS)
        elif ":sqs:" in arn:
            mappings.append(_queue_mapping(functions[source.function], source, where))
            notes += _ignored(where, source, _QUEUE_KEYS)
        else:
            notes.append(f"{where}: {arn or 'this event source'} is not fed locally yet")
    return MappingsFound(mappings, notes)


def _stream_mapping(spec: FunctionSpec, event: EventSource, where: str) -> StreamMapping:
    properties = event.properties
    stream = properties.get("EventSourceArn")
    if not isinstance(stream, str) or ":dynamodb:" not in stream:
        raise TemplateError(f"{where}: Stream must be a DynamoDB stream ARN, not {stream!r}")
    position = str(properties.get("StartingPosition") or "")
    if position not in {"TRIM_HORIZON", "LATEST"}:
        raise TemplateError(
            f"{where}: StartingPosition must be TRIM_HORIZON or LATEST, not {position!r}"
        )
    destination = None
    on_failure = (properties.get("DestinationConfig") or {}).get("OnFailure") or {}
    if on_failure:
        destination = str(on_failure.get("Destination") or "") or None
    return StreamMapping(
        function=spec.logical_id,
        function_arn=spec.arn,
        event=event.event,
        stream_arn=stream,
        starting_position=position,
        batch_size=_number(properties, "BatchSize", 100, 1, 10000, where),
        batching_window=_number(properties, "MaximumBatchingWindowInSeconds", 0, 0, 300, where),
        max_retries=_number(properties, "MaximumRetryAttempts", -1, -1, 10000, where),
        max_record_age=_record_age(properties, where),
        bisect=_flag(properties.get("BisectBatchOnFunctionError")),
        report_item_failures=_reports_failures(properties),
        on_failure=destination,
    )


def _queue_mapping(spec: FunctionSpec, event: EventSource, where: str) -> QueueMapping:
    properties = event.properties
    queue = properties.get("EventSourceArn")
    if not isinstance(queue, str) or not queue.startswith("arn:") or ":sqs:" not in queue:
        raise TemplateError(f"{where}: Queue must be an SQS queue ARN, not {queue!r}")
    batch_size = _number(properties, "BatchSize", 10, 1, 10000, where)
    window = _number(properties, "MaximumBatchingWindowInSeconds", 0, 0, 300, where)
    if batch_size > 10 and window < 1:
        raise TemplateError(
            f"{where}: a BatchSize over 10 needs MaximumBatchingWindowInSeconds of 1 or more"
        )
    return QueueMapping(
        function=spec.logical_id,
        function_arn=spec.arn,
        event=event.event,
        queue_arn=queue,
        batch_size=batch_size,
        batching_window=window,
        report_item_failures=_reports_failures(properties),
    )


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _reports_failures(properties: Mapping[str, Any]) -> bool:
    return REPORT_BATCH_ITEM_FAILURES in (properties.get("FunctionResponseTypes") or [])


def _number(
    properties: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str
) -> int:
    raw = properties.get(key, default)
    try:
        value = int(str(raw))
    except ValueError:
        raise TemplateError(f"{where}: {key} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise TemplateError(f"{where}: {key} must be between {low} and {high}, not {value}")
    return value


def _record_age(properties: Mapping[str, Any], where: str) -> float:
    age = _number(properties, "MaximumRecordAgeInSeconds", -1, -1, 604800, where)
    if 0 <= age < 60:
        raise TemplateError(f"{where}: MaximumRecordAgeInSeconds must be -1 or 60 to 604800")
    return float(age)


def _ignored(where: str, event: EventSource, handled: set[str]) -> list[str]:
    ignored = sorted(set(event.properties) - handled)
    return [f"{where}: not applied locally: {', '.join(ignored)}"] if ignored else []


# ---------------------------------------------------------------------- pollers


class Poller:
    """A loop on its own thread that calls :meth:`poll` until the stack stops."""

    def __init__(self, name: str, *, interval: float, log: TextIO | None) -> None:
        self.name = name
        self.interval = interval
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"devstack-{name}", daemon=True)
        # Paused (POST /_dev/functions/<id>/stop): no rounds until resumed; held
        # during a round so pausing can wait for the one in progress.
        self._paused = threading.Event()
        self._round = threading.Lock()
        # What signals that the source has something (devstack.wakeups); None: the
        # interval alone.
        self.wake_key: str | None = None

    def describe(self) -> str:
        """One line for the console: what feeds what, and how."""
        return self.name

    def prepare(self) -> None:
        """Check the source exists (and take LATEST positions) before the thread starts."""

    def poll(self) -> bool:
        """One round; True when there may be more work at once, False to wait a while."""
        raise NotImplementedError

    def holding(self) -> bool:
        """True while records wait in memory (a batching window, a retry)."""
        return False

    def start(self) -> Poller:
        self.prepare()
        self._thread.start()
        return self

    def signal_stop(self) -> None:
        self._stop.set()
        wakeups.wake_all()

    def join(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stop(self) -> None:
        self.signal_stop()
        self.join()

    def pause(self) -> None:
        """Start no more rounds; return once the round in progress (if any) is over."""
        self._paused.set()
        with self._round:
            pass

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        errors = 0
        idle = 0
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(self.interval)
                continue
            # Taken before the round: what arrives during it is polled for at once.
            seen = wakeups.generation(self.wake_key) if self.wake_key else 0
            try:
                with self._round:
                    busy = False if self._paused.is_set() else self.poll()
                errors = 0
            except Exception as exc:  # one bad round must not end the loop for good
                if self._stop.is_set():
                    break
                errors += 1
                # The first error and then one in fifty: the console stays readable
                # while an endpoint is down, and still says that it is.
                if errors == 1 or errors % 50 == 0:
                    self._say(f"{type(exc).__name__}: {exc} (polling again)")
                busy = False
            idle = 0 if busy or self.holding() else idle + 1
            if not busy:
                # A quiet source is polled half as often (each poll is an AWS call),
                # and at the full rate again as soon as it has work.
                quiet = idle > IDLE_ROUNDS_BEFORE_SLOWING
                pause = self.interval * (2 if quiet else 1)
                if self.wake_key is None or self.holding():
                    self._stop.wait(pause)
                else:
                    wakeups.wait(self.wake_key, seen, pause, self._stop)

    def _say(self, line: str) -> None:
        stream = self._log if self._log is not None else sys.stderr
        print(f"[poller] {self.name}: {line}", file=stream, flush=True)


# ------------------------------------------------------------------------- SQS


class QueuePoller(Poller):
    """Receives from one SQS queue and hands each batch to :meth:`consume`."""

    def __init__(
        self,
        name: str,
        aws: AwsTarget,
        queue_arn: str,
        consume: QueueConsumer | None = None,
        *,
        batch_size: int = 10,
        batching_window: float = 0.0,
        interval: float = DEFAULT_POLL_INTERVAL,
        log: TextIO | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(name, interval=interval, log=log)
        self.aws = aws
        self.queue_arn = queue_arn
        self._consume = consume
        self.batch_size = batch_size
        self.batching_window = batching_window
        self.description = description
        self.queue_url: str | None = None
        self._pending: list[dict[str, Any]] = []
        self._first_at: float | None = None
        self.wake_key = wakeups.queue_key(queue_arn.rsplit(":", 1)[-1])

    def describe(self) -> str:
        return self.description or f"SQS {self.queue_arn.rsplit(':', 1)[-1]} -> {self.name}"

    def prepare(self) -> None:
        self.queue_url = queue_url(self.aws, self.queue_arn)

    def holding(self) -> bool:
        return bool(self._pending)

    def consume(self, records: list[dict[str, Any]]) -> Collection[str]:
        """Handle one batch; the messageIds that failed (they are not deleted)."""
        assert self._consume is not None, "give a consumer or override consume()"
        return self._consume(records)

    def poll(self) -> bool:
        assert self.queue_url is not None, "prepare() first"
        received = self._receive(min(10, self.batch_size - len(self._pending)))
        if received and self._first_at is None:
            self._first_at = time.monotonic()
        self._pending += received
        if not self._pending:
            return False
        full = len(self._pending) >= self.batch_size
        assert self._first_at is not None
        waited = time.monotonic() - self._first_at >= self.batching_window
        if not (full or waited):
            # A full receive suggests more is waiting: fill the batch at once.
            return len(received) == 10
        batch, self._pending, self._first_at = self._pending, [], None
        failed = set(self.consume(batch))
        done = [record for record in batch if record["messageId"] not in failed]
        self._delete(done)
        return True

    def _receive(self, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        response = self.aws.client("sqs").receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=limit,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            # Short polls, so stopping never waits on a long poll in flight.
            WaitTimeSeconds=0,
        )
        return [self._lambda_record(message) for message in response.get("Messages", [])]

    def _lambda_record(self, message: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": {
                name: _lambda_message_attribute(value)
                for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": _arn_region(self.queue_arn) or self.aws.region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def _delete(self, records: Sequence[Mapping[str, Any]]) -> None:
        client = self.aws.client("sqs")
        for start in range(0, len(records), 10):  # DeleteMessageBatch takes at most 10
            chunk = records[start : start + 10]
            response = client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
                    for index, record in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                # The message comes back after its visibility timeout, as in Lambda.
                self._say(f"{len(response['Failed'])} processed messages could not be deleted")


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [_b64(v) for v in value.get("BinaryListValues") or []],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    return attribute


class FunctionQueuePoller(QueuePoller):
    """Invokes a function with each SQS batch, as Lambda's SQS integration does."""

    def __init__(
        self,
        mapping: QueueMapping,
        aws: AwsTarget,
        invoke: Invoke,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
        log: TextIO | None = None,
        source_name: str | None = None,
    ) -> None:
        source = source_name or mapping.queue_arn.rsplit(":", 1)[-1]
        parts = [f"batch {mapping.batch_size}"]
        if mapping.batching_window:
            parts.append(f"window {mapping.batching_window:g} s")
        if mapping.report_item_failures:
            parts.append("partial batch failures")
        super().__init__(
            mapping.function,
            aws,
            mapping.queue_arn,
            batch_size=mapping.batch_size,
            batching_window=mapping.batching_window,
            interval=interval,
            log=log,
            description=f"SQS {source} -> {mapping.function} ({', '.join(parts)})",
        )
        self.mapping = mapping
        self.invoke = invoke

    def consume(self, records: list[dict[str, Any]]) -> set[str]:
        ids = [record["messageId"] for record in records]
        invocation = self.invoke(self.mapping.function, {"Records": records})
        count = _count(len(records), "message")
        timing = _timing(invocation)
        if not invocation.ok:
            self._say(
                f"{count}, function error {invocation.error_type}: {invocation.error_message} "
                f"{timing}; none deleted, they return after their visibility timeout"
            )
            return set(ids)
        if not self.mapping.report_item_failures:
            self._say(f"{count} ok {timing}")
            return set()
        failed = _reported_failures(invocation.payload, ids)
        if failed is None:
            self._say(f"{count}: unusable batchItemFailures answer {timing}; none deleted")
            return set(ids)
        if failed:
            deleted = len(ids) - len(failed)
            self._say(f"{count}, {len(failed)} failed {timing}; {deleted} deleted")
        else:
            self._say(f"{count} ok {timing}")
        return failed


def _reported_failures(payload: Any, identifiers: Sequence[str]) -> set[str] | None:
    """The identifiers a ``batchItemFailures`` answer names; None when it is unusable.

    Lambda reads a missing, null or empty list as "all succeeded", and an entry
    whose ``itemIdentifier`` is missing, empty or not in the batch as "all failed".
    """
    failures = payload.get("batchItemFailures") if isinstance(payload, dict) else None
    if not failures:
        return set()
    if not isinstance(failures, list):
        return None
    known = set(identifiers)
    named: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in known:
            return None
        named.add(identifier)
    return named


# --------------------------------------------------------------- DynamoDB streams


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    retries: int = 0


@dataclass
class _Shard:
    id: str
    parent: str | None
    start: str  # iterator type for its first read
    iterator: str | None = None
    last_read: str | None = None  # sequence number, to find our place again
    closed: bool = False
    buffer: list[dict[str, Any]] = field(default_factory=list)
    first_buffered_at: float | None = None
    retry: deque[_Batch] = field(default_factory=deque)

    @property
    def done(self) -> bool:
        return self.closed and not self.buffer and not self.retry


class StreamPoller(Poller):
    """Reads one DynamoDB stream, shard by shard in order, and invokes a function."""

    # A stream's shards change every few hours in DynamoDB; looking once in a
    # while finds new ones without a describe call per poll.
    DESCRIBE_EVERY_SECONDS = 10.0

    def __init__(
        self,
        mapping: StreamMapping,
        aws: AwsTarget,
        invoke: Invoke,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
        log: TextIO | None = None,
        source_name: str | None = None,
        destination_name: str | None = None,
    ) -> None:
        super().__init__(mapping.function, interval=interval, log=log)
        self.mapping = mapping
        self.source_name = source_name
        self.aws = aws
        self.invoke = invoke
        self.destination_name = destination_name
        self._shards: dict[str, _Shard] = {}
        self._next_describe = 0.0
        self._primed = False
        self.wake_key = wakeups.table_key(
            mapping.stream_arn.split(":table/", 1)[-1].split("/", 1)[0]
        )

    def describe(self) -> str:
        m = self.mapping
        table = self.source_name or m.stream_arn.split(":table/", 1)[-1].split("/", 1)[0]
        parts = [f"batch {m.batch_size}"]
        if m.batching_window:
            parts.append(f"window {m.batching_window:g} s")
        parts.append(m.starting_position)
        parts.append(
            "retries until the record expires" if m.max_retries < 0 else f"retries {m.max_retries}"
        )
        if m.bisect:
            parts.append("bisect on error")
        if m.report_item_failures:
            parts.append("partial batch failures")
        if m.on_failure:
            parts.append(f"on failure -> {self.destination_name or m.on_failure}")
        return f"DynamoDB stream of {table} -> {m.function} ({', '.join(parts)})"

    def prepare(self) -> None:
        # LATEST means "from when the mapping was created": take the positions now,
        # not on the thread's first round.
        self._discover()
        for shard in self._shards.values():
            if shard.start == "LATEST":
                shard.iterator = self._iterator(shard)

    def holding(self) -> bool:
        return any(shard.buffer or shard.retry for shard in self._shards.values())

    def poll(self) -> bool:
        if time.monotonic() >= self._next_describe:
            self._discover()
        busy = False
        for shard in list(self._shards.values()):
            if shard.done or self.stopping:
                continue
            parent = self._shards.get(shard.parent or "")
            if parent is not None and not parent.done:
                continue  # a child shard's records come after all of its parent's
            busy = self._poll_shard(shard) or busy
        return busy

    # -- reading

    def _discover(self) -> None:
        client = self.aws.client("dynamodbstreams")
        request: dict[str, Any] = {"StreamArn": self.mapping.stream_arn}
        while True:
            description = client.describe_stream(**request)["StreamDescription"]
            for shard in description.get("Shards") or []:
                shard_id = shard["ShardId"]
                if shard_id in self._shards:
                    continue
                # The starting position applies to the shards there at the start;
                # shards that appear later are read from their beginning.
                start = self.mapping.starting_position if not self._primed else "TRIM_HORIZON"
                self._shards[shard_id] = _Shard(shard_id, shard.get("ParentShardId"), start)
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            request["ExclusiveStartShardId"] = last
        self._primed = True
        self._next_describe = time.monotonic() + self.DESCRIBE_EVERY_SECONDS

    def _iterator(self, shard: _Shard) -> str:
        request: dict[str, Any] = {"StreamArn": self.mapping.stream_arn, "ShardId": shard.id}
        if shard.last_read is not None:
            request.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_read
            )
        else:
            request["ShardIteratorType"] = shard.start
        return str(
            self.aws.client("dynamodbstreams").get_shard_iterator(**request)["ShardIterator"]
        )

    def _read(self, shard: _Shard, limit: int) -> list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        client = self.aws.client("dynamodbstreams")
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        try:
            response = client.get_records(ShardIterator=shard.iterator, Limit=limit)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExpiredIteratorException":
                shard.iterator = None  # iterators last 15 minutes; take a new one next round
                return []
            raise
        records = [self._lambda_record(record) for record in response.get("Records") or []]
        following = response.get("NextShardIterator")
        if following is None:
            shard.closed = True
        # An empty read leaves the position where it was, and an iterator may be used
        # again until it expires: keeping it spares moto an iterator per idle poll
        # (it keeps every one it hands out).
        if records or following is None:
            shard.iterator = following
        if records:
            shard.last_read = records[-1]["dynamodb"]["SequenceNumber"]
        return records

    def _lambda_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = _as_lambda_json(record)
        converted["awsRegion"] = _arn_region(self.mapping.stream_arn) or self.aws.region
        converted["eventSourceARN"] = self.mapping.stream_arn
        return converted

    def _poll_shard(self, shard: _Shard) -> bool:
        if shard.retry:
            # Retries come one poll interval apart, not in a tight loop.
            return self._deliver(shard, shard.retry.popleft())
        size = self.mapping.batch_size
        received: list[dict[str, Any]] = []
        if not shard.closed and len(shard.buffer) < size:
            # GetRecords returns at most 1000 records per call.
            received = self._read(shard, min(size - len(shard.buffer), 1000))
            if received and shard.first_buffered_at is None:
                shard.first_buffered_at = time.monotonic()
            shard.buffer += received
        if not shard.buffer:
            return False
        batch = _take_batch(shard.buffer, size)
        full = len(batch) < len(shard.buffer) or len(batch) >= size
        assert shard.first_buffered_at is not None
        waited = time.monotonic() - shard.first_buffered_at >= self.mapping.batching_window
        if not (full or waited or shard.closed):
            return bool(received) and len(received) >= min(size, 1000)
        del shard.buffer[: len(batch)]
        shard.first_buffered_at = time.monotonic() if shard.buffer else None
        # After a failure the retry waits one poll interval, like every later one.
        return self._deliver(shard, _Batch(batch))

    # -- delivering

    def _deliver(self, shard: _Shard, batch: _Batch) -> bool:
        """Invoke with ``batch``; True when it succeeded."""
        invocation = self.invoke(self.mapping.function, {"Records": batch.records})
        if self.stopping:
            return False  # the stack is going down: this outcome teaches nothing
        count = _count(len(batch.records), "record")
        timing = _timing(invocation)
        failed, whole = self._failed_part(batch.records, invocation)
        if not failed:
            self._say(f"{count} ok {timing}")
            return True
        if not invocation.ok:
            reason = f"function error {invocation.error_type}: {invocation.error_message}"
        elif whole:
            reason = "unusable batchItemFailures answer"
        else:
            reason = f"{len(failed)} from sequence number {_sequence(failed[0])} failed"
        attempts = batch.retries + 1
        condition = self._give_up(batch, failed)
        if condition is not None:
            self._say(f"{count}, {reason} {timing}; {condition} after {attempts} attempts")
            self._discard(shard, failed, condition, attempts, invocation)
            return False
        parts = [failed]
        if whole and self.mapping.bisect and len(failed) > 1:
            middle = len(failed) // 2
            parts = [failed[:middle], failed[middle:]]
        for part in reversed(parts):
            shard.retry.appendleft(_Batch(part, attempts))
        limit = "" if self.mapping.max_retries < 0 else f" of {self.mapping.max_retries}"
        split = " (split in two)" if len(parts) > 1 else ""
        self._say(f"{count}, {reason} {timing}; retry {attempts}{limit}{split}")
        return False

    def _failed_part(
        self, records: list[dict[str, Any]], invocation: Invocation
    ) -> tuple[list[dict[str, Any]], bool]:
        """The records to retry, and whether the whole batch counts as failed."""
        if not invocation.ok:
            return records, True
        if not self.mapping.report_item_failures:
            return [], False
        sequence_numbers = [_sequence(record) for record in records]
        named = _reported_failures(invocation.payload, sequence_numbers)
        if named is None:
            return records, True
        if not named:
            return [], False
        checkpoint = min(sequence_numbers.index(identifier) for identifier in named)
        return records[checkpoint:], False

    def _give_up(self, batch: _Batch, failed: list[dict[str, Any]]) -> str | None:
        max_retries = self.mapping.max_retries
        if max_retries >= 0 and batch.retries >= max_retries:
            return "RetryAttemptsExhausted"
        max_age = self.mapping.max_record_age
        if max_age < 0:
            max_age = STREAM_RETENTION_SECONDS
        created = (failed[0].get("dynamodb") or {}).get("ApproximateCreationDateTime")
        if isinstance(created, int | float) and time.time() - created > max_age:
            return "RecordAgeExceeded"
        return None

    def _discard(
        self,
        shard: _Shard,
        records: list[dict[str, Any]],
        condition: str,
        attempts: int,
        invocation: Invocation,
    ) -> None:
        destination = self.mapping.on_failure
        if not destination:
            self._say(f"{_count(len(records), 'record')} dropped (no OnFailure destination)")
            return
        if ":sqs:" not in destination:
            self._say(f"OnFailure {destination} is not an SQS queue; not delivered locally")
            return
        body = failure_record(
            self.mapping, shard.id, records, condition, attempts, invocation, self.aws.region
        )
        client = self.aws.client("sqs")
        client.send_message(QueueUrl=queue_url(self.aws, destination), MessageBody=json.dumps(body))
        self._say(
            f"{_count(len(records), 'record')} described on {self.destination_name or destination}"
        )


def failure_record(
    mapping: StreamMapping,
    shard_id: str,
    records: list[dict[str, Any]],
    condition: str,
    attempts: int,
    invocation: Invocation,
    region: str,
) -> dict[str, Any]:
    """What Lambda sends an OnFailure destination for discarded stream records."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if not invocation.ok:
        response["functionError"] = "Unhandled"
    first = (records[0].get("dynamodb") or {}).get("ApproximateCreationDateTime")
    last = (records[-1].get("dynamodb") or {}).get("ApproximateCreationDateTime")
    return {
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": mapping.function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": _iso(time.time(), milliseconds=True),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": _sequence(records[0]),
            "endSequenceNumber": _sequence(records[-1]),
            "approximateArrivalOfFirstRecord": _iso(first),
            "approximateArrivalOfLastRecord": _iso(last),
            "batchSize": len(records),
            "streamArn": mapping.stream_arn,
        },
    }


def _take_batch(buffer: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The first records of ``buffer``: at most ``size``, and within Lambda's payload limit."""
    batch: list[dict[str, Any]] = []
    total = len('{"Records":[]}')
    for record in buffer[:size]:
        total += len(json.dumps(record)) + 1
        if batch and total > MAX_PAYLOAD_BYTES:
            break
        batch.append(record)
    return batch


def _sequence(record: Mapping[str, Any]) -> str:
    return str((record.get("dynamodb") or {}).get("SequenceNumber", ""))


def _as_lambda_json(value: Any) -> Any:
    """boto3's parsed stream record back in the JSON Lambda delivers.

    boto3 turns epoch timestamps into datetimes and base64 binary values into
    bytes; Lambda passes the service's JSON through (seconds, base64 text).
    """
    if isinstance(value, Mapping):
        return {key: _as_lambda_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_lambda_json(item) for item in value]
    if isinstance(value, set | frozenset):
        return [_as_lambda_json(item) for item in sorted(value)]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        # DynamoDB Streams rounds creation times down to the second.
        return int(moment.timestamp())
    if isinstance(value, bytes | bytearray):
        return _b64(value)
    return value


# ---------------------------------------------------------------------- helpers


def queue_url(aws: AwsTarget, arn: str) -> str:
    """The URL of the queue ``arn`` names (``arn:aws:sqs:region:account:name``)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise TemplateError(f"{arn!r} is not an SQS queue ARN")
    response = aws.client("sqs").get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
    return str(response["QueueUrl"])


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return (parts[3] or None) if len(parts) > 3 else None


def _b64(value: Any) -> str:
    if isinstance(value, str):
        return value
    return base64.b64encode(bytes(value)).decode("ascii")


def _iso(epoch: Any, *, milliseconds: bool = False) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if milliseconds else "seconds")
    return text.replace("+00:00", "Z")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _timing(invocation: Invocation) -> str:
    cold = ", cold start" if invocation.cold_start else ""
    return f"in {invocation.duration_ms:.0f} ms{cold}"


# --------------------------------------------------------------------- building


def function_pollers(
    stack: StackResources,
    functions: Mapping[str, FunctionSpec],
    aws: AwsTarget,
    invoke: Invoke,
    *,
    names: Mapping[str, str] | None = None,
    interval: float = DEFAULT_POLL_INTERVAL,
    log: TextIO | None = None,
) -> tuple[list[Poller], list[str]]:
    """A poller for every SQS and DynamoDB event of ``functions``, not started.

    ``names`` maps ARNs to logical ids, so the console can say "DispatchQueue"
    rather than a physical name. Returns the pollers and notes for the console.
    """
    names = names or {}
    found = event_source_mappings(stack, functions)
    pollers: list[Poller] = []
    for mapping in found.mappings:
        if isinstance(mapping, StreamMapping):
            pollers.append(
                StreamPoller(
                    mapping,
                    aws,
                    invoke,
                    interval=interval,
                    log=log,
                    source_name=names.get(mapping.stream_arn),
                    destination_name=names.get(mapping.on_failure or ""),
                )
            )
            continue
        pollers.append(
            FunctionQueuePoller(
                mapping,
                aws,
                invoke,
                interval=interval,
                log=log,
                source_name=names.get(mapping.queue_arn),
            )
        )
    return pollers, found.notes
