"""What people went on to do: outcomes in the window after an as-of date D, from the facts tables.

The window is (start, start + horizon], where start is D for a person in the community at D.
Time at risk: a person in custody at D (a spell received by D, not released by D) cannot
offend in the community, so their window starts at their release (the latest release date of
the spells open at D, as the data record it by their end); someone still inside when the data
end, or whose shifted window runs past the last date covered, has no complete window and is
left out (`at_risk` false). Custody during the window (a recall, a new sentence) is not taken
out: those people are in the window as the panel would have selected them, and
`days_in_custody` says how long each was inside, for the reader.

An offence is an outcome when committed in the window and recorded by its end, and counted
when its outcome as known at the end of the window is one of the counted outcomes (an outcome
dated after the end is 'pending' then), as the features count offences at D.
Outcomes per person: `offences` (counted offences), `neighbourhood` and `violent` (their
neighbourhood-crime and violence counts, from the offence reference), `any_offence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import polars as pl

from pipeline.contract import OUTCOMES
from pipeline.warehouse import q, run_sql

CODES_VIEW = "_iom_outcome_codes"
OPEN_ENDED = date(9999, 12, 31)

# [one person assessed at D] (the people frame registered as `_iom_outcome_people`): window,
# custody days in it and the counted offences in it. Dates are bound parameters.
_OUTCOMES_SQL = """
WITH open_at_d AS (  -- [one person in custody at D]: when they left (OPEN_ENDED: still inside)
    SELECT person_number, max(coalesce(release_date, $open_ended)) AS released
    FROM custody_facts
    WHERE reception_date <= $d AND (release_date IS NULL OR release_date > $d)
    GROUP BY person_number),
windows AS (
    SELECT p.person_number, c.person_number IS NOT NULL AS in_custody_at_d,
           CASE WHEN c.person_number IS NULL THEN $d WHEN c.released < $open_ended THEN c.released END
               AS window_start
    FROM {people} p LEFT JOIN open_at_d c USING (person_number)),
bounded AS (
    SELECT *, window_start + $horizon AS window_end,
           window_start IS NOT NULL AND window_start + $horizon <= $last_covered AS at_risk
    FROM windows),
custody_days AS (  -- [one person at risk with custody in the window]: days inside in it
    SELECT b.person_number,
           sum(greatest(0, least(coalesce(s.release_date, b.window_end), b.window_end)
                           - greatest(s.reception_date, b.window_start))) AS days_in_custody
    FROM bounded b JOIN custody_facts s USING (person_number)
    WHERE (s.release_date IS NULL OR s.release_date > $d) AND b.at_risk AND s.reception_date < b.window_end
          AND (s.release_date IS NULL OR s.release_date > b.window_start)
    GROUP BY b.person_number),
offences AS (  -- [one person at risk with an offence in the window]
    SELECT b.person_number,
           count(*) FILTER (counted) AS offences,
           count(*) FILTER (counted AND k.neighbourhood_crime) AS neighbourhood,
           count(*) FILTER (counted AND k.violence) AS violent
    FROM (SELECT b.person_number, b.window_end, o.code_number,
                 CASE WHEN o.outcome_date <= b.window_end AND o.outcome_number IS NOT NULL THEN {counted_in}
                      ELSE {pending} END AS counted
          FROM bounded b JOIN offence_facts o USING (person_number)
          -- every window starts at or after D: offences up to D never reach the join
          WHERE o.offence_date > $d AND b.at_risk AND o.offence_date > b.window_start AND o.offence_date <= b.window_end
                AND (o.recorded_date IS NULL OR o.recorded_date <= b.window_end)) b
    JOIN {codes} k USING (code_number)
    GROUP BY b.person_number)
SELECT b.person_number, b.in_custody_at_d, b.window_start, b.window_end, b.at_risk,
       coalesce(d.days_in_custody, 0)::BIGINT AS days_in_custody,
       coalesce(o.offences, 0)::BIGINT AS offences, coalesce(o.neighbourhood, 0)::BIGINT AS neighbourhood,
       coalesce(o.violent, 0)::BIGINT AS violent, coalesce(o.offences, 0) > 0 AS any_offence
FROM bounded b LEFT JOIN custody_days d USING (person_number) LEFT JOIN offences o USING (person_number)
"""

OUTCOME_COLUMNS = ("in_custody_at_d", "window_start", "window_end", "at_risk", "days_in_custody", "offences",
                   "neighbourhood", "violent", "any_offence")


def window_outcomes(con: duckdb.DuckDBPyConnection, people: pl.DataFrame, as_of: date, horizon_days: int,
                    last_covered: date, counted_outcomes: Sequence[str], codes: pl.DataFrame) -> pl.DataFrame:
    """Outcomes of `people` (a frame with person_number, one row each) in the window after
    `as_of`: person_number then OUTCOME_COLUMNS. `codes` is `features.build.offence_codes(...)`
    (neighbourhood and violence flags by code number)."""
    counted = [OUTCOMES.index(c) for c in dict.fromkeys(counted_outcomes) if c != "pending"]
    params: dict = {"d": as_of, "horizon": horizon_days, "last_covered": last_covered, "open_ended": OPEN_ENDED}
    names = []
    for i, value in enumerate(counted):
        params[f"counted_{i}"] = value
        names.append(f"$counted_{i}")
    counted_in = f"o.outcome_number IN ({', '.join(names)})" if names else "false"
    people_view = "_iom_outcome_people"
    sql = _OUTCOMES_SQL.format(people=q(people_view), codes=q(CODES_VIEW), counted_in=counted_in,
                               pending="true" if "pending" in counted_outcomes else "false")
    con.register(people_view, people.select("person_number").to_arrow())
    con.register(CODES_VIEW, codes.select("code_number", "neighbourhood_crime", "violence").to_arrow())
    try:
        return run_sql(con, "outcomes: window outcomes", sql, params).pl()
    finally:
        con.unregister(people_view)
        con.unregister(CODES_VIEW)
