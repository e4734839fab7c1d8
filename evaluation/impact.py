"""Did IOM management reduce recorded offending? `iom impact` (docs/impact.md).

Design. Each person accepted by the panel (`decisions`) is evaluated once, at their first accept,
if its meeting D is in the period, and followed for the 365 days before the meeting day,
[D - 365, D), and the 365 days from it, [D, D + 365). Offending is every offence recorded by the
police (`offence_facts`) committed in a window and recorded by its end; person-time excludes the
days in custody in each window, so the rate is offences per person-year at risk.

Candidates for the comparison at D: adults with an offence in the year before, alive a year on,
not in custody at D, never accepted at or before D, and not waiting for a review the panel set
after D (a case it had decided and would not look at again yet: not a candidate at D).

- Primary (a discontinuity design around the capacity cut, by local randomisation): the panel
  ranks the candidates in each area by their recent offending (the running variable) and takes
  as many as its places allow, so its capacity line at D is the lowest recent offending of anyone
  it accepted there. Only people from the line to `bandwidth` offences above it are compared,
  matched exactly on (meeting, area, offences in the year before); the comparison is weighted
  to the managed people's strata (an effect on the treated at the margin of selection).
  Assumption: near the line, who was selected is as good as random given the running variable
  (ties broken by the panel's judgement or chance, the order of review, places running out).
  Both groups were chosen at the same peak, so regression to the mean affects both alike.
  Further from the line, the people not selected are the exceptions the panel turned down for
  reasons of its own, and matching on recent offending no longer makes them comparable (on the
  synthetic world this overstated the effect by about a seventh: docs/impact.md).
- Secondary (difference-in-differences): the change from before to after of all the managed
  against that of non-selected candidates in the same meeting and area with at least
  `did_min_pre_offences`. Assumption: parallel trends, which regression to the mean breaks when
  the two groups' peaks differ; it is reported as a check, not the headline.
- Naive: the managed people's own after against before, which regression to the mean flatters.

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
from scipy import sparse

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
    -- person was at, and matching on fewer would leave the selected at a higher true peak. The
    -- 365 days before the meeting day, [D - 365, D): the meeting day is the first day managed.
    SELECT o.person_number, m.d, count(*) AS pre_offences,
           count(*) FILTER (k.neighbourhood_crime) AS pre_neighbourhood, sum(k.unit_cost) AS pre_cost
    FROM offence_facts o JOIN m ON o.offence_date >= m.d - $window AND o.offence_date < m.d
    JOIN {codes} k ON k.code_number = o.code_number
    GROUP BY ALL),
managed AS (  -- [one person and meeting]: accepted at the meeting or at any before it. The
    -- managed are each evaluated at their first accept, so they had never been managed before it;
    -- the comparison must not have been either: people managed before are more often persistent
    -- offenders than people at their first peak, and would make the scheme look better.
    -- People accepted *after* the meeting stay in the comparison: leaving them out would keep
    -- only the non-selected who stopped offending (selected later for carrying on), which
    -- conditions on the future; keeping them biases the estimate towards no effect, if anything.
    SELECT DISTINCT p.person_number, m.d
    FROM decisions dc JOIN people p USING (person_key) JOIN m
      ON dc.decision = 'accept' AND dc.meeting_date <= m.d),
pending AS (  -- [one person and meeting]: a case the panel had decided not to take, with its
    -- review due after the meeting, so not a candidate at it (the panel could not select them)
    SELECT DISTINCT p.person_number, m.d
    FROM decisions dc JOIN people p USING (person_key) JOIN m
      ON dc.decision <> 'accept' AND dc.meeting_date < m.d AND dc.review_date > m.d),
inside AS (  -- [one person in custody at a meeting]
    SELECT DISTINCT s.person_number, m.d FROM custody_facts s JOIN m
      ON s.reception_date <= m.d AND (s.release_date IS NULL OR s.release_date > m.d)),
lines AS (  -- [one meeting and area]: the capacity line, the lowest recent offending of anyone
    -- the panel accepted there (the last place filled)
    SELECT m.d, p.area, min(coalesce(pre.pre_offences, 0)) AS line
    FROM decisions dc JOIN people p USING (person_key) JOIN m ON dc.decision = 'accept' AND dc.meeting_date = m.d
    LEFT JOIN pre ON pre.person_number = p.person_number AND pre.d = m.d
    GROUP BY ALL),
cands AS (
    SELECT t.person_number, t.meeting_date AS d, true AS treated, t.cohort_type FROM {treated} t
    UNION ALL
    -- only where someone was accepted, and with at least as many offences before as either design
    -- compares (the line, or the DiD's minimum): the rest carry no weight in any estimate
    SELECT pre.person_number, pre.d, false, NULL
    FROM pre JOIN people p USING (person_number) JOIN lines l ON l.d = pre.d AND l.area = p.area
    WHERE pre.pre_offences >= least(l.line, $did_min)
      AND NOT EXISTS (SELECT 1 FROM managed x WHERE x.person_number = pre.person_number AND x.d = pre.d)
      AND NOT EXISTS (SELECT 1 FROM pending x WHERE x.person_number = pre.person_number AND x.d = pre.d)
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
managed_after AS (  -- [one candidate managed in the year after]: days managed in it (the managed
    -- themselves, and comparison people the panel took later), for the effect while managed
    SELECT a.person_number, a.d,
           least($window, sum(greatest(0, least(coalesce(dc.management_end, a.d + $window), a.d + $window)
                                       - greatest(dc.meeting_date, a.d)))) AS post_managed
    FROM alive a JOIN people p USING (person_number)
    JOIN decisions dc ON dc.person_key = p.person_key AND dc.decision = 'accept'
    WHERE dc.meeting_date < a.d + $window AND coalesce(dc.management_end, DATE '9999-12-31') > a.d
    GROUP BY ALL),
post AS (  -- [one candidate with an offence in the 12 months after, recorded by the window's end]
    SELECT a.person_number, a.d, count(*) AS post_offences,
           count(*) FILTER (k.neighbourhood_crime) AS post_neighbourhood, sum(k.unit_cost) AS post_cost
    FROM alive a JOIN offence_facts o ON o.person_number = a.person_number
    JOIN {codes} k ON k.code_number = o.code_number
    WHERE o.offence_date >= a.d AND o.offence_date < a.d + $window
      AND (o.recorded_date IS NULL OR o.recorded_date < a.d + $window)
    GROUP BY ALL)
SELECT a.person_number, a.d AS meeting_date, a.treated, a.cohort_type, a.area,
       coalesce(pre.pre_offences, 0)::BIGINT AS pre_offences,
       coalesce(pre.pre_neighbourhood, 0)::BIGINT AS pre_neighbourhood,
       coalesce(pre.pre_cost, 0)::DOUBLE AS pre_cost,
       coalesce(post.post_offences, 0)::BIGINT AS post_offences,
       coalesce(post.post_neighbourhood, 0)::BIGINT AS post_neighbourhood,
       coalesce(post.post_cost, 0)::DOUBLE AS post_cost,
       ($window - coalesce(c.pre_custody, 0))::BIGINT AS pre_days,
       ($window - coalesce(c.post_custody, 0))::BIGINT AS post_days,
       coalesce(ma.post_managed, 0)::BIGINT AS post_managed_days,
       l.line::BIGINT AS line
FROM alive a LEFT JOIN pre USING (person_number, d) LEFT JOIN post USING (person_number, d)
LEFT JOIN custody c USING (person_number, d) LEFT JOIN managed_after ma USING (person_number, d)
LEFT JOIN lines l ON l.d = a.d AND l.area = a.area
"""


