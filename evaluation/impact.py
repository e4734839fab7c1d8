"""Did IOM management reduce recorded offending? `iom impact` (docs/impact.md).

Design. Each person accepted by the panel (their first accept in the period; `decisions`) is
followed from the meeting D: 12 months before, (D - 365, D], and 12 months after, (D, D + 365].
Offending is every offence recorded by the police (`offence_facts`) committed in a window and
recorded by its end; person-time excludes the days in custody in each window, so the rate is
offences per person-year at risk.

- Primary (matched design around the capacity cut): the panel ranks people eligible at D by their
  recent offending and manages as many as its capacity allows, so people with the same recent
  offending in the same area at the same meeting who were not selected (rejected, deferred, or
  just below the cut) are the comparison. Treated and comparison are matched exactly on
  (meeting, area, offences in the 12 months before D, capped); the comparison is weighted to the
  treated's strata (an ATT). Assumption: within a stratum, selection is unrelated to what the
  person would have done next (as-good-as-random around the cut). Because both groups were
  chosen at the same peak, regression to the mean affects both alike.
- Secondary (difference-in-differences): the change from before to after of the treated against
  that of non-selected people in the same meeting and area with at least
  `did_min_pre_offences`. Assumption: parallel trends, which regression to the mean breaks when
  the two groups' peaks differ; it is reported as a check, not the headline.
- Naive: the treated's own after against before, which regression to the mean flatters.

Intervals: a Poisson bootstrap over people (fixed seed). Figures on fewer than `min_cell` treated
people are suppressed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl

from pipeline.errors import DataRangeError
from pipeline.warehouse import q, run_sql

log = logging.getLogger(__name__)

WINDOW_DAYS = 365
DAYS_PER_YEAR = 365.25
OUTCOMES = ("offences", "neighbourhood", "cost")

# [one person and meeting, treated or a candidate comparison]: counts and days at risk in the
# windows before and after the meeting. `_iom_impact_meetings` (meeting_date) and
# `_iom_impact_codes` (code_number, neighbourhood_crime, unit_cost) are registered frames;
# `_iom_impact_treated` (person_number, meeting_date, cohort_type).
_WINDOWS_SQL = """
WITH m AS (SELECT meeting_date AS d FROM {meetings}),
pre AS (  -- [one person and meeting with an offence in the 12 months before, as recorded now]
    -- Not only those recorded by the meeting: the later-recorded ones are part of the peak the
    -- person was at, and matching on fewer would leave the selected at a higher true peak.
    SELECT o.person_number, m.d, count(*) AS pre_offences,
           count(*) FILTER (k.neighbourhood_crime) AS pre_neighbourhood, sum(k.unit_cost) AS pre_cost
    FROM offence_facts o JOIN m ON o.offence_date > m.d - $window AND o.offence_date <= m.d
    JOIN {codes} k ON k.code_number = o.code_number
    GROUP BY ALL),
managed AS (  -- [one person and meeting]: managed at the meeting or in the 12 months before it.
    -- People accepted *after* the meeting stay in the comparison: leaving them out would keep
    -- only the non-selected who stopped offending (selected later for carrying on), which
    -- conditions on the future; keeping them biases the estimate towards no effect, if anything.
    SELECT DISTINCT p.person_number, m.d
    FROM decisions dc JOIN people p USING (person_key) JOIN m
      ON dc.decision = 'accept' AND dc.meeting_date <= m.d
         AND coalesce(dc.management_end, DATE '9999-12-31') > m.d - $window),
inside AS (  -- [one person in custody at a meeting]
    SELECT DISTINCT s.person_number, m.d FROM custody_facts s JOIN m
      ON s.reception_date <= m.d AND (s.release_date IS NULL OR s.release_date > m.d)),
cands AS (
    SELECT t.person_number, t.meeting_date AS d, true AS treated, t.cohort_type FROM {treated} t
    UNION ALL
    SELECT pre.person_number, pre.d, false, NULL FROM pre
    WHERE NOT EXISTS (SELECT 1 FROM managed x WHERE x.person_number = pre.person_number AND x.d = pre.d)
      AND NOT EXISTS (SELECT 1 FROM inside x WHERE x.person_number = pre.person_number AND x.d = pre.d)),
alive AS (
    SELECT c.*, p.area FROM cands c JOIN people p USING (person_number)
    WHERE (p.deceased_date IS NULL OR p.deceased_date > c.d + $window)
      AND (c.treated OR p.date_of_birth <= c.d - INTERVAL 18 YEAR)),  -- IOM is for adults
