"""Point-in-time features: one row per person assessed at D (the as-of date).

Everything is computed from what was known on or before D, so the monthly run and a model's
historical training snapshots use the same code:

- an offence counts only if committed and recorded by D; its outcome is the recorded outcome
  only if the outcome date is on or before D (otherwise, or with no outcome date, 'pending');
  it is *counted* when that outcome at D is one of the rule set's `counted_outcomes`;
- a custody spell counts from its reception date; it has ended at D only if released by D;
- a supervision period counts from its start; assessments (OGRS3, RoSH, MAPPA) from their
  assessment date (or the period start when there is none); probation events from their date;
- death counts only from the date of death; the area is the police nominal's area, else the
  latest probation or prison area known at D.

Definitions worth knowing (windows are `(D - n months, D]`, months clamped to month ends):

- the assessed population: people with an offence known at D, a custody spell received by D or
  a supervision period started by D; `in_police`, `in_prison`, `in_probation` say which;
- `most_serious_36m`: the description of the counted offence with the highest gravity in 36
  months; ties go to the most recent, then the lowest offence code;
- `unknown_offences_36m`: counted offences in 36 months whose code is not in the reference;
- `days_until_release`: expected release date minus D while in custody (negative if overdue);
  `release_due_90d`: in custody with an expected release date no later than D + 90 days;
- `under_supervision`: a period started by D, not ended before D, of a type other than
  'none' (a case without a supervising order); `supervision_type` is the latest such period's;
- `sanctions_total`, `first_sanction_age`, `career_years`, `copas_rate`, `history_source`: the
  criminal history at D from the PNC (via probation) and the force's sanctions, `features.history`;
- `ogrs3_2yr`: the latest probation OGRS3 assessed by D, else computed from that history
  (`ogrs3_source` 'probation' or 'computed'), see `features.ogrs3` and `features.history`.

The work is set-based: one DuckDB query per source (named steps as CTEs, grain in a comment,
dates as bound parameters) over the facts tables the link builds (`pipeline.facts`: person
numbers, dates, code and outcome numbers, no text ids), three at once on three connections; the
settled offences come from their summary when the as-of date allows. Polars joins the results
to the people, decodes the packed keys and applies the OGRS3 formula.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import duckdb
import polars as pl

from features.history import HISTORY_SCHEMA, pnc_history_sql, with_criminal_history
from features.ogrs3 import OFFENCE_TERMS
from pipeline.contract import OUTCOMES
from pipeline.errors import ConfigError
from pipeline.facts import (
    HISTORY_WINDOW_MONTHS,
    SANCTION_OUTCOMES,
    UNDECIDED_CLASS,
    months_before,
    sanction_key_sql,
    stored_history_cutoff,
)
from pipeline.keys import SANCTION_KEY, SERIOUS_KEY, code_in_key, code_tie, day_date_sql, day_number_sql
from pipeline.warehouse import cursor, q, run_sql

log = logging.getLogger(__name__)

CODES_VIEW = "_iom_offence_codes"
UNKNOWN_OFFENCE_KEYS = ("offence_group", "gravity", "neighbourhood_crime", "violence", "ogrs3_group")
RELEASE_DUE_DAYS = 90
GROUPS_PER_MASK = 63  # offence groups per BIGINT bit mask (`distinct_groups_36m`)
# The offence windows (months before D): each is a `$d_<n>m` parameter of the offences query.
OFFENCE_WINDOW_MONTHS = (3, 12, 24, 36)

_I, _S, _B, _D = pl.Int64(), pl.Utf8(), pl.Boolean(), pl.Date()
# The output of compute_features, in order: column -> dtype (the same for an empty result).
FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "person_key": _S,
    "age": _I,
    "area": _S,
    "deceased": _B,
    "offences_3m": _I,
    "offences_12m": _I,
    "offences_36m": _I,
    "offences_total": _I,
    "days_since_last_offence": _I,
    "last_offence_date": _D,
    "neighbourhood_12m": _I,
    "violence_12m": _I,
    "distinct_groups_36m": _I,
    "seriousness_sum_36m": _I,
    "seriousness_max_36m": _I,
    "most_serious_36m": _S,
    "trend_12m": _I,
    "prev_12m": _I,
    "in_custody": _B,
    "custody_type_at_d": _S,
    "expected_release_date": _D,
    "days_until_release": _I,
    "release_due_90d": _B,
    "days_since_release": _I,
    "short_sentences_36m": _I,
    "under_supervision": _B,
    "supervision_type": _S,
    **HISTORY_SCHEMA,  # criminal history: features.history
    "ogrs3_2yr": pl.Float64(),
    "ogrs3_source": _S,
    "rosh": _S,
    "mappa_level": _I,
    "breaches_12m": _I,
    "recalls_12m": _I,
    "missed_appointments_12m": _I,
    "positive_drug_tests_12m": _I,
    "in_police": _B,
    "in_probation": _B,
    "in_prison": _B,
    "unknown_offences_36m": _I,
}
FEATURE_COLUMNS: tuple[str, ...] = tuple(FEATURE_SCHEMA)
# The person's source identifiers, for the panel's outputs (never scoring inputs).
IDENTIFIER_COLUMNS: tuple[str, ...] = ("police_person_id", "pnc_id", "crn", "nomis_id")


def _yyyymmdd(column: str) -> str:
    return f"(year({column}) * 10000 + month({column}) * 100 + day({column}))"


def _age_sql(dob: str, at: str) -> str:
    """Whole years between two dates (birthday reached or not), null if either is null."""
    return f"(({_yyyymmdd(at)} - {_yyyymmdd(dob)}) // 10000)"


def _check_inputs(reference: pl.DataFrame, counted_outcomes: Sequence[str], unknown_offence: dict) -> None:
    missing = [k for k in UNKNOWN_OFFENCE_KEYS if k not in unknown_offence]
    if missing:
        raise ConfigError(f"unknown_offence: missing {', '.join(missing)}")
    if unknown_offence["ogrs3_group"] not in OFFENCE_TERMS:
        raise ConfigError(f"unknown_offence.ogrs3_group: {unknown_offence['ogrs3_group']!r} is not an OGRS3 group")
    bad = [o for o in counted_outcomes if o not in OUTCOMES]
    if bad:
        raise ConfigError(f"counted_outcomes: {bad[0]!r} is not an outcome; allowed: {', '.join(OUTCOMES)}")
    needed = {"ho_offence_code", "description", "offence_group", "neighbourhood_crime", "violence", "gravity",
              "ogrs3_group"}
    absent = needed - set(reference.columns)
    if absent:
        raise ConfigError(f"offence reference frame lacks columns: {', '.join(sorted(absent))}")


def _in_list(column: str, prefix: str, values: Sequence[str | int], params: dict) -> str:
    """`column IN ($prefix_0, ...)` with every value bound as a parameter ('false' if none)."""
    names = []
    for i, value in enumerate(dict.fromkeys(values)):
        params[f"{prefix}_{i}"] = value
        names.append(f"${prefix}_{i}")
    return f"{column} IN ({', '.join(names)})" if names else "false"


def _parameters(as_of: date, counted_outcomes: Sequence[str]) -> tuple[dict, dict]:
    params = {"d": as_of, **{f"d_{n}m": months_before(as_of, n) for n in OFFENCE_WINDOW_MONTHS}}
    # offence_facts holds outcomes as their index in OUTCOMES
    counted = [OUTCOMES.index(c) for c in counted_outcomes if c != "pending"]
    parts = {
        "counted_in": _in_list("o.outcome_number", "counted", counted, params),
        "sanction_in": _in_list("o.outcome_number", "sanction", [OUTCOMES.index(c) for c in SANCTION_OUTCOMES], params),
        "pending_counted": "pending" in counted_outcomes,
    }
    return params, parts


def _offences_sql(counted_in: str, sanction_in: str, pending_counted: bool, group_masks: int,
                  unsettled_only: bool) -> str:
    """[one person with an offence read]: every offence aggregate in one pass over offence_facts
    (all rows, or the unsettled ones when the settled summary is used); tie-breaks packed into
    BIGINTs, decoded later."""
    codes = q(CODES_VIEW)
    # Distinct offence groups as bit masks of GROUPS_PER_MASK groups each: exact, one bit_or each.
    group_bits = "".join(f"k.group_bit_{k}, " for k in range(group_masks))
    masks = "\n           ".join(f"bit_or(group_bit_{k}) FILTER (recent) AS group_mask_{k}," for k in range(group_masks))
    pending = "true" if pending_counted else "false"
    return f"""