def treated_people(con: duckdb.DuckDBPyConnection, start: date, end: date) -> pl.DataFrame:
    """[one person first accepted at a meeting from `start` to `end`]: person_number,
    meeting_date, cohort_type, management_end. People managed before are not evaluated again
    (their comparison would have to have been managed before too)."""
    return run_sql(con, "impact: treated", """
        -- [one person: their first accept, if its meeting is in the period]
        SELECT * FROM (
            SELECT p.person_number, d.meeting_date, d.cohort_type, d.management_end
            FROM decisions d JOIN people p USING (person_key)
            WHERE d.decision = 'accept'
            QUALIFY row_number() OVER (PARTITION BY p.person_number ORDER BY d.meeting_date, d.row_number) = 1)
        WHERE meeting_date BETWEEN $start AND $end
        """, {"start": start, "end": end}).pl()


def windows(con: duckdb.DuckDBPyConnection, treated: pl.DataFrame, codes: pl.DataFrame,
            did_min: int = 3) -> pl.DataFrame:
    """The before/after windows of the treated and of every candidate comparison with at least
    min(line, `did_min`) offences before, at a meeting and in an area where someone was accepted
    (see _WINDOWS_SQL)."""
    meetings = treated.select("meeting_date").unique()
    views = {"_iom_impact_meetings": meetings, "_iom_impact_codes": codes,
             "_iom_impact_treated": treated.select("person_number", "meeting_date", "cohort_type")}
    for name, frame in views.items():
        con.register(name, frame.to_arrow())
    try:
        sql = _WINDOWS_SQL.format(meetings=q("_iom_impact_meetings"), codes=q("_iom_impact_codes"),
                                  treated=q("_iom_impact_treated"))
        # sorted: the bootstrap's draws go by row, so the same data give the same intervals
        return run_sql(con, "impact: windows", sql, {"window": WINDOW_DAYS, "did_min": did_min}).pl().sort(
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
    post_managed: np.ndarray  # days managed in the year after


def _arrays(frame: pl.DataFrame, stratum: list[str]) -> Arrays:
    codes = frame.select(pl.struct(stratum).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    return Arrays(frame["treated"].to_numpy(), codes,
                  {o: frame[f"pre_{o}"].cast(pl.Float64).to_numpy() for o in OUTCOMES},
                  {o: frame[f"post_{o}"].cast(pl.Float64).to_numpy() for o in OUTCOMES},
                  person_years(frame["pre_days"].to_numpy()), person_years(frame["post_days"].to_numpy()),
                  int(codes.max()) + 1 if len(codes) else 0,
                  (frame["post_managed_days"].cast(pl.Float64).to_numpy() if "post_managed_days" in frame.columns
                   else np.zeros(frame.height)))


# the sums kept per stratum, for the managed and for the comparison
_STATS = ("n", "pre_py", "post_py", "post_managed") + tuple(f"{w}_{o}" for w in ("pre", "post") for o in OUTCOMES)
_K = {name: i for i, name in enumerate(_STATS)}
_CHUNK = 25  # resamples drawn at once: 25 x rows weights in memory


def _design(a: Arrays) -> sparse.csr_matrix:
    """[one row] x [group (managed, comparison), stratum, statistic]: each row's values in its own
    group and stratum's columns, so that weights @ design gives every stratum's weighted sums."""
    n, k = len(a.treated), len(_STATS)
    values = np.column_stack([np.ones(n), a.pre_py, a.post_py, a.post_managed, *(a.pre[o] for o in OUTCOMES),
                              *(a.post[o] for o in OUTCOMES)])
    cell = np.where(a.treated, 0, a.strata) + a.stratum
    cols = (cell[:, None] * k + np.arange(k)[None, :]).ravel()
    rows = np.repeat(np.arange(n), k)
    return sparse.csr_matrix((values.ravel(), (rows, cols)), shape=(n, 2 * max(a.strata, 1) * k))


def _from_sums(sums: np.ndarray, strata: int) -> dict[str, np.ndarray]:
    """The estimates from per-stratum weighted sums, (resamples, 2 x strata x statistics): the
    comparison reweighted to the managed people's strata, strata without both left out."""
    k = len(_STATS)
    s = sums.reshape(len(sums), 2, max(strata, 1), k)
    t, c = s[:, 0], s[:, 1]
    n_t, n_c = t[..., _K["n"]], c[..., _K["n"]]
    ratio = np.divide(n_t, n_c, out=np.zeros(n_t.shape), where=n_c > 0)
    both = (n_t > 0) & (n_c > 0)
    tw = (t * both[..., None]).sum(axis=1)  # the managed people with a comparison in their stratum
    cw = (c * ratio[..., None]).sum(axis=1)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        def ratio_of(x, y):
            return np.where(y != 0, x / np.where(y != 0, y, 1), np.nan)
        py_t, py_c = tw[:, _K["post_py"]], cw[:, _K["post_py"]]
        pre_py_t, pre_py_c = tw[:, _K["pre_py"]], cw[:, _K["pre_py"]]
        # the share of the year after spent managed: the managed, and the comparison taken later
        share_t = ratio_of(tw[:, _K["post_managed"]], tw[:, _K["n"]] * WINDOW_DAYS)
        share_c = ratio_of(cw[:, _K["post_managed"]], cw[:, _K["n"]] * WINDOW_DAYS)
        out["managed_share_treated"], out["managed_share_comparison"] = share_t, share_c
        for o in OUTCOMES:
            rate_t, rate_c = ratio_of(tw[:, _K[f"post_{o}"]], py_t), ratio_of(cw[:, _K[f"post_{o}"]], py_c)
            pre_t, pre_c = ratio_of(tw[:, _K[f"pre_{o}"]], pre_py_t), ratio_of(cw[:, _K[f"pre_{o}"]], pre_py_c)
            out[f"{o}_treated_before"], out[f"{o}_treated_after"] = pre_t, rate_t
            out[f"{o}_comparison_before"], out[f"{o}_comparison_after"] = pre_c, rate_c
            out[f"{o}_effect"] = 1 - ratio_of(rate_t, rate_c)
            out[f"{o}_averted"] = (rate_c - rate_t) * py_t
            out[f"{o}_naive_effect"] = 1 - ratio_of(rate_t, pre_t)
            out[f"{o}_did_effect"] = 1 - ratio_of(ratio_of(rate_t, pre_t), ratio_of(rate_c, pre_c))
            out[f"{o}_counterfactual"] = rate_c * py_t
            # while managed: a rate cut by m on the days managed gives after-rates in the ratio
            # (1 - m s_t) / (1 - m s_c), so m = (1 - R) / (s_t - R s_c), R the rates' ratio
            r = ratio_of(rate_t, rate_c)
            out[f"{o}_managed_effect"] = ratio_of(1 - r, share_t - r * share_c)
    out["treated_people"] = tw[:, _K["n"]]
    out["treated_person_years"] = py_t
    return out


def estimate(frame: pl.DataFrame, stratum: list[str], resamples: int, seed: int) -> dict:
    """Point estimates and 95% bootstrap intervals (Poisson bootstrap over people)."""
    return estimate_groups(frame, stratum, resamples, seed, {"all": None})["all"]


def estimate_groups(frame: pl.DataFrame, stratum: list[str], resamples: int, seed: int,
                    groups: dict[str, pl.Expr | None]) -> dict[str, dict]:
    """`estimate` for each group of rows (an expression on the frame; None: every row), all from
    the same resamples: each resample's Poisson weights are drawn once for the whole frame, and
    every group's stratum sums are the product of those weights with its rows of a sparse design."""
    a = _arrays(frame, stratum)
    n = len(a.treated)
    design = _design(a)
    masks = {g: (np.ones(n, dtype=bool) if e is None else frame.select(e.fill_null(False)).to_series().to_numpy())
             for g, e in groups.items()}
    designs = {g: (design if m.all() else sparse.diags(m.astype(np.float64)) @ design) for g, m in masks.items()}
    points = {}
    for g, d in designs.items():
        total = np.asarray(d.sum(axis=0))
        point = {key: v[0] for key, v in _from_sums(total, a.strata).items()}
        sums = total.reshape(2, max(a.strata, 1), len(_STATS))
        matched = (sums[0, :, _K["n"]] > 0) & (sums[1, :, _K["n"]] > 0)
        point["comparison_people"] = int((~a.treated & masks[g] & matched[a.stratum]).sum()) if n else 0
        points[g] = point
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[np.ndarray]]] = {g: {} for g in groups}
    for start in range(0, resamples, _CHUNK):
        weights = rng.poisson(1.0, (min(_CHUNK, resamples - start), n)).astype(np.float64)
        for g, d in designs.items():
            for key, v in _from_sums(np.asarray(weights @ d), a.strata).items():
                draws[g].setdefault(key, []).append(v)
    return {g: _summarised(points[g], draws[g]) for g in groups}


