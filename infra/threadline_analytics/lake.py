"""The analytics lake: where events land, how they are partitioned, their columns.

One layout for S3 (Firehose writes it) and for the local stack (:class:`LakeWriter`):
``events/dt=YYYY-MM-DD/<stream>-<time>-<id>.json.gz``, gzip-compressed JSON lines,
one threadline event (the EventBridge ``detail``) per line, partitioned by the UTC
date of the event's ``occurred_at``.

JSON lines rather than Parquet: events are a union of shapes (message, conversation,
rating, ...) that grows with each release. JSON keeps every field of every event,
reads the same in Athena (OpenX JSON SerDe) and DuckDB, and needs no schema at write
time; Parquet conversion in Firehose would drop whatever the Glue table does not
declare yet. At this volume gzip keeps the scan cost low; a compaction to Parquet can
come later without changing the queries.

:data:`LAKE_COLUMNS` declares the columns the queries read: the Glue table in
template.yaml carries them as Glue types (a test compares) and the local report gives
them to DuckDB, so the same SQL sees the same table in both places.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Where events land under the bucket (Firehose's prefix) or the local lake folder.
EVENTS_PREFIX = "events"
PARTITION_KEY = "dt"
FILE_SUFFIX = ".json.gz"
# The local stack's lake (``make dev`` writes it, ``make report`` reads it); git-ignored.
DEFAULT_LAKE = Path(".threadline/lake")

# A column type: a Glue primitive name, a struct (field -> type) or an array ([type]).
ColumnType = str | Mapping[str, "ColumnType"] | list["ColumnType"]

_CHANNEL = "string"
LAKE_COLUMNS: dict[str, ColumnType] = {
    "schema_version": "string",
    "id": "string",
    "type": "string",
    "occurred_at": "string",
    "customer_id": "string",
    "message": {
        "id": "string",
        "conversation_id": "string",
        "channel": _CHANNEL,
        "direction": "string",
        "author_role": "string",
        "status": "string",
        "received_at": "string",
    },
    "conversation": {
        "id": "string",
        "state": "string",
        "opened_at": "string",
        "closed_at": "string",
        "close_reason": "string",
        "resolution": "string",
        "closed_by": {"role": "string", "id": "string"},
        "previous_conversation_id": "string",
        "last_channel": _CHANNEL,
        "metrics": {
            "channels_used": [_CHANNEL],
            "channel_switches": "int",
            "first_response_seconds": "double",
            "time_to_close_seconds": "double",
        },
    },
    "from_channel": _CHANNEL,
    "to_channel": _CHANNEL,
    "repeat_conversation_id": "string",
    "rating": {
        "conversation_id": "string",
        "score": "int",
        "channel": _CHANNEL,
        "rated_at": "string",
    },
    "note": {"id": "string", "conversation_id": "string", "author_id": "string"},
}

_DUCKDB_PRIMITIVES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
}


def glue_type(column: ColumnType) -> str:
    """The Glue (Hive) type string: ``struct<a:string,b:array<int>>``."""
    if isinstance(column, str):
        return column
    if isinstance(column, list):
        return f"array<{glue_type(column[0])}>"
    return "struct<" + ",".join(f"{name}:{glue_type(t)}" for name, t in column.items()) + ">"


def duckdb_type(column: ColumnType) -> str:
    """The same type in DuckDB: ``STRUCT(a VARCHAR, b INTEGER[])``."""
    if isinstance(column, str):
        return _DUCKDB_PRIMITIVES[column]
    if isinstance(column, list):
        return f"{duckdb_type(column[0])}[]"
    return "STRUCT(" + ", ".join(f'"{name}" {duckdb_type(t)}' for name, t in column.items()) + ")"


def partition_of(event: Mapping[str, Any]) -> str:
    """``YYYY-MM-DD`` of the event's ``occurred_at`` (UTC), as Firehose's JQ query takes it."""
    occurred_at = str(event.get("occurred_at") or "")
    return occurred_at[:10] if len(occurred_at) >= 10 else datetime.now(UTC).date().isoformat()


class LakeWriter:
    """Writes events as the deployed delivery stream does, under a local folder.

    Each :meth:`write` is one "buffer flush": one new gzip file per day partition it
    touches, written under a temporary name and renamed, so a report reading the lake
    at the same time never sees half a file.
    """

    def __init__(self, root: Path, *, stream_name: str = "threadline-local-analytics") -> None:
        self.root = Path(root)
        self.stream_name = stream_name
        self._lock = threading.Lock()

    def write(self, events: Iterable[Mapping[str, Any]]) -> list[Path]:
        by_day: dict[str, list[str]] = {}
        for event in events:
            by_day.setdefault(partition_of(event), []).append(json.dumps(event, default=str))
        written = []
        with self._lock:
            for day, lines in sorted(by_day.items()):
                folder = self.root / EVENTS_PREFIX / f"{PARTITION_KEY}={day}"
                folder.mkdir(parents=True, exist_ok=True)
                stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S")
                name = f"{self.stream_name}-{stamp}-{uuid.uuid4()}"
                partial = folder / f".{name}.partial"
                with gzip.open(partial, "wt", encoding="utf-8") as out:
                    out.write("".join(line + "\n" for line in lines))
                final = folder / f"{name}{FILE_SUFFIX}"
                os.replace(partial, final)
                written.append(final)
        return written


def lake_files_glob(root: Path) -> str:
    """Every event file of a lake folder, for DuckDB's ``read_json``."""
    return str(Path(root) / EVENTS_PREFIX / f"{PARTITION_KEY}=*" / f"*{FILE_SUFFIX}")
