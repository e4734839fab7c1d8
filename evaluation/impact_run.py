"""`iom impact`: the whole analysis, its outputs (impact.csv, impact.json) and its record in the
warehouse (`impacts`). The estimates are in evaluation/impact.py, the value in evaluation/value.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from evaluation import impact
from evaluation.backtest import data_range
from evaluation.costs import BASE_PRICE_YEAR, CAVEAT, SOURCE, unit_costs
from evaluation.impact_chart import impact_svg
from evaluation.value import value
from features.build import offence_codes
from features.reference import load_offence_reference
from pipeline.config import Config
from pipeline.errors import DataRangeError, NotFoundError
from pipeline.warehouse import connect, run_sql, table_exists, transaction

log = logging.getLogger(__name__)

NAIVE_LINE = ("The naive figure compares the managed people with their own past. They were selected at a peak "
              "of their offending, and people at a peak offend less afterwards whatever is done (regression to "
              "the mean), so it overstates the effect. The matched figure compares them with people at the same "
              "peak, in the same area and month, who were not selected.")
UNKNOWN_OFFENCE = {"offence_group": "unknown", "gravity": 1, "neighbourhood_crime": False, "violence": False,
                   "ogrs3_group": "other"}


@dataclass
class ImpactResult:
    impact_id: str
    output_dir: Path
    summary: dict
    table: pl.DataFrame


def _codes(con, reference: pl.DataFrame, costs: pl.DataFrame) -> pl.DataFrame:
    codes = offence_codes(con, reference, UNKNOWN_OFFENCE)
    return (codes.join(costs.select("offence_group", "unit_cost"), on="offence_group", how="left")
            .with_columns(pl.col("unit_cost").fill_null(0.0))
            .select("code_number", "neighbourhood_crime", "unit_cost"))


def _suppressed(figures: dict, min_cell: int) -> dict:
    if figures["treated_people"] >= min_cell:
        return {**figures, "suppressed": False}
    return {"treated_people": None, "comparison_people": None, "suppressed": True,
            "note": f"fewer than {min_cell} people: suppressed"}


def _row(label: str, group: str, design: str, figures: dict) -> list[dict]:
    rows = []
    for outcome in ("offences", "neighbourhood"):
        f = figures
        effect = f.get(f"{outcome}_{design}") or {}
        rows.append({
            "breakdown": label, "group": group, "outcome": outcome,
            "design": {"effect": "matched", "did_effect": "difference_in_differences",
                       "naive_effect": "naive_before_after"}[design],
            "treated_people": f.get("treated_people"), "comparison_people": f.get("comparison_people"),
            "treated_rate_before": f.get(f"{outcome}_treated_before"),
            "treated_rate_after": f.get(f"{outcome}_treated_after"),
            "comparison_rate_before": None if design == "naive_effect" else f.get(f"{outcome}_comparison_before"),
            "comparison_rate_after": None if design == "naive_effect" else f.get(f"{outcome}_comparison_after"),
            "effect": effect.get("estimate"), "effect_low": effect.get("low"), "effect_high": effect.get("high"),
            "suppressed": f["suppressed"],
        })
    return rows


def _managed_years(treated: pl.DataFrame, last_covered: date) -> float:
    """Managed person-years inside each treated person's 12 months after the meeting."""
    horizon = pl.col("meeting_date") + timedelta(days=impact.WINDOW_DAYS)
    ends = pl.min_horizontal(pl.col("management_end").fill_null(last_covered), horizon)
    days = treated.select(((ends - pl.col("meeting_date")).dt.total_days().clip(0)).sum()).item()
    return float(days or 0) / impact.DAYS_PER_YEAR


def _caseload(con) -> float:
    """The average number managed at a time over the decisions' span."""
    row = run_sql(con, "impact: caseload", """
        SELECT sum(coalesce(management_end, span_end) - meeting_date), max(span_end) - min(meeting_date)
        FROM decisions, (SELECT max(coalesce(management_end, meeting_date)) AS span_end FROM decisions)
        WHERE decision = 'accept'""").fetchone()
    return float(row[0]) / float(row[1]) if row[0] and row[1] else 0.0


