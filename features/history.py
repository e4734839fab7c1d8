"""Criminal history at the as-of date D: the PNC's national view (through probation) and the
force's own sanctions, combined into one count, one career and one offending rate.

Two sources know a person's sanctions (convictions, cautions, community resolutions):

- probation's `previous_sanctions` and `first_sanction_date`, copied from the PNC when the case
  was assessed: the national record (every force, every court), but only as of the assessment
  date A. We read the case whose assessment is the latest on or before D that gives a count
  (`assessment_order`, as for OGRS3 and RoSH), and the earliest first-sanction date any case
  assessed by D gives. `previous_sanctions` counts the sanctions *before* the one the case is
  for, so a case with a supervising order (any type but 'none') adds that sanction: total = count + 1.
- the force's own offences whose outcome (known at D) is a sanction (`pipeline.facts.SANCTION_OUTCOMES`):
  local offending only, but up to D, so it holds the sanctions after A the PNC copy cannot.

Precedence, from first principles: the PNC count is the better base (a local count can only
miss offending elsewhere), brought up to D with the local sanctions dated after A; if the local
count alone is still larger (a stale or mistyped probation copy) it is taken instead, as a
sanction recorded by the force did happen. `history_source` says which: 'pnc' (the PNC count,
no local sanction since A), 'pnc+police' (the PNC count plus local sanctions after A), 'police'
(no probation count, or the local count is larger), 'none' (no sanction known at D).

Derived features (whole years, as OGRS3 uses them):

- `sanctions_total`: the count above (0 when none is known);
- `first_sanction_age`: age at the earliest first-sanction date either source gives (null when
  neither gives a date);
- `career_years`: age at D minus `first_sanction_age` (0 with no sanction); when sanctions are
  known but no first date, the first sanction is taken at age 18 (or the age at D if younger),
  as the issue's held-out study did;
- `copas_rate`: ln((1 + previous sanctions) / (10 + career_years)), previous = sanctions_total - 1
  (0 with no sanction): the Copas rate of OGRS3, measured to D rather than to the current sanction.

OGRS3 is computed (`ogrs3_source` 'computed') where probation gives no score, from the same
history: total sanctions, age at the first sanction (or the assumption above), age at the
current sanction (the latest local sanction, or the probation case's assessment when that is
later) and the offence group of the current local sanction (the rule set's unknown-offence
group when the current sanction is the probation case's, whose offence the extract lacks).
"""

from __future__ import annotations

import polars as pl

from features.ogrs3 import ogrs3_percent_expr

ASSUMED_FIRST_SANCTION_AGE = 18
HISTORY_SOURCES = ("pnc", "pnc+police", "police", "none")

# [one person with a probation case assessed by D that gives a sanction count or a first date]
# (case_facts), with the local sanctions (offence_facts) whose outcome date is after that
# assessment and on or before D, counted as `offences_at_d` counts them (committed and recorded by D).
PNC_HISTORY_SQL = """
WITH pnc AS (
    SELECT person_number,
           arg_max(previous_sanctions, assessment_order) FILTER (previous_sanctions IS NOT NULL) AS pnc_previous,
           arg_max(assessed_from, assessment_order) FILTER (previous_sanctions IS NOT NULL) AS pnc_assessed,
           arg_max(coalesce(supervision_type <> 'none', false), assessment_order)
               FILTER (previous_sanctions IS NOT NULL) AS pnc_with_order,
           min(first_sanction_date) FILTER (first_sanction_date <= $d) AS pnc_first_date
    FROM case_facts
    WHERE assessed_from <= $d AND (previous_sanctions IS NOT NULL OR first_sanction_date IS NOT NULL)
    GROUP BY person_number),
local_after AS (
    SELECT o.person_number, count(*) AS police_sanctions_after
    FROM offence_facts o JOIN pnc p USING (person_number)
    WHERE o.outcome_date > p.pnc_assessed AND o.outcome_date <= $d AND {sanction_in}
          AND o.offence_date <= $d AND (o.recorded_date IS NULL OR o.recorded_date <= $d)
    GROUP BY o.person_number)
SELECT p.person_number, p.pnc_previous, p.pnc_with_order,
       year(p.pnc_assessed) * 10000 + month(p.pnc_assessed) * 100 + day(p.pnc_assessed) AS pnc_assessed_ymd,
       year(p.pnc_first_date) * 10000 + month(p.pnc_first_date) * 100 + day(p.pnc_first_date) AS pnc_first_ymd,
       coalesce(l.police_sanctions_after, 0) AS police_sanctions_after
FROM pnc p LEFT JOIN local_after l USING (person_number)
"""

HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "sanctions_total": pl.Int64(),
    "first_sanction_age": pl.Int64(),
    "career_years": pl.Int64(),
    "copas_rate": pl.Float64(),
    "history_source": pl.Utf8(),
}


def pnc_history_sql(sanction_in: str) -> str:
    """The query above with the sanction outcomes' condition (`o.outcome_number IN (...)`, bound)."""
    return PNC_HISTORY_SQL.format(sanction_in=sanction_in)


def _whole_years(start_ymd: pl.Expr, end_ymd: pl.Expr) -> pl.Expr:
    difference = end_ymd - start_ymd
    return (difference.abs() // 10000) * difference.sign()


def with_criminal_history(frame: pl.DataFrame, pnc: pl.DataFrame, default_ogrs3_group: str) -> pl.DataFrame:
    """Add HISTORY_SCHEMA's columns and `ogrs3_2yr` / `ogrs3_source` to the assembled features.

    `frame` carries the police side: `_sanctions` (local sanctions at D, null when none),
    `_current_ymd` and `_first_ymd` (yyyymmdd of the current and first local sanction),
    `_current_ogrs3_group`, `birth_ymd`, `age`, `_sex`, `probation_ogrs3`; `pnc` is the
    PNC_HISTORY_SQL result (one row per person with a probation history).
    """
    col = pl.col
    frame = frame.join(pnc, on="person_number", how="left", maintain_order="left")
    police = col("_sanctions")
    pnc_total = (col("pnc_previous") + col("pnc_with_order").cast(pl.Int64) + col("police_sanctions_after"))
    use_police = pnc_total.is_null() | (police.fill_null(0) > pnc_total)
    total = pl.when(use_police).then(police.fill_null(0)).otherwise(pnc_total)
    source = (
        pl.when(total == 0).then(pl.lit("none"))
        .when(use_police).then(pl.lit("police"))
        .when(col("police_sanctions_after") > 0).then(pl.lit("pnc+police"))
        .otherwise(pl.lit("pnc"))
    )
    first_ymd = pl.min_horizontal(col("_first_ymd"), col("pnc_first_ymd"))
    first_age = _whole_years(col("birth_ymd"), first_ymd)
    # the current sanction: the latest local one, or the probation case's when assessed later
    pnc_current = pl.when(~use_police & col("pnc_with_order")).then(col("pnc_assessed_ymd"))
    current_ymd = pl.max_horizontal(col("_current_ymd"), pnc_current)
    current_is_local = col("_current_ymd").is_not_null() & (col("_current_ymd") >= current_ymd)
    age_at_current = _whole_years(col("birth_ymd"), current_ymd)
    frame = frame.with_columns(
        total.cast(pl.Int64).alias("sanctions_total"),
        first_age.alias("first_sanction_age"),
        source.alias("history_source"),
        age_at_current.alias("_age_at_current"),
        pl.when(current_is_local).then(col("_current_ogrs3_group")).otherwise(pl.lit(default_ogrs3_group))
        .alias("_current_group"),
    )
    assumed_first = pl.min_horizontal(pl.lit(ASSUMED_FIRST_SANCTION_AGE), col("age"))
    has_sanctions = col("sanctions_total") > 0
    first_for_rate = pl.coalesce(col("first_sanction_age"), assumed_first)
    career = pl.when(has_sanctions).then((col("age") - first_for_rate).clip(lower_bound=0)).otherwise(0)
    previous = (col("sanctions_total") - 1).clip(lower_bound=0).cast(pl.Float64)
    frame = frame.with_columns(career.cast(pl.Int64).alias("career_years"))
    frame = frame.with_columns(
        ((1 + previous) / (10 + col("career_years")).cast(pl.Float64)).log().alias("copas_rate"),
    )
    computed = ogrs3_percent_expr(
        age=col("age"),
        sex=col("_sex"),
        total_sanctions=col("sanctions_total"),
        age_at_current=col("_age_at_current"),
        age_at_first=pl.min_horizontal(first_for_rate, col("_age_at_current")),
        offence_group=col("_current_group"),
    )
    frame = frame.with_columns(computed.alias("_computed_ogrs3"))
    return frame.with_columns(
        pl.coalesce("probation_ogrs3", "_computed_ogrs3").alias("ogrs3_2yr"),
        pl.when(col("probation_ogrs3").is_not_null()).then(pl.lit("probation"))
        .when(col("_computed_ogrs3").is_not_null()).then(pl.lit("computed"))
        .otherwise(None).alias("ogrs3_source"),
    )