def _summarised(point: dict, draws: dict[str, list[np.ndarray]]) -> dict:
    result = {"treated_people": int(round(point["treated_people"])), "comparison_people": point["comparison_people"],
              "treated_person_years": point["treated_person_years"]}
    for key, value in point.items():
        if key.endswith(("_effect", "_averted")):
            values = np.concatenate(draws[key]) if key in draws else np.array([])
            values = values[np.isfinite(values)]
            low, high = (np.quantile(values, [0.025, 0.975]) if len(values) else (np.nan, np.nan))
            result[key] = {"estimate": _num(value), "low": _num(low), "high": _num(high)}
        elif key not in result:
            result[key] = _num(value)
    return result


def _num(value) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def analysis_frames(frame: pl.DataFrame, cap: int, did_min: int,
                    bandwidth: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(matched frame, DiD frame), each kept to the cells that hold a managed person (the others
    carry no weight, so leaving them out changes no estimate and makes the bootstrap cheaper).

    The matched one: strata of meeting, area and the count of offences before (capped at `cap`);
    with a `bandwidth`, only people from the area's capacity line at that meeting to `bandwidth`
    offences above it (`line` <= pre_offences <= line + bandwidth: a discontinuity design by
    local randomisation). The DiD one: the managed and the non-selected with at least `did_min`
    offences before, by meeting and area."""
    matched = frame.with_columns(pl.min_horizontal(pl.col("pre_offences"), pl.lit(cap)).alias("pre_stratum"))
    if bandwidth is not None:
        running = pl.col("pre_offences") - pl.col("line")
        matched = matched.filter(running.is_between(0, bandwidth))
    did = frame.filter(pl.col("treated") | (pl.col("pre_offences") >= did_min)).with_columns(pl.lit(0).alias("pre_stratum"))
    return _with_treated(matched, ["meeting_date", "area", "pre_stratum"]), _with_treated(did, ["meeting_date", "area"])


def _with_treated(frame: pl.DataFrame, cell: list[str]) -> pl.DataFrame:
    return frame.filter(pl.col("treated").any().over(cell))


def check_period(start: date, end: date, last_covered: date | None) -> None:
    if start > end:
        raise DataRangeError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    if last_covered is None or end + timedelta(days=WINDOW_DAYS) > last_covered:
        raise DataRangeError(
            f"the 12 months after a meeting on {end.isoformat()} run past the last date the data cover "
            f"({last_covered.isoformat() if last_covered else 'no offences'})",
            hint=f"use --to {(last_covered - timedelta(days=WINDOW_DAYS)).isoformat() if last_covered else 'an earlier date'}")