WITH
-- [one offence known at D]: committed and recorded by D; its outcome as known at D decides
-- whether it is counted (rule set) and whether it is a sanction (OGRS3)
offences_at_d AS (
    SELECT o.person_number, o.offence_date, o.outcome_date, o.code_number, k.unknown_code, k.gravity,
           k.neighbourhood_crime, k.violence, k.serious_base, {group_bits}
           CASE WHEN o.outcome_date <= $d AND o.outcome_number IS NOT NULL THEN {counted_in} ELSE {pending} END
               AS counted,
           coalesce(o.outcome_date <= $d AND {sanction_in}, false) AS sanction,
           {day_number_sql('o.offence_date')} AS offence_day
    FROM offence_facts o JOIN {codes} k USING (code_number)
    WHERE {"NOT o.settled AND " if unsettled_only else ""}o.offence_date <= $d
          AND (o.recorded_date IS NULL OR o.recorded_date <= $d)),
offences_flagged AS (
    SELECT *, counted AND offence_date > $d_36m AS recent FROM offences_at_d),
by_person AS (
SELECT person_number,
       count(*) FILTER (counted) AS offences_total,
       max(offence_date) FILTER (counted) AS last_offence_date,
       count(*) FILTER (recent AND offence_date > $d_3m) AS offences_3m,
       count(*) FILTER (recent AND offence_date > $d_12m) AS offences_12m,
       count(*) FILTER (recent) AS offences_36m,
       count(*) FILTER (recent AND offence_date > $d_12m AND neighbourhood_crime) AS neighbourhood_12m,
       count(*) FILTER (recent AND offence_date > $d_12m AND violence) AS violence_12m,
       {masks}
       CAST(sum(gravity) FILTER (recent) AS BIGINT) AS seriousness_sum_36m,
       -- most serious: highest gravity, then the most recent, then the lowest code
       max(serious_base + {SERIOUS_KEY.sql(offence_day='offence_day')}) FILTER (recent) AS serious_key,
       count(*) FILTER (recent AND offence_date > $d_24m AND offence_date <= $d_12m) AS prev_12m,
       count(*) FILTER (recent AND unknown_code) AS unknown_offences_36m,
       count(*) FILTER (sanction) AS sanctions,
       min(outcome_date) FILTER (sanction) AS first_sanction_date,
       max({sanction_key_sql('outcome_date', 'offence_date', 'code_number')}) FILTER (sanction) AS sanction_key,
       -- the current sanction's date: the key orders sanctions by outcome date first
       max(outcome_date) FILTER (sanction) AS current_sanction_date
FROM offences_flagged GROUP BY person_number)
-- dates as yyyymmdd numbers for whole-year ages (see _age_sql)
SELECT * EXCLUDE (current_sanction_date, first_sanction_date), {_yyyymmdd('current_sanction_date')} AS current_sanction_ymd,
       {_yyyymmdd('first_sanction_date')} AS first_sanction_ymd