def run_impact(config: Config, start: date | None = None, end: date | None = None,
               out_dir: Path | None = None) -> ImpactResult:
    settings = config.impact
    con = connect(config)
    try:
        if not table_exists(con, "decisions") or not run_sql(
                con, "impact: any accepts", "SELECT count(*) FROM decisions WHERE decision = 'accept'").fetchone()[0]:
            raise NotFoundError("no accepted panel decisions are stored: nothing to evaluate",
                                hint="import the panel's decisions with `iom decisions import FILE` first")
        _, last_covered = data_range(con)
        first_meeting, last_meeting = run_sql(con, "impact: meetings", """
            SELECT min(meeting_date), max(meeting_date) FROM decisions WHERE decision = 'accept'""").fetchone()
        latest = last_covered - timedelta(days=impact.WINDOW_DAYS) if last_covered else first_meeting
        start = start or first_meeting
        end = end or min(last_meeting, latest)
        impact.check_period(start, end, last_covered)
        reference = load_offence_reference(
            config.resolve(config.workspace.offence_reference) if config.workspace.offence_reference else None)
        costs = unit_costs(settings, set(reference["offence_group"]))
        treated = impact.treated_people(con, start, end)
        if treated.height == 0:
            raise DataRangeError(f"no one was accepted at a meeting from {start} to {end}")
        frame = impact.windows(con, treated, _codes(con, reference, costs), settings.did_min_pre_offences)
        summary = _analyse(frame, settings, treated, last_covered, _caseload(con))
        summary.update({"from": start.isoformat(), "to": end.isoformat(), "last_covered": last_covered.isoformat(),
                        "cost_of_crime": {"source": SOURCE, "caveat": CAVEAT, "base_price_year": BASE_PRICE_YEAR,
                                          "price_year": settings.price_year if settings.deflator_base else BASE_PRICE_YEAR,
                                          "deflator": [settings.deflator_base, settings.deflator_target],
                                          "table": costs.to_dicts()}})
        return _store(con, config, summary, out_dir, start, end, last_covered)
    finally:
        con.close()


def _extrapolated(observed: float, effect: dict) -> dict:
    """What a proportional effect on the rate is worth over all the managed people's year after:
    their observed total times e / (1 - e), at the estimate and its interval's ends (the map
    rises with e, so the ends stay ends)."""
    def at(e):
        return None if e is None or e >= 1 else round(observed * e / (1 - e), 2)
    return {k: at(effect.get(k)) for k in ("estimate", "low", "high")}


def _analyse(frame: pl.DataFrame, settings, treated: pl.DataFrame, last_covered: date, caseload: float) -> dict:
    matched, did = impact.analysis_frames(frame, settings.max_pre_offences, settings.did_min_pre_offences,
                                          settings.bandwidth)
    strata = ["meeting_date", "area", "pre_stratum"]
    n, seed = settings.bootstrap_resamples, settings.seed
    groups: dict[str, tuple[str, pl.Expr | None]] = {"all": ("all", None)}
    for area in sorted(frame["area"].drop_nulls().unique()):
        groups[f"area:{area}"] = ("area", pl.col("area") == area)
    for kind in sorted(frame["cohort_type"].drop_nulls().unique()):
        groups[f"cohort_type:{kind}"] = ("cohort_type", ~pl.col("treated") | (pl.col("cohort_type") == kind))
    # every breakdown from the same resamples of each design's frame
    by_matched = impact.estimate_groups(matched, strata, n, seed, {k: e for k, (_, e) in groups.items()})
    by_did = impact.estimate_groups(did, strata, n, seed, {k: e for k, (_, e) in groups.items()})
    overall, did_overall = by_matched["all"], by_did["all"]
    rows: list[dict] = []
    breakdown = {}
    for key, (label, _) in groups.items():
        fm, fd = _suppressed(by_matched[key], settings.min_cell), _suppressed(by_did[key], settings.min_cell)
        group = key.split(":", 1)[-1]
        # the naive figure is every managed person's own before and after (the DiD frame's managed)
        rows += _row(label, group, "effect", fm) + _row(label, group, "did_effect", fd) + _row(label, group, "naive_effect", fd)
        breakdown[key] = {"matched": fm, "difference_in_differences": fd}
    # The headline is the effect at the margin of selection; what it is worth is taken over every
    # managed person's year after, assuming the same proportional effect for those further above
    # the line (an extrapolation, stated in the assumptions)
    managed = frame.filter(pl.col("treated"))
    observed_cost, observed_offences = float(managed["post_cost"].sum()), float(managed["post_offences"].sum())
    cost_effect = overall["cost_effect"]
    cost_avoided = _extrapolated(observed_cost, cost_effect)
    counterfactual = (observed_cost / (1 - cost_effect["estimate"])
                      if cost_effect.get("estimate") is not None and cost_effect["estimate"] < 1 else 0.0)
    money = value(settings, _managed_years(treated, last_covered), caseload, cost_avoided, counterfactual,
                  overall["offences_effect"])
    headline = overall["offences_effect"]
    return {"treated_people": overall["treated_people"], "comparison_people": overall["comparison_people"],
            "managed_people": managed.height, "bandwidth": settings.bandwidth,
            "effect": headline, "naive_effect": did_overall["offences_naive_effect"],
            "effect_while_managed": overall["offences_managed_effect"],
            "managed_share": {"managed": overall["managed_share_treated"],
                              "comparison": overall["managed_share_comparison"]},
            "did_effect": did_overall["offences_did_effect"],
            "neighbourhood_effect": overall["neighbourhood_effect"],
            "offences_averted": _extrapolated(observed_offences, headline), "why_naive_differs": NAIVE_LINE,
            "value": money, "breakdown": breakdown, "rows": rows,
            "assumptions": {
                "matched": "near each area's capacity line (from the lowest recent offending the panel accepted to "
                           f"{settings.bandwidth} offences above it), among people with the same meeting, area and "
                           "count of offences in the year before, who was selected is unrelated to what they would "
                           "have done next (as good as random at the margin of selection); the comparison were "
                           "candidates at the meeting: never managed before, not in custody, not awaiting a review",
                "while_managed": "selection changes offending only through the days managed (the comparison "
                                 "people the panel took later count as managed on those days), and management cuts "
                                 "the rate by the same proportion on every day managed: the headline divided out by "
                                 "the difference in days managed (a fuzzy discontinuity, or instrumental variable, "
                                 "estimate)",
                "value": "the effect estimated at the line holds, as a proportion, for every managed person (those "
                         "further above the line too): the cost of crime avoided and the offences averted are taken "
                         "over all the managed people's year after",
                "difference_in_differences": "without management, the treated's offending would have changed as the "
                                             "comparison's did (parallel trends); regression to the mean breaks this "
                                             "when the two groups were at different peaks",
                "naive_before_after": "nothing but management changed the offending: false for people chosen at a peak"},
            "board_summary": _board(overall, did_overall, money, managed.height)}


