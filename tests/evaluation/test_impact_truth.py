"""`iom impact` against the synthetic world's known truth: a scheme that prevents half the
offending while people are managed, and the same world with a scheme that changes nothing, in
which the people selected at a peak still offend less afterwards (regression to the mean). Two
worlds of each kind (seeds 3 and 8), at the default fault rate: the design must hold on both,
not on one seed (docs/impact.md has the figures for more seeds and sizes)."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_config
from pipeline.workspace import generate_workspace, ingest_workspace

pytestmark = pytest.mark.slow  # four generated worlds of 40,000 people

runner = CliRunner()
EXTRACT_DATE = date(2026, 12, 1)


def _world(root, seed: int, effect: float) -> dict:
    # the default fault rate: the past decisions leave out people whose nominal is quarantined
    _, config_path = generate_workspace(root, 40_000, seed, EXTRACT_DATE, 0.002, treatment_effect=effect)
    ingest_workspace(load_config(config_path))
    decisions = root / "decisions" / "past_decisions.csv"
    assert runner.invoke(app, ["decisions", "import", str(decisions), "--config", str(config_path)]).exit_code == 0
    result = runner.invoke(app, ["impact", "--config", str(config_path), "--out", str(root / "impact")])
    assert result.exit_code == 0, result.output
    summary = json.loads((root / "impact" / "impact.json").read_text())
    truth = json.loads((root / "truth" / "world.json").read_text())
    accepted = pl.read_csv(decisions, try_parse_dates=True).filter(pl.col("decision") == "accept")
    return {"config": config_path, "summary": summary, "truth": truth, "accepted": accepted,
            "table": pl.read_csv(root / "impact" / "impact.csv"), "svg": (root / "impact" / "impact.svg").read_text()}


@pytest.fixture(scope="module", params=[3, 8], ids=lambda seed: f"seed{seed}")
def worlds(request, tmp_path_factory):
    return {effect: _world(tmp_path_factory.mktemp(f"seed{request.param}-effect{effect}"), request.param, effect)
            for effect in (0.0, 0.5)}


def test_the_effect_applied_is_recovered_within_its_interval(worlds):
    """The world cuts offending by half on every day managed: the effect while managed must
    contain 0.5. The headline (the year after selection, against people some of whom the panel
    took on later) is smaller, but a reduction, and below the naive figure."""
    world = worlds[0.5]
    assert world["truth"]["treatment_effect"] == 0.5
    managed = world["summary"]["effect_while_managed"]
    assert managed["low"] <= 0.5 <= managed["high"], managed
    share = world["summary"]["managed_share"]
    # the managed spend most of their year after managed; the comparison some of it
    assert share["managed"] > share["comparison"] > 0
    effect = world["summary"]["effect"]
    assert 0 < effect["estimate"] < world["summary"]["naive_effect"]["estimate"]


def test_no_effect_is_found_where_none_was_applied_though_the_naive_figure_claims_one(worlds):
    summary = worlds[0.0]["summary"]
    effect, naive = summary["effect"], summary["naive_effect"]
    assert effect["low"] <= 0 <= effect["high"], effect
    managed = summary["effect_while_managed"]
    assert managed["low"] <= 0 <= managed["high"], managed
    # selected at a peak, they offend less afterwards anyway: the naive figure claims a reduction
    assert naive["low"] > 0.1
    assert "regression to the mean" in summary["why_naive_differs"]


def test_the_outputs_break_down_by_area_and_cohort_type_with_people_counted(worlds):
    table = worlds[0.5]["table"]
    assert set(table["design"]) == {"matched", "difference_in_differences", "naive_before_after"}
    assert {"all", "area", "cohort_type"} <= set(table["breakdown"])
    shown = table.filter(~pl.col("suppressed"))
    assert (shown["treated_people"] >= 10).all()
    assert table.filter(pl.col("suppressed"))["effect"].is_null().all()


def test_the_chart_shows_the_rates_and_the_break_even_line(worlds):
    svg = worlds[0.5]["svg"]
    assert svg.startswith("<svg") and "Offences per person-year at risk" in svg
    effect = worlds[0.5]["summary"]["effect"]["estimate"]
    assert "break-even effect" in svg and f"estimated effect {effect:.0%}" in svg


def test_the_next_panel_pack_shows_the_impact_section(worlds):
    config = str(worlds[0.5]["config"])
    assert runner.invoke(app, ["run", "--config", config, "--as-of", "2026-12-01"]).exit_code == 0
    page = next((worlds[0.5]["config"].parent / "outputs").glob("R*/pack.html")).read_text()
    section = page[page.index('<section id="impact"'):page.index('<section id="versions"')]
    summary = worlds[0.5]["summary"]
    assert "Impact and value" in section and "regression to the mean" in section
    assert f"{summary['managed_people']:,} managed people" in section and "<svg" in section
    assert "rows marked proxy are not Home Office figures" in section
