"""The report as one self-contained HTML page: tables and inline SVG charts.

No script, no stylesheet or font from elsewhere: the file opens offline, and every
value from the lake is escaped (channel names and days are data, never markup).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from threadline_analytics.report import Result, _cell

PALETTE = ("#2f6fdf", "#e07b39", "#3aa76d", "#c94c7c", "#8a63d2", "#d4b106", "#4bb3c4", "#777")
WIDTH, HEIGHT, MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 560, 240, 48, 56, 16


def grouped_bars(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    percent: bool = False,
) -> str:
    """An SVG bar chart: one group per category, one bar per series in each."""
    values = [v for vs in series.values() for v in vs]
    top = max([*values, 0.0]) or 1.0
    if percent:
        top = 1.0
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 8, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{WIDTH - 8}" '
        f'y2="{MARGIN_TOP + plot_h}" stroke="#999"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        y = MARGIN_TOP + plot_h * (1 - tick)
        label = f"{tick * top:.0%}" if percent else _cell(round(tick * top, 1))
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11">{escape(label)}</text>'
        )
    for c, category in enumerate(categories):
        x0 = MARGIN_LEFT + c * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series.items()):
            value = float(vs[c] or 0)
            h = plot_h * value / top
            x, y = x0 + s * bar_w, MARGIN_TOP + plot_h - h
            shown = f"{value:.0%}" if percent else _cell(value)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} '
                f"{escape(category)}: {escape(shown)}</title></rect>"
            )
            if value:
                parts.append(
                    f'<text x="{x + bar_w * 0.45:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                    f'font-size="10">{escape(shown)}</text>'
                )
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{MARGIN_TOP + plot_h + 16}" '
            f'text-anchor="middle" font-size="11">{escape(category)}</text>'
        )
    if len(series) > 1:
        for s, name in enumerate(series):
            x = MARGIN_LEFT + s * 110
            parts.append(
                f'<rect x="{x}" y="{HEIGHT - 18}" width="10" height="10" '
                f'fill="{PALETTE[s % len(PALETTE)]}"/><text x="{x + 14}" y="{HEIGHT - 9}" '
                f'font-size="11">{escape(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(result: Result) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in result.columns)
    body = (
        "".join(
            "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>"
            for row in result.rows
        )
        or f'<tr><td colspan="{len(result.columns)}">no data</td></tr>'
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart(result: Result) -> str:
    records = result.records()
    name = result.metric.name
    if name == "volume":
        days = sorted({str(r["day"]) for r in records})
        channels = sorted({str(r["channel"]) for r in records})
        counts = {(str(r["day"]), str(r["channel"])): r["messages"] for r in records}
        series = {ch: [float(counts.get((d, ch), 0)) for d in days] for ch in channels}
        return grouped_bars("Messages per channel per day", days, series)
    if name == "first_contact_resolution" and records and records[0]["closed_conversations"]:
        r = records[0]
        total = float(r["closed_conversations"])
        labels = ["resolved first contact", "reopened", "unresolved", "abandoned"]
        keys = ["resolved_first_contact", "reopened", "unresolved", "abandoned"]
        shares = [float(r[k] or 0) / total for k in keys]
        return grouped_bars(
            "Outcomes of closed conversations", labels, {"share": shares}, percent=True
        )
    if name == "channel_switches" and records:
        labels = [str(r["channel_switches"]) for r in records]
        return grouped_bars(
            "Conversations by channel switches",
            labels,
            {"conversations": [float(r["conversations"]) for r in records]},
        )
    if name == "response_times" and records:
        buckets = sorted({(int(r["bucket"]), str(r["bucket_label"])) for r in records})
        labels = [label for _, label in buckets]
        times: dict[str, list[float]] = {}
        for measure in ("first_response", "resolution"):
            per_bucket = {
                int(r["bucket"]): r["conversations"] for r in records if r["measure"] == measure
            }
            times[measure.replace("_", " ")] = [float(per_bucket.get(b, 0)) for b, _ in buckets]
        return grouped_bars("Conversations per time bucket", labels, times)
    if name == "csat" and records:
        return grouped_bars(
            "CSAT (share of 4 and 5)",
            [str(r["channel"]) for r in records],
            {"csat": [float(r["csat"]) for r in records]},
            percent=True,
        )
    return ""


def render_html(results: list[Result], *, period: str) -> str:
    """The whole report page."""
    sections = []
    for result in results:
        chart = _chart(result)
        sections.append(
            f'<section id="{escape(result.metric.name)}"><h2>{escape(result.metric.title)}</h2>'
            f"{f'<figure>{chart}</figure>' if chart else ''}{_table(result)}</section>"
        )
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>threadline analytics</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:62rem}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}"
        "th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right;font-size:.9rem}"
        "th{background:#f3f3f3}figure{margin:0}"
        "</style></head><body>"
        f"<h1>threadline analytics</h1><p>Period: {escape(period)}. Made {made}.</p>"
        + "".join(sections)
        + "</body></html>\n"
    )