FROM by_person
"""


# [one person with a custody spell received by D] (custody_facts: spell_order orders a person's
# spells by reception date, ties by a hash of the spell id): the open spell, if any, is the
# latest one received.
_CUSTODY_SQL = """
WITH spells_at_d AS (
    SELECT *, release_date IS NOT NULL AND release_date <= $d AS released
    FROM custody_facts WHERE reception_date <= $d)
SELECT person_number,
       bool_or(NOT released) AS in_custody,
       arg_max(custody_type, spell_order) FILTER (NOT released) AS custody_type_at_d,
       arg_max(expected_release_date, spell_order) FILTER (NOT released) AS expected_release_date,
       max(release_date) FILTER (released) AS last_release_date,
       count(*) FILTER (custody_type = 'sentenced' AND sentence_days < 365 AND reception_date > $d_36m)
           AS short_sentences_36m,
       arg_max(release_area, spell_order) FILTER (release_area IS NOT NULL) AS prison_area
FROM spells_at_d GROUP BY person_number
"""

# [one person with a case row started or assessed by D] (case_facts): supervision periods count
# from their start, assessments from their date (the period start when there is none); type
# 'none' is a case without a supervising order. period_order orders periods by start date,
# assessment_order assessments by date then period start; ties (two CRNs of one person on one
# day) by a hash of the CRN, as for custody spells. The latest known value of each field.
_PROBATION_SQL = """
WITH cases_at_d AS (
    SELECT person_number, supervision_type, area, ogrs3_2yr, rosh, mappa_level, period_order, assessment_order,
           coalesce(supervision_start <= $d, false) AS started,
           coalesce(supervision_start <= $d, false) AND supervision_type IS DISTINCT FROM 'none'
               AND (supervision_end IS NULL OR supervision_end >= $d) AS active,
           coalesce(assessed_from <= $d, false) AS assessed
    FROM case_facts
    WHERE supervision_start <= $d OR assessed_from <= $d)
