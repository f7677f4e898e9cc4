"""``python -m threadline_analytics`` (what ``make report`` runs): every metric over a
local lake folder, printed as tables and written as a self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from threadline_analytics.html_report import render_html
from threadline_analytics.lake import DEFAULT_LAKE
from threadline_analytics.report import compute, render_text

DEFAULT_HTML = Path(".threadline/report.html")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m threadline_analytics", description=__doc__)
    parser.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="the local lake folder")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (UTC)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (UTC)")
    parser.add_argument("--html", type=Path, default=DEFAULT_HTML, help="where the page goes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = compute(args.lake, start=args.start, end=args.end)
    sys.stdout.write(render_text(results))
    period = f"{args.start or 'first day'} to {args.end or 'last day'}"
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(render_html(results, period=period), encoding="utf-8")
    sys.stdout.write(f"\nHTML report: {args.html}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
