"""The metrics over a local lake folder with DuckDB, as a table and an HTML report.

The SQL is the files in ``queries/``, the very text of the template's Athena named
queries (a test compares). Both engines see one table, ``threadline_events``: in
Athena the Glue table, here a view over the lake's JSON-lines files with the same
columns (:data:`~threadline_analytics.lake.LAKE_COLUMNS`) and ``dt`` as text. The
period (``--from``/``--to``) is applied in that view, on the ``dt`` partition, as
one would add ``WHERE dt BETWEEN ...`` in Athena.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from threadline_analytics.lake import LAKE_COLUMNS, PARTITION_KEY, duckdb_type, lake_files_glob

TABLE = "threadline_events"


@dataclass(frozen=True)
class Metric:
    name: str  # the file stem in queries/, and the key of the report's results
    title: str
    logical_id: str  # the AWS::Athena::NamedQuery in template.yaml


METRICS: tuple[Metric, ...] = (
    Metric(
        "first_contact_resolution",
        "First contact resolution",
        "AnalyticsFirstContactResolutionQuery",
    ),
    Metric(
        "cross_channel_resolution",
        "Cross-channel resolution rate",
        "AnalyticsCrossChannelResolutionQuery",
    ),
    Metric(
        "channel_switches", "Channel switches per conversation", "AnalyticsChannelSwitchesQuery"
    ),
    Metric("response_times", "First response and resolution time", "AnalyticsResponseTimesQuery"),
    Metric("csat", "CSAT per channel and overall", "AnalyticsCsatQuery"),
    Metric("volume", "Volume per channel per day", "AnalyticsVolumeQuery"),
)


def query_text(name: str) -> str:
    """The SQL of one metric, as the template's named query carries it."""
    return (
        resources.files("threadline_analytics")
        .joinpath(f"queries/{name}.sql")
        .read_text(encoding="utf-8")
    )


@dataclass(frozen=True)
class Result:
    metric: Metric
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def connect(lake: Path, *, start: date | None = None, end: date | None = None) -> Any:
    """A DuckDB connection whose ``threadline_events`` is the lake's events in the period."""
    import duckdb  # a dev tool's dependency: imported when a report is made

    connection = duckdb.connect()
    columns = {name: duckdb_type(column) for name, column in LAKE_COLUMNS.items()}
    column_sql = "{" + ", ".join(f"'{n}': '{t}'" for n, t in columns.items()) + "}"
    where = []
    if start is not None:
        where.append(f"{PARTITION_KEY} >= '{start.isoformat()}'")
    if end is not None:
        where.append(f"{PARTITION_KEY} <= '{end.isoformat()}'")
    files = lake_files_glob(lake)
    if not any(Path(lake).glob(f"events/{PARTITION_KEY}=*/*.json.gz")):
        # An empty lake is an empty table, not an error.
        select = (
            ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in columns.items())
            + f", CAST(NULL AS VARCHAR) AS {PARTITION_KEY}"
        )
        connection.execute(f"CREATE VIEW {TABLE} AS SELECT {select} WHERE false")
        return connection
    source = (
        f"read_json('{files}', format = 'newline_delimited', compression = 'gzip', "
        f"hive_partitioning = true, hive_types = {{'{PARTITION_KEY}': 'VARCHAR'}}, "
        f"columns = {column_sql})"
    )
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    # Only our own constants and ISO dates (parsed by date.fromisoformat) are in it.
    connection.execute(f"CREATE VIEW {TABLE} AS SELECT * FROM {source}{condition}")  # noqa: S608
    return connection


def compute(lake: Path, *, start: date | None = None, end: date | None = None) -> list[Result]:
    """Every metric over the lake, in :data:`METRICS` order."""
    connection = connect(lake, start=start, end=end)
    results = []
    try:
        for metric in METRICS:
            cursor = connection.execute(query_text(metric.name))
            columns = [d[0] for d in cursor.description]
            results.append(Result(metric, columns, [tuple(r) for r in cursor.fetchall()]))
    finally:
        connection.close()
    return results


# --- text -------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(value)


def render_text(results: list[Result]) -> str:
    """Each metric as a plain table, for the terminal."""
    blocks = []
    for result in results:
        rows = [[_cell(v) for v in row] for row in result.rows]
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(result.columns)]
        lines = [
            result.metric.title,
            "  " + "  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)),
        ]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
        ]
        if not rows:
            lines.append("  (no data)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