SELECT person_number,
       bool_or(started) AS in_probation,
       bool_or(active) AS under_supervision,
       arg_max(supervision_type, period_order) FILTER (active) AS supervision_type,
       arg_max(area, period_order) FILTER (started AND area IS NOT NULL) AS probation_area,
       arg_max(ogrs3_2yr, assessment_order) FILTER (assessed AND ogrs3_2yr IS NOT NULL) AS probation_ogrs3,
       arg_max(rosh, assessment_order) FILTER (assessed AND rosh IS NOT NULL) AS rosh,
       arg_max(mappa_level, assessment_order) FILTER (assessed AND mappa_level IS NOT NULL) AS mappa_level
FROM cases_at_d GROUP BY person_number
"""

# [one person with an event in (D-12m, D]] (event_facts): enforcement and compliance events
_EVENTS_SQL = """
SELECT person_number,
       count(*) FILTER (event_type = 'breach') AS breaches_12m,
       count(*) FILTER (event_type = 'recall') AS recalls_12m,
       count(*) FILTER (event_type = 'missed_appointment') AS missed_appointments_12m,
       count(*) FILTER (event_type = 'positive_drug_test') AS positive_drug_tests_12m
FROM event_facts
WHERE event_date <= $d AND event_date > $d_12m
GROUP BY person_number
"""


def _people_sql(history: Sequence[int] | None) -> str:
    """[one person]: who they are, their age at D and, with `history` (the counted outcome
    classes), what their settled offences add (`offence_history`), as `settled_*`."""
    if history is None:
        columns, source = "", "people p"
    else:
        counted = " + ".join(["0", *(f"coalesce(h.offences_class_{n}, 0)" for n in history)])
        last = f"greatest({', '.join(f'h.last_class_{n}' for n in history)})" if history else "NULL::DATE"
        current = day_date_sql(SANCTION_KEY.unpack_sql("h.sanction_key", "outcome_day"))
        columns = f""",
       coalesce(h.settled_offences, 0) AS settled_offences, {counted} AS settled_counted,
       {last} AS settled_last_offence_date, coalesce(h.sanctions, 0) AS settled_sanctions,
       h.sanction_key AS settled_sanction_key, {_yyyymmdd(current)} AS settled_current_sanction_ymd,
       {_yyyymmdd('h.first_sanction_date')} AS settled_first_sanction_ymd"""
        source = "people p LEFT JOIN offence_history h USING (person_number)"
    return f"""
SELECT p.person_number, p.person_key, p.police_person_id, p.pnc_id, p.crn, p.nomis_id, p.sex, p.area,
       coalesce(p.deceased_date <= $d, false) AS deceased, {_age_sql('p.date_of_birth', '$d')} AS age,
       {_yyyymmdd('p.date_of_birth')} AS birth_ymd{columns}
