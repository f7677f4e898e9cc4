"""The metrics over a lake holding the scenario's events (threadline_analytics/scenario.py),
computed by DuckDB with the queries the template gives Athena. Expected figures are
worked out by hand from the scenario's story, not by running SQL."""

from __future__ import annotations

import json
from datetime import date

import jsonschema
import pytest

from tests.conftest import REPO_ROOT
from threadline_analytics.html_report import render_html
from threadline_analytics.lake import LakeWriter
from threadline_analytics.report import compute, render_text
from threadline_analytics.scenario import scenario_events


@pytest.fixture()
def lake(tmp_path):
    writer = LakeWriter(tmp_path / "lake")
    events = scenario_events()
    # Two flushes, as a delivery stream would write them.
    writer.write(events[:10])
    writer.write(events[10:])
    return tmp_path / "lake"


def _results(lake, **period):
    return {r.metric.name: r.records() for r in compute(lake, **period)}


def test_the_scenario_is_made_of_events_as_published():
    # Every line validates against the committed schema of its type (infra/schemas).
    for event in scenario_events():
        path = REPO_ROOT / "infra" / "schemas" / f"event.{event['type']}.v1.json"
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validators.validator_for(schema)(schema).validate(event)


def test_the_lake_is_partitioned_by_the_events_day(lake):
    days = sorted(p.name for p in (lake / "events").iterdir())
    # A's events on the 23rd; B's, C's opening on the 24th; C closes a quiet day later.
    assert days == ["dt=2026-11-23", "dt=2026-11-24", "dt=2026-11-25"]
    assert all(f.name.endswith(".json.gz") for f in (lake / "events").rglob("*") if f.is_file())


def test_first_contact_resolution(lake):
    # A resolved and never came back; B resolved but C came back within 72 h; C abandoned.
    [fcr] = _results(lake)["first_contact_resolution"]
    assert fcr == {
        "closed_conversations": 3,
        "resolved": 2,
        "unresolved": 0,
        "abandoned": 1,
        "reopened": 1,
        "resolved_first_contact": 1,
        "fcr_rate": pytest.approx(1 / 3),
    }


def test_cross_channel_resolution(lake):
    # Only A used two channels (SMS and e-mail), and it was resolved without a repeat.
    [cross] = _results(lake)["cross_channel_resolution"]
    assert cross == {
        "cross_channel_conversations": 1,
        "resolved_without_repeat": 1,
        "cross_channel_resolution_rate": 1.0,
    }


def test_channel_switches(lake):
    # A switched once (SMS -> e-mail); B and C stayed on one channel.
    rows = _results(lake)["channel_switches"]
    assert [(r["channel_switches"], r["conversations"]) for r in rows] == [(0, 2), (1, 1)]
    assert {r["all_conversations"] for r in rows} == {3}
    assert [r["switches_per_conversation"] for r in rows] == pytest.approx([1 / 3, 1 / 3])


def test_response_and_resolution_times(lake):
    rows = _results(lake)["response_times"]
    # First responses: C 30 s (< 1 min), A 120 s (1-5 min), B 600 s (5-15 min).
    # Resolution: B 30 min (15-60 min), A 60 min (1-4 h); C was abandoned, not resolved.
    assert [(r["measure"], r["bucket_label"], r["conversations"]) for r in rows] == [
        ("first_response", "< 1 min", 1),
        ("first_response", "1-5 min", 1),
        ("first_response", "5-15 min", 1),
        ("resolution", "15-60 min", 1),
        ("resolution", "1-4 h", 1),
    ]
    means = {r["measure"]: r["mean_seconds"] for r in rows}
    assert means == {
        "first_response": pytest.approx((30 + 120 + 600) / 3),
        "resolution": pytest.approx((1800 + 3600) / 2),
    }


def test_csat(lake):
    # Two ratings, both answered on e-mail (each conversation's latest channel): 5 and 2.
    rows = _results(lake)["csat"]
    expected = {"ratings": 2, "satisfied": 1, "csat": 0.5, "mean_score": 3.5}
    assert rows == [{"channel": "email", **expected}, {"channel": "all", **expected}]


def test_volume_per_channel_per_day(lake):
    rows = _results(lake)["volume"]
    # 23rd: SMS 2 in / 1 reply; e-mail: the switch + the rating "5" in, a reply + the
    # survey question out. 24th: e-mail likewise for B; WhatsApp 2 in / 1 reply.
    assert [(r["day"], r["channel"], r["inbound"], r["outbound"]) for r in rows] == [
        ("2026-11-23", "email", 2, 2),
        ("2026-11-23", "sms", 2, 1),
        ("2026-11-24", "email", 2, 2),
        ("2026-11-24", "whatsapp", 2, 1),
    ]


def test_the_period_is_a_filter_on_the_day_partition(lake):
    results = _results(lake, start=date(2026, 11, 23), end=date(2026, 11, 23))
    # Only A's close is in the period: one conversation, resolved, not reopened (the
    # reopening on the 24th is outside it).
    [fcr] = results["first_contact_resolution"]
    assert (fcr["closed_conversations"], fcr["resolved_first_contact"]) == (1, 1)
    assert {r["day"] for r in results["volume"]} == {"2026-11-23"}


def test_an_empty_lake_gives_empty_metrics(tmp_path):
    results = _results(tmp_path / "nothing-yet")
    assert results["volume"] == []
    assert results["first_contact_resolution"][0]["closed_conversations"] == 0


def test_text_and_html_carry_every_metric(lake):
    results = compute(lake)
    text = render_text(results)
    page = render_html(results, period="all")
    for result in results:
        assert result.metric.title in text
        assert result.metric.title in page
    assert page.count("<svg") == 5  # volume, outcomes, switches, times, CSAT
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_threadline_report_prints_the_period_and_writes_the_page(lake, tmp_path):
    from click.testing import CliRunner

    from threadline_cli.main import cli

    page = tmp_path / "out" / "report.html"
    arguments = ["report", "--lake", str(lake), "--from", "2026-11-24", "--to", "2026-11-24"]
    result = CliRunner().invoke(cli, [*arguments, "--html", str(page)])
    assert result.exit_code == 0, result.output
    # On the 24th: B closed resolved (reopened the same day), 2 e-mail and 2 WhatsApp in.
    assert "2026-11-24  email     2        2" in result.output
    assert "2026-11-23" not in result.output
    assert "Period: 2026-11-24 to 2026-11-24" in page.read_text(encoding="utf-8")


def test_the_demo_writes_the_scenario_and_never_over_a_real_lake(tmp_path, capsys):
    from threadline_analytics.__main__ import main as report_main

    demo, page = tmp_path / "demo-lake", tmp_path / "demo.html"
    for _ in range(2):  # a second run replaces the first demo's files
        assert report_main(["--demo", "--lake", str(demo), "--html", str(page)]) == 0
    [fcr] = _results(demo)["first_contact_resolution"]
    assert (fcr["closed_conversations"], fcr["resolved_first_contact"]) == (3, 1)
    real = tmp_path / "lake"
    LakeWriter(real).write(scenario_events()[:3])
    with pytest.raises(SystemExit, match="not a demo"):
        report_main(["--demo", "--lake", str(real), "--html", str(page)])
    capsys.readouterr()
