"""The HTML report in headless Chromium (Debian's, driven by Playwright): it draws
every chart from the file alone, asks the network for nothing, and shows the
scenario's figures. A screenshot is kept under ``artifacts/`` (git-ignored)."""

from __future__ import annotations

import pytest

# The console's browser test has the fixture (Debian's chromium, installed if missing).
from tests.e2e.test_console_browser import ARTIFACTS, browser  # noqa: F401 (fixture)
from threadline_analytics.__main__ import main as report_main
from threadline_analytics.lake import LakeWriter
from threadline_analytics.scenario import scenario_events

pytestmark = pytest.mark.e2e


def test_the_report_page_draws_every_chart_offline(browser, tmp_path, capsys):  # noqa: F811
    lake = tmp_path / "lake"
    LakeWriter(lake).write(scenario_events())
    page_path = tmp_path / "report.html"
    assert report_main(["--lake", str(lake), "--html", str(page_path)]) == 0
    printed = capsys.readouterr().out
    assert "First contact resolution" in printed and str(page_path) in printed

    page = browser.new_page(viewport={"width": 1100, "height": 2400})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(page_path.as_uri())
    # Every request the page made was for the file itself: no CDN, font or script.
    assert requested == [page_path.as_uri()]

    sections = page.locator("section")
    assert sections.count() == 6
    charts = page.locator("section svg")
    assert charts.count() == 5
    for index in range(charts.count()):
        box = charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
    # Bars were drawn with a height from the data: 4 volume groups of up to 3
    # channels, 4 outcome bars, 2 switch bars, 2x5 time buckets, 2 CSAT bars.
    drawn = page.locator("section svg rect[height]:not([height='0.0'])")
    assert drawn.count() >= 12

    fcr = page.locator("#first_contact_resolution tbody tr").first.inner_text()
    assert fcr.split("\t") == ["3", "2", "0", "1", "1", "1", "0.333"]
    csat = page.locator("#csat tbody tr").all_inner_texts()
    assert [row.split("\t")[:4] for row in csat] == [
        ["email", "2", "1", "0.5"],
        ["all", "2", "1", "0.5"],
    ]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "analytics-report.png"), full_page=True)
    page.close()