FROM {source}"""


def _fetch(con: duckdb.DuckDBPyConnection, queries: dict[str, str], params: dict) -> dict[str, pl.DataFrame]:
    """Every query's frame, by name. The offences run on `con` (it holds the code table); the
    people, then the smaller aggregates, on two more connections in worker threads. Handing the
    people's text to Polars and each query's last steps run on one core: run side by side, they
    fill the cores that one query at a time leaves idle."""
    def run(names: list[str]) -> dict[str, pl.DataFrame]:
        second = cursor(con)
        try:
            return {name: run_sql(second, f"features: {name}", queries[name], _bound(queries[name], params)).pl()
                    for name in names}
        finally:
            second.close()

    on_con = "offences"
    others = [name for name in queries if name not in (on_con, "people")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        fetching = [pool.submit(run, ["people"]), pool.submit(run, others)]
        frames = {on_con: run_sql(con, f"features: {on_con}", queries[on_con], _bound(queries[on_con], params)).pl()}
        for future in fetching:
            frames.update(future.result())
    return frames


def _bound(sql: str, params: dict) -> dict:
    """The parameters `sql` names (DuckDB refuses any others)."""
    return {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}


def _assemble(people: pl.DataFrame, offences: pl.DataFrame, custody: pl.DataFrame, probation: pl.DataFrame,
              events: pl.DataFrame, as_of: date, history: Sequence[int] | None, group_masks: int) -> pl.DataFrame:
    """[one person assessed at D]: any offence, spell or period known at D. The per-source
    aggregates are joined to the people in Polars: far faster than the same joins in the query."""
    col, d = pl.col, pl.lit(as_of)
    # Who is assessed, decided on the narrow people frame before the joins widen it.
    has_offences = col("person_number").is_in(offences.get_column("person_number").implode())
    has_spells = col("person_number").is_in(custody.get_column("person_number").implode())
    in_probation = col("person_number").is_in(probation.filter(col("in_probation")).get_column("person_number")
                                              .implode())
    known = has_offences | (col("settled_offences") > 0) if history is not None else has_offences
    frame = (people.with_columns(known.alias("in_police"), has_spells.alias("in_prison"))
             .filter(col("in_police") | col("in_prison") | in_probation))
    for part in (offences, custody, probation, events):
        frame = frame.join(part, on="person_number", how="left", maintain_order="left")
    total, last = col("offences_total").fill_null(0), col("last_offence_date")
    sanctions, sanction_key = col("sanctions"), col("sanction_key")
    current_ymd, first_ymd = col("current_sanction_ymd"), col("first_sanction_ymd")
    if history is not None:
        total = total + col("settled_counted")
        last = pl.max_horizontal(last, col("settled_last_offence_date"))
        sanctions = pl.when(col("in_police")).then(sanctions.fill_null(0) + col("settled_sanctions"))
        sanction_key = pl.max_horizontal(sanction_key, col("settled_sanction_key"))
        current_ymd = pl.max_horizontal(current_ymd, col("settled_current_sanction_ymd"))
        first_ymd = pl.min_horizontal(first_ymd, col("settled_first_sanction_ymd"))
    frame = frame.with_columns(
        last.alias("last_offence_date"), sanction_key.alias("_sanction_key"), sanctions.alias("_sanctions"),
        current_ymd.alias("_current_ymd"), first_ymd.alias("_first_ymd"),
    )
    counts = ["offences_3m", "offences_12m", "offences_36m", "neighbourhood_12m", "violence_12m", "prev_12m",
              "unknown_offences_36m", "seriousness_sum_36m", "short_sentences_36m", "breaches_12m", "recalls_12m",
              "missed_appointments_12m", "positive_drug_tests_12m"]
    in_custody = col("in_custody").fill_null(False)
    return frame.with_columns(
        *(col(name).fill_null(0) for name in counts),
        total.alias("offences_total"),
        pl.when(col("police_person_id").is_not_null()).then(col("area"))
        .otherwise(pl.coalesce("probation_area", "prison_area")).alias("area"),
        (d - col("last_offence_date")).dt.total_days().alias("days_since_last_offence"),
        pl.sum_horizontal(col(f"group_mask_{k}").bitwise_count_ones().fill_null(0) for k in range(group_masks))
        .alias("distinct_groups_36m"),
        (col("offences_12m").fill_null(0) - col("prev_12m").fill_null(0)).alias("trend_12m"),
        in_custody.alias("in_custody"),
        pl.when(in_custody).then((col("expected_release_date") - d).dt.total_days()).alias("days_until_release"),
        (in_custody & (col("expected_release_date") <= pl.lit(as_of + timedelta(days=RELEASE_DUE_DAYS))))
        .fill_null(False).alias("release_due_90d"),
        (d - col("last_release_date")).dt.total_days().alias("days_since_release"),
        col("under_supervision").fill_null(False),
        col("in_probation").fill_null(False),
        code_in_key(col("serious_key")).alias("_serious_code_id"),
        code_in_key(col("_sanction_key")).alias("_sanction_code_id"),
        col("sex").alias("_sex"),  # an OGRS3 input, dropped after the formula: used for nothing else
    )


def _decode_codes(frame: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """Packed code ids back to the most serious offence and the current sanction's OGRS3 group."""
    ids = codes.get_column("code_number")

    def lookup(column: str, value: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(column).replace_strict(ids, codes.get_column(value), default=None, return_dtype=dtype)

    return frame.with_columns(
        lookup("_serious_code_id", "gravity", pl.Int64()).alias("seriousness_max_36m"),
        lookup("_serious_code_id", "description", pl.Utf8()).alias("most_serious_36m"),
        lookup("_sanction_code_id", "ogrs3_group", pl.Utf8()).alias("_current_ogrs3_group"),
    )


def group_mask_count(codes: pl.DataFrame) -> int:
    """How many 63-bit masks hold the distinct offence groups of `codes` (at least one)."""
    return max(1, -(-int(codes.get_column("group_id").max() + 1) // GROUPS_PER_MASK)) if codes.height else 1


def offence_codes(con: duckdb.DuckDBPyConnection, reference: pl.DataFrame, unknown_offence: dict) -> pl.DataFrame:
    """[one offence code seen in the offences]: reference values or the unknown defaults, by the
    code's number in `offence_codes` (dense, in code order), which `offence_facts` carries."""
    seen = run_sql(con, "features: offence codes", "SELECT ho_offence_code, code_number FROM offence_codes").pl()
    columns = ["ho_offence_code", "description", "offence_group", "gravity", "neighbourhood_crime", "violence",
               "ogrs3_group"]
    codes = seen.join(reference.select(columns), on="ho_offence_code", how="left")
    unknown = pl.col("offence_group").is_null()
    codes = codes.sort("ho_offence_code").with_columns(
        unknown.alias("unknown_code"),
        pl.col("offence_group").fill_null(str(unknown_offence["offence_group"])),
        pl.col("gravity").fill_null(int(unknown_offence["gravity"])).cast(pl.Int64),
        pl.col("neighbourhood_crime").fill_null(bool(unknown_offence["neighbourhood_crime"])),
        pl.col("violence").fill_null(bool(unknown_offence["violence"])),
        pl.col("ogrs3_group").fill_null(str(unknown_offence["ogrs3_group"])),
        pl.col("description").fill_null(pl.lit("Unknown offence code ") + pl.col("ho_offence_code")),
    )
    codes = codes.with_columns(
        pl.col("code_number").cast(pl.Int64),
        (pl.col("offence_group").rank("dense") - 1).cast(pl.Int64).alias("group_id"),
    )
    # Per-code parts of the packed keys and group bits, so the big pass does little arithmetic.
    if codes.height:
        SERIOUS_KEY.check("gravity", codes.get_column("gravity").min(), codes.get_column("gravity").max(),
                          "offence gravities")
        SERIOUS_KEY.check("code_tie", 0, codes.get_column("code_number").max(), "offence code numbers")
    masks = group_mask_count(codes)
    return codes.with_columns(
        SERIOUS_KEY.pack(gravity=pl.col("gravity"), code_tie=code_tie(pl.col("code_number"))).alias("serious_base"),
        *[
            pl.col("group_id").replace_strict(
                {g: (1 << (g % GROUPS_PER_MASK)) if g // GROUPS_PER_MASK == k else 0
                 for g in range(GROUPS_PER_MASK * masks)}, return_dtype=pl.Int64
            ).alias(f"group_bit_{k}")
            for k in range(masks)
        ],
    )


def check_history_window(windows: Sequence[int] = OFFENCE_WINDOW_MONTHS,
                         history_months: int = HISTORY_WINDOW_MONTHS) -> None:
    """The settled summary is right only if no settled offence can fall in a window: the
    summary's window (`pipeline.facts.HISTORY_WINDOW_MONTHS`) must cover the longest one."""
    if max(windows) > history_months:
        raise ValueError(
            f"the longest offence window ({max(windows)} months) exceeds the settled summary's "
            f"HISTORY_WINDOW_MONTHS ({history_months}); raise it in pipeline/facts.py"
        )


def _history_applies(con: duckdb.DuckDBPyConnection, as_of: date) -> bool:
    """Whether every settled offence is known at `as_of` and outside its windows."""
    check_history_window()
    cutoff = stored_history_cutoff(con)
    applies = cutoff is not None and months_before(as_of, HISTORY_WINDOW_MONTHS) >= cutoff
    if applies:
        log.info("features at %s: offences settled by %s read from their summary", as_of.isoformat(),
                 cutoff.isoformat())
    return applies


def _counted_classes(counted_outcomes: Sequence[str]) -> list[int]:
    """The settled summary's outcome classes that count, as `offences_at_d` decides it: a dated
    outcome counts when listed (other than 'pending'); an undated one when 'pending' is listed."""
    classes = [OUTCOMES.index(c) for c in dict.fromkeys(counted_outcomes) if c != "pending"]
    return classes + ([UNDECIDED_CLASS] if "pending" in counted_outcomes else [])


def compute_features(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    reference: pl.DataFrame,
    counted_outcomes: Sequence[str],
    unknown_offence: dict,
    identifiers: bool = False,
    ordered: bool = True,
    settled_history: bool = True,
    person_number: bool = False,
) -> pl.DataFrame:
    """Features of every person assessed at `as_of`, one row each, sorted by person_key unless
    `ordered` is false (the run ranks them anyway, with person_key breaking every tie).

    Columns: FEATURE_COLUMNS, then with `identifiers` the person's IDENTIFIER_COLUMNS, then
    with `person_number` the warehouse's person number (the back-test joins outcomes on it).
    `reference` is `features.reference.load_offence_reference()`;
    `counted_outcomes` and `unknown_offence` come from the rule set. The settled offences are
    read from their summary when `as_of` allows it (`pipeline.facts`) unless `settled_history`
    is false; the results are the same either way.
    """
    _check_inputs(reference, counted_outcomes, unknown_offence)
    params, parts = _parameters(as_of, counted_outcomes)
    codes = offence_codes(con, reference, unknown_offence)
    group_masks = group_mask_count(codes)
    con.register(CODES_VIEW, codes.to_arrow())
    try:
        history = _counted_classes(counted_outcomes) if settled_history and _history_applies(con, as_of) else None
        queries = {
            "people": _people_sql(history),
            "offences": _offences_sql(group_masks=group_masks, unsettled_only=history is not None, **parts),
            "custody": _CUSTODY_SQL, "probation": _PROBATION_SQL, "events": _EVENTS_SQL,
            "pnc_history": pnc_history_sql(parts["sanction_in"]),
        }
        parts_at_d = _fetch(con, queries, params)
        pnc = parts_at_d.pop("pnc_history")
        frame = _assemble(**parts_at_d, as_of=as_of, history=history, group_masks=group_masks)
    finally:
        con.unregister(CODES_VIEW)
    frame = with_criminal_history(_decode_codes(frame, codes), pnc, unknown_offence["ogrs3_group"])
    # One chunk: DuckDB hands over record batches, and gathers on chunked frames are slow.
    columns = {**FEATURE_SCHEMA, **(dict.fromkeys(IDENTIFIER_COLUMNS, _S) if identifiers else {}),
               **({"person_number": pl.Int32()} if person_number else {})}
    frame = frame.select(pl.col(name).cast(dtype) for name, dtype in columns.items()).rechunk()
    if ordered:  # the queries run unordered (preserve_insertion_order is off)
        frame = frame.sort("person_key")
    log.info("features at %s: %d people assessed", as_of.isoformat(), frame.height)
    return frame


def unknown_offence_codes(con: duckdb.DuckDBPyConnection, as_of: date, reference: pl.DataFrame) -> pl.DataFrame:
    """Offence codes known at `as_of` that the reference table lacks: columns code, count.

    These offences are scored with the rule set's `[unknown_offence]` defaults; the run reports
    them so the reference table can be extended. Counted over the offences of linked people
    (`offence_facts`): the ones scored; offences whose police id has no nominal are counted by
    the link instead. Sorted by count (descending), then code.
    """
    empty = pl.DataFrame(schema={"code": pl.Utf8, "count": pl.Int64})
    seen = run_sql(con, "features: unknown offence codes", "SELECT ho_offence_code, code_number FROM offence_codes").pl()
    unknown = seen.join(reference.select("ho_offence_code"), on="ho_offence_code", how="anti")
    if unknown.height == 0:
        return empty  # the usual case: no second pass over the offences
    params: dict = {"d": as_of}
    in_list = _in_list("o.code_number", "code", unknown.get_column("code_number").to_list(), params)
    frame = run_sql(con, "features: unknown offence codes",
        f"""-- [one unknown code known at D]
        SELECT k.ho_offence_code AS code, count(*) AS count
        FROM offence_facts o JOIN offence_codes k USING (code_number)
        WHERE {in_list} AND o.offence_date <= $d AND (o.recorded_date IS NULL OR o.recorded_date <= $d)
        GROUP BY k.ho_offence_code
        ORDER BY count DESC, code""",
        params,
    ).pl()
    if frame.height:
        log.warning("%d offence codes at %s are not in the offence reference", frame.height, as_of.isoformat())
    return frame.with_columns(pl.col("count").cast(pl.Int64)) if frame.height else empty
