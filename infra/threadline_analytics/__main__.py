"""``python -m threadline_analytics`` (what ``make report`` runs): every metric over a
local lake folder, printed as tables and written as a self-contained HTML page."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from threadline_analytics.html_report import render_html
from threadline_analytics.lake import DEFAULT_LAKE, LakeWriter
from threadline_analytics.report import compute, render_text
from threadline_analytics.scenario import scenario_events

DEMO_MARK = "DEMO"

DEFAULT_HTML = Path(".threadline/report.html")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m threadline_analytics", description=__doc__)
    parser.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="the local lake folder")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (UTC)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (UTC)")
    parser.add_argument("--html", type=Path, default=DEFAULT_HTML, help="where the page goes")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="first write the demo scenario (threadline_analytics.scenario) into --lake, "
        "replacing what a previous --demo wrote there",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.demo:
        write_demo(args.lake)
    results = compute(args.lake, start=args.start, end=args.end)
    sys.stdout.write(render_text(results))
    period = f"{args.start or 'first day'} to {args.end or 'last day'}"
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(render_html(results, period=period), encoding="utf-8")
    sys.stdout.write(f"\nHTML report: {args.html}\n")
    return 0


def write_demo(lake: Path) -> None:
    """The scenario's events as the lake's files, in a folder of their own."""
    if (lake / DEMO_MARK).exists():
        shutil.rmtree(lake)
    elif lake.exists() and any(lake.iterdir()):
        raise SystemExit(f"{lake} holds a lake that is not a demo: choose another --lake")
    LakeWriter(lake).write(scenario_events())
    (lake / DEMO_MARK).write_text("written by python -m threadline_analytics --demo\n")


if __name__ == "__main__":
    raise SystemExit(main())
