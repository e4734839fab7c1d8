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

Results: metrics per rule set, scorer and as-of date, and pooled over the dates (`as_of`
empty: every person-date once); the reoffending rate by score band (pooled); the capture
curves; fairness by group (pooled). Written to OUTPUTS/backtest-ID/ (metrics.csv, bands.csv,
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
from evaluation.fairness import backtest_fairness, fairness_summary, with_groups
from evaluation.metrics import METRIC_SCHEMA, capture_curve, rate_by_band, score_metrics
from evaluation.outcomes import window_outcomes
from features.build import compute_features, offence_codes
from features.reference import load_offence_reference
from pipeline.config import Config
from pipeline.errors import DataRangeError, UsageError
from pipeline.facts import HISTORY_WINDOW_MONTHS, months_before
from pipeline.lock import workspace_lock
from pipeline.warehouse import connect, transaction
from rules.schema import RuleSet, load_rules
from rules.score import score
from rules.select import select_cohorts

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 365
DEFAULT_DATES = 12
MIN_HISTORY_MONTHS = HISTORY_WINDOW_MONTHS  # the longest feature window must be covered at the first D
BASELINES = ("ogrs3", "offences_12m", "sanctions_total", "copas_rate")
RULES_SCORER = "rules"

# Moved into pipeline/schema.py at the merge (the tables of the back-test register).
BACKTEST_DDL = [
    """CREATE TABLE IF NOT EXISTS backtests (
        backtest_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, created_at TIMESTAMP, from_date DATE,
        to_date DATE, every VARCHAR, horizon_days INTEGER, last_covered DATE, rule_sets VARCHAR,
        output_dir VARCHAR, summary VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS backtest_metrics (
        backtest_id VARCHAR NOT NULL, rule_set VARCHAR NOT NULL, rules_version VARCHAR, rules_sha256 VARCHAR,
        as_of DATE, scorer VARCHAR NOT NULL, people BIGINT, reoffenders BIGINT, base_rate DOUBLE, auc DOUBLE,
        auc_low DOUBLE, auc_high DOUBLE, average_precision DOUBLE, auc_neighbourhood DOUBLE, auc_violence DOUBLE,
        cohort_size BIGINT, precision_at_cohort DOUBLE, capture_offences DOUBLE, capture_neighbourhood DOUBLE)""",
]


def ensure_backtest_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in BACKTEST_DDL:
        con.execute(ddl)


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
    first, latest = con.execute(
        "SELECT min(offence_date), greatest(max(offence_date), max(recorded_date)) FROM offence_facts").fetchone()
    extract = con.execute("SELECT max(extract_date) FROM loads WHERE source = 'police_offences' AND rows_loaded > 0"
                          ).fetchone()[0]
    return first, extract or latest


def plan_dates(con: duckdb.DuckDBPyConnection, start: date | None, end: date | None, every: tuple[int, str],
               horizon_days: int) -> tuple[list[date], date]:
    """The as-of dates to test and the last date covered; DataRangeError when the data cannot
    answer (a window past the data, or too little history before the first date)."""
    first, last = data_range(con)
    if first is None or last is None:
        raise DataRangeError("the warehouse holds no offences: nothing to back-test",
                             hint="load the extracts with `iom ingest` first")
    latest_start = last - timedelta(days=horizon_days)
    earliest_start = months_before(first, -MIN_HISTORY_MONTHS)
    end = end or latest_start
    if end > latest_start:
        raise DataRangeError(
            f"the outcome window of {end.isoformat()} ({horizon_days} days) runs to "
            f"{(end + timedelta(days=horizon_days)).isoformat()}, past the last date the data cover, "
            f"{last.isoformat()}",
            hint=f"use --to {latest_start.isoformat()} or earlier, or a shorter --horizon-days")
    start = start or step_back(end, every, DEFAULT_DATES - 1)
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


def _selected_by(frame: pl.DataFrame, name: str) -> pl.Series:
    """A baseline's selection: in each area, as many as the rules selected there, by the
    baseline's score (ties in person order)."""
    area = pl.col("area").fill_null("(no area)")
    quota = pl.col("priority").sum().over(area)
    rank = pl.struct(-pl.col(name), pl.col("person_key")).rank("ordinal").over(area)
    return frame.select((rank <= quota).alias("s")).to_series()


def _evaluate(frame: pl.DataFrame, scorers: dict[str, pl.Expr], bootstrap: bool) -> dict[str, dict]:
    """Metrics of every scorer on one evaluated population."""
    scored = frame.with_columns(**{f"_s_{n}": e for n, e in scorers.items()})
    arrays = {c: scored.get_column(c).to_numpy() for c in ("offences", "neighbourhood", "violent")}
    y = scored.get_column("any_offence").to_numpy().astype(np.int8)
    results = {}
    for name in scorers:
        values = scored.get_column(f"_s_{name}").fill_null(0.0).to_numpy().astype(np.float64)
        chosen = (scored.get_column("priority") if name == RULES_SCORER
                  else _selected_by(scored, f"_s_{name}")).to_numpy().astype(bool)
        results[name] = score_metrics(y, values, chosen, arrays["offences"], arrays["neighbourhood"],
                                      (arrays["violent"] > 0).astype(np.int8),
                                      (arrays["neighbourhood"] > 0).astype(np.int8), bootstrap=bootstrap)
    return results


# --- the back-test ---------------------------------------------------------------------------------


def backtest_frames(con: duckdb.DuckDBPyConnection, rule_sets: Sequence[RuleSet], reference: pl.DataFrame,
                    dates: Sequence[date], horizon_days: int, last_covered: date) -> dict[str, pl.DataFrame]:
    """Per rule set, the evaluated people of every date (one row per person and date) with
    their scores, selection and outcomes. Features are computed once per date and feature
    settings; outcomes once per date."""
    people = con.execute("SELECT person_key, person_number FROM people").pl()
    primary = rule_sets[0]
    codes = offence_codes(con, reference, primary.unknown_offence)
    frames: dict[str, list[pl.DataFrame]] = {r.name: [] for r in rule_sets}
    for as_of in dates:
        started = time.perf_counter()
        cache: dict[tuple, pl.DataFrame] = {}
        outcomes = None
        for rules in rule_sets:
            key = _feature_key(rules)
            if key not in cache:
                cache[key] = compute_features(con, as_of, reference, rules.counted_outcomes, rules.unknown_offence,
                                              ordered=False)
            ranked = score_rules_at(con, rules, reference, as_of, cache[key]).join(
                people, on="person_key", how="left")
            if outcomes is None:
                outcomes = window_outcomes(con, ranked.select("person_number"), as_of, horizon_days, last_covered,
                                           primary.counted_outcomes, codes)
            evaluated = (ranked.filter(pl.col("eligible")).join(outcomes, on="person_number", how="inner")
                         .filter(pl.col("at_risk")).with_columns(pl.lit(as_of).alias("as_of")))
            frames[rules.name].append(evaluated)
        log.info("back-test at %s: %.1f s", as_of.isoformat(), time.perf_counter() - started)
    return {name: pl.concat(parts, how="diagonal_relaxed") for name, parts in frames.items()}


def _unique_names(rule_sets: Sequence[RuleSet]) -> list[RuleSet]:
    seen: dict[str, int] = {}
    for rules in rule_sets:
        seen[rules.name] = seen.get(rules.name, 0) + 1
    if any(n > 1 for n in seen.values()):
        names = [r.name for r in rule_sets]
        raise UsageError(f"two rule sets share a name ({', '.join(names)}); give each [ruleset].name its own value")
    return list(rule_sets)


def summarise(frames: dict[str, pl.DataFrame], rule_sets: Sequence[RuleSet], dates: Sequence[date],
              bootstrap_dates: bool = False) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(metrics, bands, curves, fairness) from the evaluated frames."""
    metric_rows, band_frames, curve_frames, fairness_frames = [], [], [], []
    for rules in rule_sets:
        frame = frames[rules.name]
        scorers = _scorers(rules)
        header = {"rule_set": rules.name, "rules_version": rules.version, "rules_sha256": rules.sha256}
        for scorer, values in _evaluate(frame, scorers, bootstrap=True).items():  # pooled over the dates
            metric_rows.append({**header, "as_of": None, "scorer": scorer, **values})
        for as_of in dates:
            at_d = frame.filter(pl.col("as_of") == as_of)
            for scorer, values in _evaluate(at_d, scorers, bootstrap=bootstrap_dates).items():
                metric_rows.append({**header, "as_of": as_of, "scorer": scorer, **values})
        band_frames.append(rate_by_band(frame).select(pl.lit(rules.name).alias("rule_set"), pl.all()))
        for scorer in (RULES_SCORER, "ogrs3", "offences_12m", "copas_rate"):
            per_date = [capture_curve(frame.filter(pl.col("as_of") == d).with_columns(scorers[scorer].alias("_s")),
                                      "_s", "offences") for d in dates]
            curve = (pl.concat(per_date).group_by("share_of_people").agg(pl.col("capture").mean())
                     .sort("share_of_people"))
            curve_frames.append(curve.select(pl.lit(rules.name).alias("rule_set"), pl.lit(scorer).alias("scorer"),
                                             pl.all()))
        fairness = backtest_fairness(frame.with_columns(pl.col("priority").alias("selected")))
        fairness_frames.append(fairness.select(pl.lit(rules.name).alias("rule_set"), pl.all()))
    schema = {"rule_set": pl.Utf8, "rules_version": pl.Utf8, "rules_sha256": pl.Utf8, "as_of": pl.Date,
              "scorer": pl.Utf8, **METRIC_SCHEMA}
    metrics = pl.DataFrame(metric_rows, schema=schema)
    return metrics, pl.concat(band_frames), pl.concat(curve_frames), pl.concat(fairness_frames)


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
    with workspace_lock(config.warehouse_path):
        con = connect(config)
        try:
            dates, last_covered = plan_dates(con, start, end, period, horizon_days)
            log.info("back-test: %d as-of dates from %s to %s, horizon %d days, data to %s", len(dates),
                     dates[0], dates[-1], horizon_days, last_covered)
            frames = backtest_frames(con, rule_sets, reference, dates, horizon_days, last_covered)
            frames = {name: with_groups(con, frame) for name, frame in frames.items()}
            metrics, bands, curves, fairness = summarise(frames, rule_sets, dates)
            return _store(con, config, rule_sets, dates, every, horizon_days, last_covered, metrics, bands, curves,
                          fairness, out_dir)
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
           fairness, out_dir: Path | None) -> BacktestResult:
    ensure_backtest_tables(con)
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM backtests").fetchone()[0]
    backtest_id = f"B{seq:04d}-{dates[-1].isoformat()}"
    target = out_dir or config.outputs_path / f"backtest-{backtest_id}"
    summary = {
        "backtest_id": backtest_id, "as_of_dates": [d.isoformat() for d in dates], "every": every,
        "horizon_days": horizon_days, "last_covered": last_covered.isoformat(),
        "rule_sets": _summary(metrics, fairness, rule_sets),
    }
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
        con.execute(
            "INSERT INTO backtests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [backtest_id, seq, datetime.now(UTC).replace(tzinfo=None), dates[0], dates[-1], every, horizon_days,
             last_covered, json.dumps([{"name": r.name, "version": r.version, "sha256": r.sha256} for r in rule_sets]),
             str(target), json.dumps(summary, sort_keys=True, default=str)])
        con.register("metrics_frame", metrics.to_arrow())
        con.execute("INSERT INTO backtest_metrics SELECT ? AS backtest_id, * FROM metrics_frame", [backtest_id])
        con.unregister("metrics_frame")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("back-test %s written to %s", backtest_id, target)
    return BacktestResult(backtest_id, target, list(dates), last_covered, metrics, bands, fairness, summary)
