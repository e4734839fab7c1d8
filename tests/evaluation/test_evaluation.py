"""The back-test and fairness: metrics against scikit-learn, capture and time at risk by hand,
fairness tables on a tiny population, no leakage from after the as-of date, the command line."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from builders import build_warehouse, nominal, offence, person_key, pnc, spell
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from cli import app
from evaluation.backtest import _selected_by, as_of_dates, parse_every, score_rules_at
from evaluation.fairness import backtest_fairness, run_fairness
from evaluation.metrics import (
    average_precision,
    bootstrap_auc_ci,
    capture,
    capture_curve,
    capture_curve_of,
    precision_at,
    rate_by_band,
    roc_auc,
    score_counts,
    weighted_auc,
)
from evaluation.outcomes import window_outcomes
from features.build import offence_codes
from features.reference import load_offence_reference
from pipeline.errors import UsageError
from rules.schema import load_rules

runner = CliRunner()
COUNTED = ["charged", "summonsed", "cautioned", "community_resolution", "convicted", "pending"]
UNKNOWN = {"offence_group": "unknown", "gravity": 2, "neighbourhood_crime": False, "violence": False,
           "ogrs3_group": "violence"}
SHOPLIFTING, WOUNDING, BURGLARY = "046/00", "005/01", "028/01"  # neither; violence; neighbourhood crime


# --- metrics ---------------------------------------------------------------------------------------


def test_auc_and_average_precision_on_a_hand_made_case():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (positive, negative): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, *) right: 3 of 4
    assert roc_auc(y, s) == pytest.approx(0.75) == roc_auc_score(y, s)
    # ranked 0.8 (hit), 0.4, 0.35 (hit), 0.1: AP = (1/1 + 2/3) / 2
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3) / 2) == average_precision_score(y, s)
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None  # one class: undefined


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=60))
def test_weighted_auc_with_unit_weights_is_scikit_learns(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    if 0 < y.sum() < y.size:  # ties in the score are many: counted half, as scikit-learn does
        assert weighted_auc(y, s, np.ones(y.size))[0] == pytest.approx(roc_auc_score(y, s))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=80))
def test_auc_and_ap_on_distinct_values_equal_scikit_learn_on_every_person(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float) / 2
    if 0 < y.sum() < y.size:
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 6), st.integers(0, 4), st.integers(0, 2)),
                min_size=1, max_size=80), st.booleans())
def test_counts_curves_and_selections_of_whole_and_fractional_scores_agree(rows, fractional):
    # whole-number scores take the fast paths (bincount, 16-bit radix sort, a partition per
    # area); the same scores made fractional take the general ones: they must agree, and the
    # selection must be the first `quota` per area in (score descending, person) order
    y = np.array([r[0] for r in rows], dtype=np.int8)
    score = np.array([r[1] for r in rows], dtype=float) + (0.25 if fractional else 0.0)
    offences = np.array([r[2] for r in rows])
    area = np.array([r[3] for r in rows])
    counts = score_counts(score, y, offences > 1, offences > 2).sort("value")
    by_person = pl.DataFrame({"value": score, "y": y.astype(np.int64), "n": offences})
    expected = by_person.group_by("value").agg(pl.len().cast(pl.Int64).alias("people"), pl.col("y").sum()).sort("value")
    assert counts.get_column("people").to_list() == expected.get_column("people").to_list()
    assert counts.get_column("any").to_list() == expected.get_column("y").to_list()
    ordered = by_person.with_row_index("person").sort(["value", "person"], descending=[True, False])
    cumulative = np.r_[0, np.cumsum(ordered.get_column("n").to_numpy())]
    total = offences.sum()
    curve = capture_curve_of(score, offences)
    for share, got in curve.iter_rows():
        k = int(round(share * len(rows)))
        assert got == (pytest.approx(cumulative[k] / total) if total else None)
    quota = np.array([2, 0, 3])[: area.max() + 1]
    order = np.lexsort((-score, area))
    reference = np.zeros(score.size, dtype=bool)
    for code in range(quota.size):
        reference[[i for i in order if area[i] == code][: quota[code]]] = True
    assert _selected_by(score, area, quota).tolist() == reference.tolist()


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_people():
    rng = np.random.default_rng(1)
    s = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-s))).astype(int)
    low, high = bootstrap_auc_ci(y, s)
    assert low < roc_auc_score(y, s) < high
    assert bootstrap_auc_ci(y, s) == (low, high)  # a fixed seed
    small_low, small_high = bootstrap_auc_ci(y[:400], s[:400])
    assert small_high - small_low > high - low
    assert bootstrap_auc_ci(np.zeros(5, dtype=int), np.arange(5.0)) == (None, None)


def test_capture_and_precision_by_hand():
    offences = np.array([5, 0, 3, 2])
    selected = np.array([True, False, False, True])
    assert capture(offences, selected) == pytest.approx(7 / 10)
    assert precision_at(offences > 0, selected) == pytest.approx(1.0)
    assert precision_at(np.array([1, 0, 1, 0]), selected) == pytest.approx(0.5)
    assert capture(np.zeros(4), selected) is None


def test_capture_curve_by_hand():
    frame = pl.DataFrame({"person_key": ["a", "b", "c", "d"], "s": [9.0, 1.0, 5.0, 5.0], "n": [1, 6, 0, 3]})
    curve = {round(r[0], 2): r[1] for r in capture_curve(frame, "s", "n").rows()}
    # order a (1), c (0), d (3), b (6): a quarter 1/10, a half 1/10, three quarters 4/10, all 10/10
    assert curve[0.0] == 0 and curve[0.25] == pytest.approx(0.1) and curve[0.5] == pytest.approx(0.1)
    assert curve[0.75] == pytest.approx(0.4) and curve[1.0] == pytest.approx(1.0)


def test_rate_by_band_by_hand():
    frame = pl.DataFrame({"score": [0, 0, 5, 35, 38, 70], "any_offence": [False, True, False, True, True, True],
                          "offences": [0, 1, 0, 2, 1, 4]})
    bands = {r["band"]: r for r in rate_by_band(frame).iter_rows(named=True)}
    assert bands["0"]["people"] == 2 and bands["0"]["rate"] == pytest.approx(0.5)
    assert bands["30-39"]["rate"] == 1.0 and bands["30-39"]["offences_per_person"] == pytest.approx(1.5)
    assert list(bands) == ["0", "1-9", "30-39", "60+"]


def test_dates_every_period_back_from_the_last():
    assert as_of_dates(date(2024, 1, 31), date(2024, 5, 31), parse_every("1m")) == [
        date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30), date(2024, 5, 31)]
    assert as_of_dates(date(2024, 1, 2), date(2024, 1, 15), parse_every("1w")) == [date(2024, 1, 8), date(2024, 1, 15)]
    with pytest.raises(UsageError, match="not a period"):
        parse_every("monthly")


# --- time at risk -------------------------------------------------------------------------------------

D = date(2024, 1, 1)
PNCS = {n: pnc(14, 100 + n) for n in range(1, 6)}


def test_outcome_window_and_time_at_risk_by_hand(tmp_path):
    nominals = [nominal(f"N{n}", pnc_id=PNCS[n]) for n in range(1, 6)]
    offences = [
        # N1, in the community at D: window (2024-01-01, 2024-12-31]
        offence("O1", "N1", date(2024, 1, 1)),                      # on D: before the window
        offence("O2", "N1", date(2024, 3, 1), code=BURGLARY),       # counted, neighbourhood crime
        offence("O3", "N1", date(2024, 5, 1), code=WOUNDING, outcome="convicted", outcome_date=date(2025, 3, 1)),
        # (pending at the window's end: counted, violent)
        offence("O4", "N1", date(2024, 6, 1), recorded_date=date(2025, 2, 1)),  # recorded after the window
        offence("O5", "N1", date(2024, 7, 1), outcome="nfa", outcome_date=date(2024, 8, 1)),  # not counted
        offence("O6", "N1", date(2025, 1, 5)),                      # after the window
        # N2, inside at D, released 2024-04-10: window (2024-04-10, 2025-04-10]
        offence("O7", "N2", date(2024, 2, 1), code=SHOPLIFTING),    # before release: not in the window
        offence("O8", "N2", date(2025, 3, 1), code=SHOPLIFTING),    # counted
        offence("O9", "N4", date(2024, 2, 1), code=SHOPLIFTING),
    ]
    custody = [
        spell("S2", "A2222AA", date(2023, 6, 1), pnc_id=PNCS[2], release_date=date(2024, 4, 10)),
        spell("S3", "A3333AA", date(2023, 1, 1), pnc_id=PNCS[3]),                                 # still inside
        spell("S4", "A4444AA", date(2024, 5, 1), pnc_id=PNCS[4], release_date=date(2024, 5, 31)),  # 30 days in
        spell("S5", "A5555AA", date(2023, 1, 1), pnc_id=PNCS[5], release_date=date(2027, 1, 1)),
    ]
    con = build_warehouse(tmp_path, nominals=nominals, offences=offences, custody=custody)
    try:
        people = con.execute("SELECT person_key, person_number FROM people").pl()
        codes = offence_codes(con, load_offence_reference(), UNKNOWN)
        result = window_outcomes(con, people, D, 365, date(2027, 6, 30), COUNTED, codes).join(people, on="person_number")
        rows = {r["person_key"]: r for r in result.iter_rows(named=True)}
        n = {i: rows[person_key(con, "police", f"N{i}")] for i in range(1, 6)}
    finally:
        con.close()
    assert n[1]["window_start"] == D and n[1]["window_end"] == date(2024, 12, 31) and n[1]["at_risk"]
    assert (n[1]["offences"], n[1]["neighbourhood"], n[1]["violent"], n[1]["any_offence"]) == (2, 1, 1, True)
    assert n[2]["in_custody_at_d"] and n[2]["window_start"] == date(2024, 4, 10)
    assert n[2]["window_end"] == date(2025, 4, 10) and n[2]["offences"] == 1 and n[2]["days_in_custody"] == 0
    assert n[3]["in_custody_at_d"] and not n[3]["at_risk"] and n[3]["window_start"] is None
    assert n[4]["days_in_custody"] == 30 and n[4]["offences"] == 1 and n[4]["any_offence"]  # O9, before the recall
    assert n[5]["window_start"] == date(2027, 1, 1) and not n[5]["at_risk"]  # the window runs past the data


# --- fairness ----------------------------------------------------------------------------------------


def _people(rows):
    return pl.DataFrame(rows, schema={"ethnicity": pl.Utf8, "any_offence": pl.Boolean, "selected": pl.Boolean,
                                      "score": pl.Int64}, orient="row").with_columns(pl.lit("M").alias("sex"),
                                                                       pl.lit("25-34").alias("age_band"))


def _value(table, group, metric, column="value"):
    rows = table.filter((pl.col("dimension") == "ethnicity") & (pl.col("group") == group) & (pl.col("metric") == metric))
    assert rows.height == 1, (group, metric)
    return rows.row(0, named=True)[column]


def test_backtest_fairness_on_a_tiny_population():
    table = backtest_fairness(_people([
        ("X", True, True, 40), ("X", False, True, 40), ("X", True, False, 5), ("X", False, False, 0),
        ("Y", True, True, 45), ("Y", False, False, 0),
    ]))
    # X: TP, FP, FN, TN -> FPR 1/2, FNR 1/2; Y: TP, TN -> FPR 0, FNR 0; X is the largest group
    assert _value(table, "X", "false_positive_rate") == 0.5 and _value(table, "X", "false_negative_rate") == 0.5
    assert _value(table, "Y", "false_positive_rate") == 0.0
    assert _value(table, "Y", "false_positive_rate", "ratio") == 0.0
    assert _value(table, "Y", "false_positive_rate", "flagged")
    assert _value(table, "Y", "selection_rate", "ratio") == 1.0 and not _value(table, "Y", "selection_rate", "flagged")
    assert _value(table, "Y", "selection_rate", "reference_group") == "X"
    # calibration, band 40-49: X 1 of 2 reoffended, Y 1 of 1 -> ratio 2, flagged
    assert _value(table, "X", "reoffending_rate_band_40-49") == 0.5
    assert _value(table, "Y", "reoffending_rate_band_40-49", "ratio") == 2.0
    # band 0: X 0 of 1 -> no ratio against a reference of 0
    assert _value(table, "Y", "reoffending_rate_band_0", "ratio") is None
    assert not _value(table, "Y", "reoffending_rate_band_0", "flagged")
    assert _value(table, "X", "reoffending_rate_band_1-9", "people") == 1


def test_run_fairness_on_a_tiny_population():
    ranked = pl.DataFrame({
        "ethnicity": ["X", "X", "X", "X", "X", "Y", "Y"],
        "eligible": [True, True, True, True, False, True, True],
        "priority": [True, False, False, False, False, True, False],
    }).with_columns(pl.lit("F").alias("sex"), pl.lit("18-24").alias("age_band"))
    table = run_fairness(ranked)
    assert _value(table, "X", "selection_rate") == 0.25 and _value(table, "X", "selection_rate", "people") == 4
    assert _value(table, "Y", "selection_rate", "ratio") == 2.0 and _value(table, "Y", "selection_rate", "flagged")
    assert _value(table, "X", "share_of_eligible") == pytest.approx(4 / 6)
    assert _value(table, "X", "share_of_cohort") == 0.5
    assert _value(table, "X", "share_of_cohort", "ratio") == pytest.approx(0.75)
    assert _value(table, "Y", "share_of_cohort", "ratio") == pytest.approx(1.5)


# --- a tiny history for the back-test ---------------------------------------------------------------


def _history(extra: bool = False):
    """Eight people offending from 2020 (people 7 and 8 stop after 2022, so some windows hold
    no offence); with `extra`, rows dated after 2024-06-01 only."""
    nominals = [nominal(f"N{n}", pnc_id=pnc(15, 200 + n)) for n in range(1, 9)]
    offences, custody = [], []
    for n in range(1, 9):
        for k in range(n):  # person n offends n times a year, spread over each year
            for year in range(2020, 2023 if n >= 7 else 2027):
                day = date(year, 1, 5) + timedelta(days=(k * 37 + n * 11) % 350)
                offences.append(offence(f"O{n}-{k}-{year}", f"N{n}", day,
                                        code=(BURGLARY, SHOPLIFTING, WOUNDING)[(n + k) % 3]))
    offences.append(offence("P1", "N1", date(2024, 5, 1), outcome=None, outcome_date=None))
    custody.append(spell("S1", "A1000AA", date(2024, 3, 1), pnc_id=pnc(15, 202), release_date=date(2024, 5, 20)))
    if extra:
        offences += [offence(f"X{n}", f"N{n}", date(2024, 6, 2) + timedelta(days=n)) for n in range(1, 9)]
        offences[offences.index(next(o for o in offences if o["offence_id"] == "P1"))] = offence(
            "P1", "N1", date(2024, 5, 1), outcome="nfa", outcome_date=date(2024, 7, 1))
        offences.append(offence("X9", "N3", date(2024, 5, 30), recorded_date=date(2024, 6, 20)))
        custody.append(spell("S2", "A2000AA", date(2024, 6, 10), pnc_id=pnc(15, 205)))
    return {"nominals": nominals, "offences": offences, "custody": custody}


@pytest.mark.slow
def test_events_after_the_as_of_date_never_change_what_is_scored(tmp_path):
    as_of = date(2024, 6, 1)
    rules = load_rules("default")
    scored = []
    for name, extra in (("without", False), ("with", True)):
        con = build_warehouse(tmp_path / name, **_history(extra))
        try:
            scored.append(score_rules_at(con, rules, load_offence_reference(), as_of).sort("person_key"))
        finally:
            con.close()
    assert scored[0].height == 8
    assert_frame_equal(scored[0], scored[1])


@pytest.fixture
def workspace(tmp_path):
    con = build_warehouse(tmp_path, **_history())
    con.close()
    return tmp_path / "iom.toml"


@pytest.mark.slow
def test_cli_backtest_writes_outputs_and_stores_results(workspace, tmp_path):
    from pipeline.config import load_config
    from pipeline.warehouse import connect

    out = tmp_path / "bt"
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--from", "2024-01-01", "--to",
                                 "2024-03-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 as-of dates from 2024-01-01 to 2024-03-01" in result.output
    for name in ("metrics.csv", "bands.csv", "curves.csv", "fairness.csv", "backtest.json", "backtest.svg"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "backtest.json").read_text())
    assert summary["as_of_dates"] == ["2024-01-01", "2024-02-01", "2024-03-01"]
    assert set(summary["rule_sets"]["default"]["scorers"]) >= {"rules", "ogrs3", "offences_12m", "points_recency"}
    assert (out / "backtest.svg").read_text().startswith("<svg")
    metrics = pl.read_csv(out / "metrics.csv")
    con = connect(load_config(workspace), read_only=True)
    try:
        stored = con.execute("SELECT count(*), count(DISTINCT as_of) FROM backtest_metrics").fetchone()
        registered = con.execute("SELECT backtest_id, horizon_days FROM backtests").fetchall()
    finally:
        con.close()
    assert stored == (metrics.height, 3) and registered == [("B0001-2024-03-01", 365)]
    rules_pooled = metrics.filter(pl.col("as_of").is_null() & (pl.col("scorer") == "rules")).row(0, named=True)
    # eight people at three dates, but N2 is inside on 2024-03-01 with no release due: not eligible
    assert rules_pooled["people"] == 23
    assert rules_pooled["reoffenders"] == 17 and rules_pooled["auc"] is not None  # 7 and 8 stopped


def test_cli_backtest_window_past_the_data_names_the_last_date(workspace):
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--to", "2027-01-01"])
    assert result.exit_code == 9, result.output
    assert "2027-06-30" in result.output and "past the last date the data cover" in result.output


@pytest.mark.slow
def test_cli_backtest_too_little_history(workspace):
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--from", "2021-01-01", "--to", "2024-01-01"])
    assert result.exit_code == 9, result.output
    assert "too little history" in result.output and "2020-01-16" in result.output
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--to", "2022-01-01"])
    assert result.exit_code == 9 and "too little history" in result.output
    # without --from, as many monthly dates as the history allows (from 2023-01-16)
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--to", "2023-06-01"])
    assert result.exit_code == 0 and "5 as-of dates from 2023-02-01 to 2023-06-01" in result.output


def test_cli_backtest_bad_period_is_a_usage_error(workspace):
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--every", "fortnightly"])
    assert result.exit_code == 2 and "not a period" in result.output


def test_every_run_writes_fairness_and_a_manifest_summary(workspace):
    result = runner.invoke(app, ["run", "--config", str(workspace), "--as-of", "2024-06-01"])
    assert result.exit_code == 0, result.output
    folder = next((workspace.parent / "outputs").iterdir())
    table = pl.read_csv(folder / "fairness.csv")
    assert set(table.get_column("dimension")) == {"ethnicity", "sex", "age_band"}
    eligible = table.filter((pl.col("dimension") == "sex") & (pl.col("metric") == "share_of_eligible"))
    assert math.isclose(eligible.get_column("value").sum(), 1.0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["fairness"]["ratio_range"] == [0.8, 1.25] and "flagged" in manifest["fairness"]


def test_baseline_selection_per_area_by_hand():
    from evaluation.backtest import _selected_by

    score = np.array([5.0, 9.0, 5.0, 1.0, 7.0, 7.0])
    area = np.array([0, 0, 0, 1, 1, 1])
    # area 0 takes two: 9 then the first of the tied 5s; area 1 takes one: the first of the tied 7s
    assert _selected_by(score, area, np.array([2, 1])).tolist() == [True, True, False, False, True, False]


@pytest.mark.slow
def test_cli_backtest_compares_rule_sets_side_by_side(workspace, tmp_path):
    from rules.schema import DEFAULT_RULES

    text = DEFAULT_RULES.read_text().replace('name = "default"', 'name = "recent_only"')
    recency = "bands = [{max = 91, points = 12}"
    assert recency in text
    text = text.replace(recency, "bands = [{max = 91, points = 40}")
    other = tmp_path / "recent.toml"
    other.write_text(text)
    out = tmp_path / "two"
    result = runner.invoke(app, ["backtest", "--config", str(workspace), "--from", "2024-02-01", "--to", "2024-03-01",
                                 "--rules", "default", "--rules", str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = pl.read_csv(out / "metrics.csv")
    assert set(metrics.get_column("rule_set")) == {"default", "recent_only"}
    pooled = metrics.filter(pl.col("as_of").is_null() & (pl.col("scorer") == "offences_12m"))
    assert pooled.height == 2 and pooled.get_column("auc").null_count() == 0
    assert pooled.get_column("auc").n_unique() == 1  # the same people, the same baseline
    same = runner.invoke(app, ["backtest", "--config", str(workspace), "--rules", "default", "--rules", "default"])
    assert same.exit_code == 2 and "share a name" in same.output