def _pct(figure: dict) -> str:
    if figure.get("estimate") is None:
        return "not estimable"
    low, high = figure.get("low"), figure.get("high")
    interval = f" (95% interval {low:.0%} to {high:.0%})" if low is not None and high is not None else ""
    return f"{figure['estimate']:.0%}{interval}"


def _board(overall: dict, did: dict, money: dict, managed: int) -> str:
    be = money["break_even_effect"]
    return (f"Of {managed:,} people managed, the {overall['treated_people']:,} selected close to their area's "
            f"capacity line offended {_pct(overall['offences_effect'])} less in the year after selection than "
            f"comparable people just as close to the line who were not selected (same area, month and recent "
            f"offending). Some of those not selected were taken on later, so this understates what management "
            f"does while it lasts: {_pct(overall['offences_managed_effect'])} on the days managed. "
            f"The difference-in-differences check gives {_pct(did['offences_did_effect'])}. Comparing "
            f"the managed with their own past would claim {_pct(did['offences_naive_effect'])}, which regression "
            f"to the mean inflates. "
            f"The estimated cost of crime avoided is £{(money['cost_avoided']['estimate'] or 0):,.0f}"
            + (f" against a management cost of £{money['management_cost']:,.0f}; the scheme would break even at a "
               f"reduction of {be:.0%}" if money["management_cost"] and be is not None
               else "; no management costs were given ([impact] in iom.toml), so no break-even is shown")
            + ". Caveats: recorded offending only; the effect is measured at the margin of selection and assumed "
            "for everyone managed; the unit costs are 2015/16 Home Office figures, with proxies for groups the "
            "report does not cover; the comparison assumes selection near the line is as good as random.")


def _store(con, config: Config, summary: dict, out_dir: Path | None, start: date, end: date,
           last_covered: date) -> ImpactResult:
    seq = run_sql(con, "impact: store", "SELECT coalesce(max(seq), 0) + 1 FROM impacts").fetchone()[0]
    impact_id = f"I{seq:04d}-{end.isoformat()}"
    summary = {"impact_id": impact_id, **summary}
    target = out_dir or config.outputs_path / f"impact-{impact_id}"
    table = pl.DataFrame(summary.pop("rows"), infer_schema_length=None)
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o700)
    table.with_columns(pl.col(c).round(4) for c, t in table.schema.items() if t == pl.Float64
                       ).write_csv(staging / "impact.csv")
    (staging / "impact.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    (staging / "impact.svg").write_text(impact_svg(summary))
    e = summary["effect"]
    with transaction(con):
        run_sql(con, "impact: store", "INSERT INTO impacts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [impact_id, seq, datetime.now(UTC).replace(tzinfo=None), start, end, last_covered,
                 summary["treated_people"], e["estimate"], e["low"], e["high"], summary["naive_effect"]["estimate"],
                 summary["did_effect"]["estimate"], summary["value"]["net_value"],
                 summary["value"]["break_even_effect"], str(target), json.dumps(summary, sort_keys=True, default=str)])
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("impact %s written to %s", impact_id, target)
    return ImpactResult(impact_id, target, summary, table)
