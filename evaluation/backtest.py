"""`iom backtest`: would the rules have picked the people who went on to offend?

For each as-of date D (from `--from` to `--to`, every `--every`), each rule set scores and
selects exactly as `iom run` does (`features.build.compute_features`, `rules.score.score`,
`rules.select.select_cohorts`, all point in time at D), then `evaluation.outcomes` looks at
the window after D. The evaluated population at D is the eligible people with a complete
window (`at_risk`); people in custody at D are evaluated from their release.

Each rule set is compared with baselines on the same people: OGRS3 (`ogrs3_2yr`, 0 where
unknown), offences in 12 months alone, each component's points alone, and the criminal
history features (`sanctions_total`, `copas_rate`). The rules' selection is their priority
cohort; a baseline selects, in each area, as many people as the rules selected there, by its
own ranking (ties in person order). Outcomes use the first rule set's counted outcomes, so
every rule set is judged on the same outcome.

Results: metrics per rule set and scorer pooled over the dates (`as_of` empty: every
person-date once), and per as-of date for the rules and the OGRS3, offences and Copas-rate
baselines (`PER_DATE_SCORERS`); the reoffending rate by score band (pooled); the capture
curves; fairness by group (pooled). Pooled values come from per-date counts (per distinct
score value, band, group), summed: no person-date rows are held across dates. Written to OUTPUTS/backtest-ID/ (metrics.csv, bands.csv,
curves.csv, fairness.csv, backtest.json, backtest.svg) and stored in the warehouse
(`backtests`, `backtest_metrics`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from evaluation.chart import backtest_svg
from evaluation.fairness import (
    add_groups,
    backtest_fairness_from_counts,
    fairness_counts,
    fairness_summary,
    group_lookup,
)
from evaluation.metrics import (
    METRIC_SCHEMA,
    TOTAL_KEYS,
    band_counts,
    capture_curve_of,
    metrics_from_counts,
    rate_by_band_from_counts,
    score_counts,
    selection_totals,
)
from evaluation.outcomes import window_outcomes
from features.build import compute_features, offence_codes
from features.reference import load_offence_reference
from pipeline.config import Config
from pipeline.errors import DataRangeError, UsageError
from pipeline.facts import HISTORY_WINDOW_MONTHS, months_before
from pipeline.lock import workspace_lock
from pipeline.warehouse import connect, run_sql, transaction
from rules.schema import RuleSet, load_rules
from rules.score import score
from rules.select import select_cohorts

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 365
DEFAULT_DATES = 12
MIN_HISTORY_MONTHS = HISTORY_WINDOW_MONTHS  # the longest feature window must be covered at the first D
RULES_SCORER = "rules"
# Scored at each date as well as pooled: the rules and the baselines (components pooled only).
PER_DATE_SCORERS = (RULES_SCORER, "ogrs3", "offences_12m", "copas_rate")
CURVE_SCORERS = PER_DATE_SCORERS  # the chart's capture curves

# Moved into pipeline/schema.py at the merge (the tables of the back-test register).
@dataclass
class BacktestResult:
    backtest_id: str
    output_dir: Path
    dates: list[date]
    last_covered: date
    metrics: pl.DataFrame
    bands: pl.DataFrame
    fairness: pl.DataFrame
    summary: dict = field(default_factory=dict)


# --- the dates -------------------------------------------------------------------------------


def parse_every(text: str) -> tuple[int, str]:
    """'1m', '3m', '2w', '30d' -> (count, unit)."""
    match = re.fullmatch(r"\s*(\d+)\s*([mwd])\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--every {text!r} is not a period; use e.g. 1m (months), 2w (weeks) or 30d (days)")
    return int(match.group(1)), match.group(2)


def step_back(day: date, every: tuple[int, str], times: int = 1) -> date:
    n, unit = every
    if unit == "m":
        return months_before(day, n * times)
    return day - timedelta(days=n * times * (7 if unit == "w" else 1))


def as_of_dates(start: date, end: date, every: tuple[int, str]) -> list[date]:
    """`end`, then one period earlier, ... down to `start`; returned oldest first."""
    dates, k = [], 0
    while (day := step_back(end, every, k)) >= start:
        dates.append(day)
        k += 1
    return dates[::-1]


def data_range(con: duckdb.DuckDBPyConnection) -> tuple[date | None, date | None]:
    """(first offence date, last date covered). The last date covered is the latest extract
    date of the police offences loaded (the date the force's records run to), else the latest
    offence or record date."""
    first, latest = run_sql(con, "backtest: data range",
        "SELECT min(offence_date), greatest(max(offence_date), max(recorded_date)) FROM offence_facts").fetchone()
    extract = run_sql(con, "backtest: data range", "SELECT max(extract_date) FROM loads WHERE source = 'police_offences' AND rows_loaded > 0"
                          ).fetchone()[0]
    return first, extract or latest


def plan_dates(con: duckdb.DuckDBPyConnection, start: date | None, end: date | None, every: tuple[int, str],
               horizon_days: int) -> tuple[list[date], date]:
    """The as-of dates to test and the last date covered; DataRangeError when the data cannot
    answer (a window past the data, or too little history before the first date)."""
    first, last = data_range(con)
    if first is None or last is None:
        raise DataRangeError("the warehouse holds no offences: nothing to back-test",
                             hint="the outcomes are police-recorded offences: configure [extracts.police_offences] "
                                  "(and police_nominals) in iom.toml and load them with `iom ingest`")
    latest_start = last - timedelta(days=horizon_days)
    earliest_start = months_before(first, -MIN_HISTORY_MONTHS)
    end = end or latest_start
    if end > latest_start:
        raise DataRangeError(
            f"the outcome window of {end.isoformat()} ({horizon_days} days) runs to "
            f"{(end + timedelta(days=horizon_days)).isoformat()}, past the last date the data cover, "
            f"{last.isoformat()}",
            hint=f"use --to {latest_start.isoformat()} or earlier, or a shorter --horizon-days")
    # by default 12 dates, fewer when the history is shorter
    start = start or max(step_back(end, every, DEFAULT_DATES - 1), min(earliest_start, end))
    if start > end:
        raise UsageError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    if end < earliest_start:
        raise DataRangeError(
            f"too little history: the offences start on {first.isoformat()}, and a back-test needs "
            f"{MIN_HISTORY_MONTHS} months of history before an as-of date (so none before "
            f"{earliest_start.isoformat()}), but the last as-of date asked for is {end.isoformat()}",
            hint="load older extracts, or test later dates")
    if start < earliest_start:
        raise DataRangeError(
            f"too little history before {start.isoformat()}: the offences start on {first.isoformat()}, and a "
            f"back-test needs {MIN_HISTORY_MONTHS} months of history before each as-of date",
            hint=f"use --from {earliest_start.isoformat()} or later")
    dates = as_of_dates(start, end, every)
    if not dates:
        raise UsageError(f"no as-of date from {start.isoformat()} to {end.isoformat()} every {every[0]}{every[1]}")
    return dates, last


# --- scoring at a date --------------------------------------------------------------------------


def score_rules_at(con: duckdb.DuckDBPyConnection, rules: RuleSet, reference: pl.DataFrame, as_of: date,
                   features: pl.DataFrame | None = None) -> pl.DataFrame:
    """What `iom run` scores at `as_of` with `rules` (pipeline.run.score_at's calls): the ranked
    frame, every person assessed at D. `features` may be passed when already computed at D with
    the same counted outcomes and unknown-offence defaults."""
    if features is None:
        features = compute_features(con, as_of, reference, rules.counted_outcomes, rules.unknown_offence,
                                    ordered=False)
    return select_cohorts(score(features, rules), rules).ranked


def _feature_key(rules: RuleSet) -> tuple:
    return tuple(rules.counted_outcomes), tuple(sorted(rules.unknown_offence.items()))


def _scorers(rules: RuleSet) -> dict[str, pl.Expr]:
    """Score column per scorer name (higher = ranked first)."""
    scorers = {RULES_SCORER: pl.col("score").cast(pl.Float64),
               "ogrs3": pl.col("ogrs3_2yr").fill_null(0.0),
               "offences_12m": pl.col("offences_12m").cast(pl.Float64),
               "sanctions_total": pl.col("sanctions_total").cast(pl.Float64),
               "copas_rate": pl.col("copas_rate").cast(pl.Float64)}
    for name in rules.component_names:
        scorers[f"points_{name}"] = pl.col(f"points_{name}").cast(pl.Float64)
    return scorers


def _selected_by(score: np.ndarray, area_code: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """A baseline's selection: in each area, as many as the rules selected there (`quota`, per
    area code), by the baseline's score; the arrays are in person order, and ties go to the
    lower person key. One pass per area (a partition finds the quota's score, then the ties at
    it are taken in person order), not a sort: the areas are few, the people many."""
    score = np.where(np.isnan(score), -np.inf, score)  # a missing score is taken last
    chosen = np.zeros(score.size, dtype=bool)
    for code in np.flatnonzero(quota):
        members = np.flatnonzero(area_code == code)
        take = min(int(quota[code]), members.size)
        if take == 0:
            continue
        values = score[members]
        cut = np.partition(values, values.size - take)[values.size - take]  # the take-th highest
        above = values > cut
        at_cut = np.flatnonzero(values == cut)[: take - int(above.sum())]
        chosen[members[above]] = True
        chosen[members[at_cut]] = True
    return chosen


def _area_quota(ordered: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each person's area code, and per area code how many the rules selected there."""
    priority = ordered.get_column("priority").to_numpy().astype(bool)
    area_code = ordered.select(pl.col("area").fill_null("(no area)").rank("dense") - 1).to_series().to_numpy()
    return area_code, np.bincount(area_code, weights=priority, minlength=int(area_code.max(initial=0)) + 1)


def selected_at_quota(frame: pl.DataFrame, score: str, tie: str = "person_number") -> pl.Series:
    """Another score's selection, as a baseline's: in each area as many as the rules selected
    there (`priority`), highest `score` first, ties to the lower `tie`; in the frame's row order."""
    ordered = frame.with_row_index("_row").sort(tie)
    area_code, quota = _area_quota(ordered)
    chosen = _selected_by(ordered.get_column(score).fill_null(0.0).to_numpy().astype(np.float64), area_code, quota)
    rows = ordered.get_column("_row").to_numpy()
    back = np.empty(chosen.size, dtype=bool)
    back[rows] = chosen
    return pl.Series("selected", back)


def evaluate_scores(frame: pl.DataFrame, scorers: dict[str, pl.Expr], bootstrap: bool = True) -> dict[str, dict]:
    """Every metric of each scorer on one evaluated population (the back-test's own figures)."""
    parts, _curves = _score_parts(frame, scorers)
    return {name: metrics_from_counts(counts, totals, bootstrap=bootstrap) for name, (counts, totals) in parts.items()}


def _score_parts(frame: pl.DataFrame, scorers: dict[str, pl.Expr]
                 ) -> tuple[dict[str, tuple[pl.DataFrame, dict]], dict[str, pl.DataFrame]]:
    """Per scorer, on one date's evaluated people: the counts per distinct score value and the
    selection's totals (`evaluation.metrics`), which add up over the dates; and the capture
    curves of CURVE_SCORERS. Every array is read once, in person order (ties in a baseline's
    selection and in a curve go to the lower person key)."""
    ordered = frame.select("person_number", "offences", "neighbourhood", "violent", "any_offence", "priority",
                           pl.col("area").fill_null("(no area)").rank("dense").alias("_area"),
                           *[expr.cast(pl.Float64).alias(f"_score_{name}") for name, expr in scorers.items()]
                           ).sort("person_number")
    offences = ordered.get_column("offences").to_numpy()
    neighbourhood = ordered.get_column("neighbourhood").to_numpy()
    y = ordered.get_column("any_offence").to_numpy().astype(np.int8)
    neighbourhood_any, violent_any = neighbourhood > 0, ordered.get_column("violent").to_numpy() > 0
    priority = ordered.get_column("priority").to_numpy().astype(bool)
    area_code = ordered.get_column("_area").to_numpy().astype(np.int64) - 1
    quota = np.bincount(area_code, weights=priority, minlength=int(area_code.max(initial=0)) + 1)
    parts, curves = {}, {}
    for name in scorers:
        column = ordered.get_column(f"_score_{name}")
        values = column.fill_null(0.0).to_numpy()
        chosen = priority if name == RULES_SCORER else _selected_by(values, area_code, quota)
        parts[name] = (score_counts(values, y, neighbourhood_any, violent_any),
                       selection_totals(y, chosen, offences, neighbourhood))
        if name in CURVE_SCORERS:  # a missing score is taken last on the curve
            curves[name] = capture_curve_of(column.fill_null(-np.inf).to_numpy(), offences)
    return parts, curves


@dataclass
class _Pooled:
    """What one rule set's dates add up to: no person-level rows are kept across dates."""

    counts: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    totals: dict[str, dict] = field(default_factory=dict)
    metric_rows: list[dict] = field(default_factory=list)
    bands: list[pl.DataFrame] = field(default_factory=list)
    curves: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    fairness: list[pl.DataFrame] = field(default_factory=list)
    population: dict = field(default_factory=lambda: dict.fromkeys(
        ("eligible", "evaluated", "evaluated_from_release", "left_out_no_complete_window", "with_custody_in_window",
         "days_in_custody"), 0))

    def add(self, rules: RuleSet, as_of: date, eligible: pl.DataFrame) -> None:
        evaluated = eligible.filter(pl.col("at_risk"))
        population = self.population
        population["eligible"] += eligible.height
        population["evaluated"] += evaluated.height
        population["evaluated_from_release"] += int(evaluated.get_column("in_custody_at_d").sum())
        population["left_out_no_complete_window"] += eligible.height - evaluated.height
        population["with_custody_in_window"] += int((evaluated.get_column("days_in_custody") > 0).sum())
        population["days_in_custody"] += int(evaluated.get_column("days_in_custody").sum())
        scorers = _scorers(rules)
        header = {"rule_set": rules.name, "rules_version": rules.version, "rules_sha256": rules.sha256}
        parts, curves = _score_parts(evaluated, scorers)
        for name, (counts, totals) in parts.items():
            self.counts.setdefault(name, []).append(counts)
            pooled = self.totals.setdefault(name, dict.fromkeys(TOTAL_KEYS, 0))
            for key in TOTAL_KEYS:
                pooled[key] += totals[key]
            if name in PER_DATE_SCORERS:
                self.metric_rows.append({**header, "as_of": as_of, "scorer": name,
                                         **metrics_from_counts(counts, totals, bootstrap=False)})
        self.bands.append(band_counts(evaluated))
        for name, curve in curves.items():
            self.curves.setdefault(name, []).append(curve)
        self.fairness.append(fairness_counts(evaluated.with_columns(pl.col("priority").alias("selected"))))


# --- the back-test ---------------------------------------------------------------------------------


def collect(con: duckdb.DuckDBPyConnection, rule_sets: Sequence[RuleSet], reference: pl.DataFrame,
            dates: Sequence[date], horizon_days: int, last_covered: date) -> dict[str, _Pooled]:
    """Score every date with every rule set, look at the outcomes, and add each date's counts
    to the rule set's pool. Features are computed once per date and feature settings; outcomes
    once per date."""
    groups = group_lookup(con, "person_number")  # read once: the groups monitored do not change with D
    primary = rule_sets[0]
    codes = offence_codes(con, reference, primary.unknown_offence)
    pools = {r.name: _Pooled() for r in rule_sets}
    for as_of in dates:
        started = time.perf_counter()
        cache: dict[tuple, pl.DataFrame] = {}
        outcomes = None
        for rules in rule_sets:
            key = _feature_key(rules)
            if key not in cache:
                cache[key] = compute_features(con, as_of, reference, rules.counted_outcomes, rules.unknown_offence,
                                              ordered=False, person_number=True)
            ranked = score_rules_at(con, rules, reference, as_of, cache[key])
            if outcomes is None:
                outcomes = window_outcomes(con, ranked.select("person_number"), as_of, horizon_days, last_covered,
                                           primary.counted_outcomes, codes)
            eligible = (ranked.filter(pl.col("eligible"))
                        .select("person_number", "age", "area", "priority", "score",
                                *[f"points_{c}" for c in rules.component_names], "ogrs3_2yr", "offences_12m",
                                "sanctions_total", "copas_rate")
                        .join(outcomes, on="person_number", how="inner")
                        .join(groups, on="person_number", how="left"))
            pools[rules.name].add(rules, as_of, add_groups(eligible))
        log.info("back-test at %s: %.1f s", as_of.isoformat(), time.perf_counter() - started)
    return pools


def _unique_names(rule_sets: Sequence[RuleSet]) -> list[RuleSet]:
    seen: dict[str, int] = {}
    for rules in rule_sets:
        seen[rules.name] = seen.get(rules.name, 0) + 1
    if any(n > 1 for n in seen.values()):
        names = [r.name for r in rule_sets]
        raise UsageError(f"two rule sets share a name ({', '.join(names)}); give each [ruleset].name its own value")
    return list(rule_sets)


def summarise(pools: dict[str, _Pooled], rule_sets: Sequence[RuleSet]
              ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(metrics, bands, curves, fairness): the pooled rows (`as_of` empty) from the summed
    counts, then the per-date rows; the bands, the mean capture curve and fairness pooled."""
    metric_rows, band_frames, curve_frames, fairness_frames = [], [], [], []
    for rules in rule_sets:
        pool = pools[rules.name]
        header = {"rule_set": rules.name, "rules_version": rules.version, "rules_sha256": rules.sha256}
        for scorer, counts in pool.counts.items():
            metric_rows.append({**header, "as_of": None, "scorer": scorer,
                                **metrics_from_counts(pl.concat(counts), pool.totals[scorer], bootstrap=True)})
        metric_rows.extend(pool.metric_rows)
        band_frames.append(rate_by_band_from_counts(pl.concat(pool.bands))
                           .select(pl.lit(rules.name).alias("rule_set"), pl.all()))
        for scorer, curves in pool.curves.items():
            curve = (pl.concat(curves).group_by("share_of_people").agg(pl.col("capture").mean())
                     .sort("share_of_people"))
            curve_frames.append(curve.select(pl.lit(rules.name).alias("rule_set"), pl.lit(scorer).alias("scorer"),
                                             pl.all()))
        fairness = backtest_fairness_from_counts(pl.concat(pool.fairness))
        fairness_frames.append(fairness.select(pl.lit(rules.name).alias("rule_set"), pl.all()))
    schema = {"rule_set": pl.Utf8, "rules_version": pl.Utf8, "rules_sha256": pl.Utf8, "as_of": pl.Date,
              "scorer": pl.Utf8, **METRIC_SCHEMA}
    metrics = pl.DataFrame(metric_rows, schema=schema)
    return metrics, pl.concat(band_frames), pl.concat(curve_frames), pl.concat(fairness_frames)


def population(pool: _Pooled) -> dict:
    """Who was evaluated, pooled over the dates (person-dates): the eligible, those with a
    complete window, those followed from their release, those left out, custody in the window."""
    counts = dict(pool.population)
    days = counts.pop("days_in_custody")
    counts["mean_days_in_custody"] = round(days / counts["evaluated"], 2) if counts["evaluated"] else None
    return counts


def run_backtest(config: Config, start: date | None = None, end: date | None = None, every: str = "1m",
                 horizon_days: int = DEFAULT_HORIZON_DAYS, rules_paths: Sequence[str] = (),
                 out_dir: Path | None = None) -> BacktestResult:
    """The whole back-test: plan the dates, score, look at the outcomes, write and store."""
    if horizon_days < 1:
        raise UsageError("--horizon-days must be at least 1")
    period = parse_every(every)
    names = list(rules_paths) or [config.workspace.rules if config.workspace.rules == "default"
                                  else str(config.resolve(config.workspace.rules))]
    rule_sets = _unique_names([load_rules(n) for n in names])
    reference = load_offence_reference(
        config.resolve(config.workspace.offence_reference) if config.workspace.offence_reference else None)
    with workspace_lock(config.warehouse_path, "backtest"):
        con = connect(config)
        try:
            dates, last_covered = plan_dates(con, start, end, period, horizon_days)
            log.info("back-test: %d as-of dates from %s to %s, horizon %d days, data to %s", len(dates),
                     dates[0], dates[-1], horizon_days, last_covered)
            timings, started = {}, time.perf_counter()
            pools = collect(con, rule_sets, reference, dates, horizon_days, last_covered)
            timings["dates_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            metrics, bands, curves, fairness = summarise(pools, rule_sets)
            timings["pooled_s"] = round(time.perf_counter() - started, 2)
            log.info("back-test timings: %s", timings)
            result = _store(con, config, rule_sets, dates, every, horizon_days, last_covered, metrics, bands,
                            curves, fairness, out_dir, {name: population(p) for name, p in pools.items()})
            return result
        finally:
            con.close()


def _summary(metrics: pl.DataFrame, fairness: pl.DataFrame, rule_sets: Sequence[RuleSet]) -> dict:
    pooled = metrics.filter(pl.col("as_of").is_null())
    result = {}
    for rules in rule_sets:
        rows = pooled.filter(pl.col("rule_set") == rules.name)
        result[rules.name] = {
            "version": rules.version,
            "scorers": {r["scorer"]: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                      if k not in ("rule_set", "rules_version", "rules_sha256", "as_of", "scorer")}
                        for r in rows.iter_rows(named=True)},
            "fairness": fairness_summary(fairness.filter(pl.col("rule_set") == rules.name)),
        }
    return result


def _csv(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).round(4) for c, t in frame.schema.items() if t in (pl.Float32, pl.Float64))


def _store(con, config: Config, rule_sets, dates, every, horizon_days, last_covered, metrics, bands, curves,
           fairness, out_dir: Path | None, populations: dict) -> BacktestResult:
    seq = run_sql(con, "backtest: store", "SELECT coalesce(max(seq), 0) + 1 FROM backtests").fetchone()[0]
    backtest_id = f"B{seq:04d}-{dates[-1].isoformat()}"
    target = out_dir or config.outputs_path / f"backtest-{backtest_id}"
    summary = {
        "backtest_id": backtest_id, "as_of_dates": [d.isoformat() for d in dates], "every": every,
        "horizon_days": horizon_days, "last_covered": last_covered.isoformat(),
        "rule_sets": _summary(metrics, fairness, rule_sets),
    }
    for name, counts in populations.items():
        summary["rule_sets"][name]["population"] = counts
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o700)
    _csv(metrics).write_csv(staging / "metrics.csv")
    _csv(bands).write_csv(staging / "bands.csv")
    _csv(curves).write_csv(staging / "curves.csv")
    _csv(fairness).write_csv(staging / "fairness.csv")
    (staging / "backtest.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    (staging / "backtest.svg").write_text(backtest_svg(curves, bands, metrics))
    with transaction(con):
        run_sql(con, "backtest: store",
            "INSERT INTO backtests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [backtest_id, seq, datetime.now(UTC).replace(tzinfo=None), dates[0], dates[-1], every, horizon_days,
             last_covered, json.dumps([{"name": r.name, "version": r.version, "sha256": r.sha256} for r in rule_sets]),
             str(target), json.dumps(summary, sort_keys=True, default=str)])
        con.register("metrics_frame", metrics.to_arrow())
        run_sql(con, "backtest: store", "INSERT INTO backtest_metrics SELECT ? AS backtest_id, * FROM metrics_frame", [backtest_id])
        con.unregister("metrics_frame")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("back-test %s written to %s", backtest_id, target)
    return BacktestResult(backtest_id, target, list(dates), last_covered, metrics, bands, fairness, summary)