custody AS (  -- [one candidate with custody in a window]: days inside before and after
    SELECT a.person_number, a.d,
           sum(greatest(0, least(coalesce(s.release_date, a.d), a.d) - greatest(s.reception_date, a.d - $window)))
               AS pre_custody,
           sum(greatest(0, least(coalesce(s.release_date, a.d + $window), a.d + $window)
                           - greatest(s.reception_date, a.d))) AS post_custody
    FROM alive a JOIN custody_facts s USING (person_number)
    WHERE s.reception_date < a.d + $window AND (s.release_date IS NULL OR s.release_date > a.d - $window)
    GROUP BY ALL),
post AS (  -- [one candidate with an offence in the 12 months after, recorded by the window's end]
    SELECT a.person_number, a.d, count(*) AS post_offences,
           count(*) FILTER (k.neighbourhood_crime) AS post_neighbourhood, sum(k.unit_cost) AS post_cost
    FROM alive a JOIN offence_facts o ON o.person_number = a.person_number
    JOIN {codes} k ON k.code_number = o.code_number
    WHERE o.offence_date > a.d AND o.offence_date <= a.d + $window
      AND (o.recorded_date IS NULL OR o.recorded_date <= a.d + $window)
    GROUP BY ALL)
SELECT a.person_number, a.d AS meeting_date, a.treated, a.cohort_type, a.area,
       coalesce(pre.pre_offences, 0)::BIGINT AS pre_offences,
       coalesce(pre.pre_neighbourhood, 0)::BIGINT AS pre_neighbourhood,
       coalesce(pre.pre_cost, 0)::DOUBLE AS pre_cost,
       coalesce(post.post_offences, 0)::BIGINT AS post_offences,
       coalesce(post.post_neighbourhood, 0)::BIGINT AS post_neighbourhood,
       coalesce(post.post_cost, 0)::DOUBLE AS post_cost,
       ($window - coalesce(c.pre_custody, 0))::BIGINT AS pre_days,
       ($window - coalesce(c.post_custody, 0))::BIGINT AS post_days
FROM alive a LEFT JOIN pre USING (person_number, d) LEFT JOIN post USING (person_number, d)
LEFT JOIN custody c USING (person_number, d)
"""


def treated_people(con: duckdb.DuckDBPyConnection, start: date, end: date) -> pl.DataFrame:
    """[one person accepted at a meeting from `start` to `end`]: their first accept there,
    person_number, meeting_date, cohort_type, management_end."""
    return run_sql(con, "impact: treated", """
        -- [one person: the first accept with a meeting in the period]
        SELECT p.person_number, d.meeting_date, d.cohort_type, d.management_end
        FROM decisions d JOIN people p USING (person_key)
        WHERE d.decision = 'accept' AND d.meeting_date BETWEEN $start AND $end
        QUALIFY row_number() OVER (PARTITION BY p.person_number ORDER BY d.meeting_date, d.row_number) = 1
        """, {"start": start, "end": end}).pl()


def windows(con: duckdb.DuckDBPyConnection, treated: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """The before/after windows of the treated and of every candidate comparison (see _WINDOWS_SQL)."""
    meetings = treated.select("meeting_date").unique()
    views = {"_iom_impact_meetings": meetings, "_iom_impact_codes": codes,
             "_iom_impact_treated": treated.select("person_number", "meeting_date", "cohort_type")}
    for name, frame in views.items():
        con.register(name, frame.to_arrow())
    try:
        sql = _WINDOWS_SQL.format(meetings=q("_iom_impact_meetings"), codes=q("_iom_impact_codes"),
                                  treated=q("_iom_impact_treated"))
        # sorted: the bootstrap's draws go by row, so the same data give the same intervals
        return run_sql(con, "impact: windows", sql, {"window": WINDOW_DAYS}).pl().sort(
            "meeting_date", "person_number", "treated")
    finally:
        for name in views:
            con.unregister(name)


def person_years(days: np.ndarray) -> np.ndarray:
    """Days at risk as person-years."""
    return np.asarray(days, dtype=np.float64) / DAYS_PER_YEAR


# --- estimates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrays:
    """One analysis frame as arrays: treated flag, stratum code, and the outcome sums."""

    treated: np.ndarray
    stratum: np.ndarray
    pre: dict[str, np.ndarray]
    post: dict[str, np.ndarray]
    pre_py: np.ndarray
    post_py: np.ndarray
    strata: int


def _arrays(frame: pl.DataFrame, stratum: list[str]) -> Arrays:
    codes = frame.select(pl.struct(stratum).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    return Arrays(frame["treated"].to_numpy(), codes,
                  {o: frame[f"pre_{o}"].cast(pl.Float64).to_numpy() for o in OUTCOMES},
                  {o: frame[f"post_{o}"].cast(pl.Float64).to_numpy() for o in OUTCOMES},
                  person_years(frame["pre_days"].to_numpy()), person_years(frame["post_days"].to_numpy()),
                  int(codes.max()) + 1 if len(codes) else 0)


def _point(a: Arrays, w: np.ndarray) -> dict[str, float]:
    """The estimates under person weights `w` (1 for the data, Poisson draws for a resample)."""
    t, c = a.treated, ~a.treated
    n_t = np.bincount(a.stratum[t], weights=w[t], minlength=a.strata)
    n_c = np.bincount(a.stratum[c], weights=w[c], minlength=a.strata)
    ratio = np.divide(n_t, n_c, out=np.zeros(len(n_t)), where=n_c > 0)  # float even when the weights are whole
    both = (n_t > 0) & (n_c > 0)
    wt = np.where(t, w * both[a.stratum], 0.0)  # treated people with a comparison in their stratum
    wc = np.where(c, w * ratio[a.stratum], 0.0)
    out = {}
    py_t, py_c = (wt * a.post_py).sum(), (wc * a.post_py).sum()
    pre_py_t, pre_py_c = (wt * a.pre_py).sum(), (wc * a.pre_py).sum()
    for o in OUTCOMES:
        rate_t = (wt * a.post[o]).sum() / py_t if py_t else np.nan
        rate_c = (wc * a.post[o]).sum() / py_c if py_c else np.nan
        pre_t = (wt * a.pre[o]).sum() / pre_py_t if pre_py_t else np.nan
        pre_c = (wc * a.pre[o]).sum() / pre_py_c if pre_py_c else np.nan
        out[f"{o}_treated_before"], out[f"{o}_treated_after"] = pre_t, rate_t
        out[f"{o}_comparison_before"], out[f"{o}_comparison_after"] = pre_c, rate_c
        out[f"{o}_effect"] = 1 - rate_t / rate_c if rate_c else np.nan
        out[f"{o}_averted"] = (rate_c - rate_t) * py_t
        out[f"{o}_naive_effect"] = 1 - rate_t / pre_t if pre_t else np.nan
        out[f"{o}_did_effect"] = (1 - (rate_t / pre_t) / (rate_c / pre_c)
                                  if pre_t and rate_c and pre_c else np.nan)
        out[f"{o}_counterfactual"] = rate_c * py_t
    out["treated_people"] = float(wt.sum())
    out["comparison_people"] = int((c & (ratio[a.stratum] > 0) & (w > 0)).sum())
    out["treated_person_years"] = py_t
    return out


def estimate(frame: pl.DataFrame, stratum: list[str], resamples: int, seed: int) -> dict:
    """Point estimates and 95% bootstrap intervals (Poisson bootstrap over people)."""
    a = _arrays(frame, stratum)
    point = _point(a, np.ones(len(a.treated)))
    rng = np.random.default_rng(seed)
    draws = [_point(a, rng.poisson(1.0, len(a.treated)).astype(np.float64)) for _ in range(resamples)]
    result = {"treated_people": int(round(point["treated_people"])), "comparison_people": point["comparison_people"],
              "treated_person_years": point["treated_person_years"]}
    for key, value in point.items():
        if key.endswith(("_effect", "_averted")):
            values = np.array([d[key] for d in draws])
            values = values[np.isfinite(values)]
            low, high = (np.quantile(values, [0.025, 0.975]) if len(values) else (np.nan, np.nan))
            result[key] = {"estimate": _num(value), "low": _num(low), "high": _num(high)}
        elif key not in result:
            result[key] = _num(value)
    return result


def _num(value) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def analysis_frames(frame: pl.DataFrame, cap: int, did_min: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(matched frame, DiD frame): the matched one strata on meeting, area and capped pre count;
    the DiD one keeps non-selected people with at least `did_min` offences before, by meeting and area."""
    matched = frame.with_columns(pl.min_horizontal(pl.col("pre_offences"), pl.lit(cap)).alias("pre_stratum"))
    did = frame.filter(pl.col("treated") | (pl.col("pre_offences") >= did_min)).with_columns(pl.lit(0).alias("pre_stratum"))
    return matched, did


def check_period(start: date, end: date, last_covered: date | None) -> None:
    if start > end:
        raise DataRangeError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    if last_covered is None or end + timedelta(days=WINDOW_DAYS) > last_covered:
        raise DataRangeError(
            f"the 12 months after a meeting on {end.isoformat()} run past the last date the data cover "
            f"({last_covered.isoformat() if last_covered else 'no offences'})",
            hint=f"use --to {(last_covered - timedelta(days=WINDOW_DAYS)).isoformat() if last_covered else 'an earlier date'}")
