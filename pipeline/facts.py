"""Facts tables: the current extract rows of linked people as person numbers, dates, small codes
and packed tie-break keys, rebuilt with every link (`pipeline.link`).

The monthly features (and any historical snapshot for a model) read these instead of the
extracts: no join of millions of rows on text ids, no grouping on text, no hashing per run.

- `offence_codes` [one offence code in the current offences]: `code_number`, dense in code order.
- `offence_facts` [one current offence of a linked police record]: dates, `code_number`,
  `outcome_number` (the outcome's index in `contract.OUTCOMES`) and `settled` (below); the
  unsettled rows first, each part in person order.
- `custody_facts` [one current custody spell of a linked prisoner]: `spell_order` orders a
  person's spells by reception date, ties by a hash of the spell id.
- `case_facts` [one current probation case row of a linked CRN]: `period_order` orders periods by
  start date, `assessment_order` assessments by date then period start; ties by a hash of the CRN.
- `event_facts` [one current probation event of a linked CRN], sorted by date.
- `offence_history` [one person with a settled offence]: what the person's *settled* offences
  add to the whole-history aggregates, per outcome class (each outcome with a date: its index
  in `contract.OUTCOMES`; or UNDECIDED_CLASS: no outcome or no date, pending at every D). An
  offence is settled when its offence, recorded and outcome dates are all on or before the
  cutoff (kept in `meta` as `offence_history_cutoff`, 37 months before the month of the latest
  offence): at any as-of date D at least 36 months after the cutoff it is known, its outcome as
  known at D is fixed and it falls in no window, so a run at such a D reads the summary instead
  of its rows (about two thirds of them). Runs at earlier dates read every row.

Offences, spells, cases and events of ids no person holds (orphans, counted by the link) have
no facts: they belong to nobody the features could describe.
"""

from __future__ import annotations

import calendar
import logging
from datetime import date

import duckdb

from pipeline import contract
from pipeline.keys import (
    ASSESSMENT_ORDER,
    PERIOD_ORDER,
    SANCTION_KEY,
    SPELL_ORDER,
    check_days,
    code_tie_sql,
    day_number_sql,
    hash_sql,
)
from pipeline.warehouse import cur_table, q, run_sql

log = logging.getLogger(__name__)

SANCTION_OUTCOMES = ("convicted", "cautioned", "community_resolution")  # OGRS3 "sanctions"
HISTORY_CUTOFF_KEY = "offence_history_cutoff"
HISTORY_WINDOW_MONTHS = 36  # must cover the longest feature window (features.build checks it)


def sanction_key_sql(outcome_date: str, offence_date: str, code_number: str) -> str:
    """The current sanction is the one with the greatest key: the latest outcome date, then the
    latest offence date, then the lowest code (`pipeline.keys.SANCTION_KEY`)."""
    return SANCTION_KEY.sql(outcome_day=day_number_sql(outcome_date), offence_day=day_number_sql(offence_date),
                            code_tie=code_tie_sql(code_number))


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier, clamped to the month's end (31 May -> 28 Feb)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def history_cutoff(latest_offence: date | None) -> date | None:
    """The settled cutoff: the first of the month 37 months before the latest offence's month,
    so that runs from a month before the latest offence onwards can use the summary."""
    return months_before(latest_offence.replace(day=1), HISTORY_WINDOW_MONTHS + 1) if latest_offence else None


UNDECIDED_CLASS = 255  # outcome_class of an offence with no outcome or no outcome date: pending at every D


OUTCOME_CLASSES = (*range(len(contract.OUTCOMES)), UNDECIDED_CLASS)


def _history_sql() -> str:
    """[one person with a settled offence]: a count and a latest offence date per outcome class
    (`offences_class_<n>`, `last_class_<n>`), and the settled sanctions."""
    sanction = "outcome_class IN (" + ", ".join(str(contract.OUTCOMES.index(o)) for o in SANCTION_OUTCOMES) + ")"
    per_class = ",\n               ".join(
        f"count(*) FILTER (outcome_class = {n}) AS offences_class_{n}, "
        f"max(offence_date) FILTER (outcome_class = {n}) AS last_class_{n}"
        for n in OUTCOME_CLASSES
    )
    return f"""
        CREATE OR REPLACE TABLE offence_history AS
        WITH settled AS (
            SELECT *, CASE WHEN outcome_date IS NULL OR outcome_number IS NULL THEN {UNDECIDED_CLASS}
                           ELSE outcome_number END AS outcome_class
            FROM offence_facts WHERE settled)
        SELECT person_number, count(*) AS settled_offences,
               {per_class},
               count(*) FILTER ({sanction}) AS sanctions,
               min(outcome_date) FILTER ({sanction}) AS first_sanction_date,
               max({sanction_key_sql('outcome_date', 'offence_date', 'code_number')}) FILTER ({sanction})
                   AS sanction_key
        FROM settled GROUP BY person_number"""


def _steps() -> dict[str, str]:
    offences, custody = q(cur_table("police_offences")), q(cur_table("prison_custody"))
    cases, events = q(cur_table("probation_cases")), q(cur_table("probation_events"))
    assessed_from = "coalesce(c.assessment_date, c.supervision_start)"
    return {
        "offence_codes": f"""
            CREATE OR REPLACE TABLE offence_codes AS
            SELECT ho_offence_code, (row_number() OVER (ORDER BY ho_offence_code) - 1)::INTEGER AS code_number
            FROM (SELECT DISTINCT ho_offence_code FROM {offences} WHERE ho_offence_code IS NOT NULL)""",
        # Unsettled rows first: a run at a recent date reads only those, skipping the others'
        # row groups. Person order within: grouping by person is far faster on sorted rows.
        "offence_facts": f"""
            CREATE OR REPLACE TABLE offence_facts AS
            SELECT i.person_number, o.offence_date, o.recorded_date, o.outcome_date, k.code_number,
                   (list_position($outcomes, o.outcome) - 1)::UTINYINT AS outcome_number,
                   coalesce(o.offence_date <= $cutoff AND coalesce(o.recorded_date <= $cutoff, true)
                            AND coalesce(o.outcome_date <= $cutoff, true), false) AS settled
            FROM {offences} o
            JOIN person_ids i ON i.source = 'police' AND i.source_id = o.police_person_id
            JOIN offence_codes k USING (ho_offence_code)
            ORDER BY settled, i.person_number""",
        "offence_history": _history_sql(),
        "custody_facts": f"""
            CREATE OR REPLACE TABLE custody_facts AS
            SELECT i.person_number, s.reception_date, s.release_date, s.expected_release_date, s.sentence_days,
                   s.custody_type, s.release_area,
                   {SPELL_ORDER.sql(reception_day=day_number_sql('s.reception_date'),
                                    spell_hash=hash_sql('s.spell_id', 32))} AS spell_order
            FROM {custody} s JOIN person_ids i ON i.source = 'prison' AND i.source_id = s.nomis_id""",
        "case_facts": f"""
            CREATE OR REPLACE TABLE case_facts AS
            SELECT i.person_number, c.supervision_type, c.supervision_start, c.supervision_end,
                   {assessed_from} AS assessed_from, c.area, c.ogrs3_2yr, c.rosh, c.mappa_level,
                   c.previous_sanctions, c.first_sanction_date,
                   {PERIOD_ORDER.sql(start_day=day_number_sql('c.supervision_start'),
                                     crn_hash=hash_sql('c.crn', 32))} AS period_order,
                   {ASSESSMENT_ORDER.sql(assessed_day=day_number_sql(assessed_from),
                                         start_day=day_number_sql('c.supervision_start'),
                                         crn_hash=hash_sql('c.crn', 22))} AS assessment_order
            FROM {cases} c JOIN person_ids i ON i.source = 'probation' AND i.source_id = c.crn""",
        "event_facts": f"""
            CREATE OR REPLACE TABLE event_facts AS
            SELECT i.person_number, e.event_date, e.event_type
            FROM {events} e JOIN person_ids i ON i.source = 'probation' AND i.source_id = e.crn
            ORDER BY e.event_date""",
    }


FACT_TABLES = tuple(_steps())


def rendered_steps() -> dict[str, str]:
    """The SQL of every facts step as it runs (what the link's fingerprint hashes)."""
    return _steps()


def build_facts(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)build every facts table from the current tables and `person_ids` (step 6 of the link)."""
    latest = run_sql(con, "facts: latest offence",
                     f"SELECT max(offence_date) FROM {q(cur_table('police_offences'))}").fetchone()[0]
    cutoff = history_cutoff(latest)
    for name, sql in _steps().items():
        params = {"outcomes": list(contract.OUTCOMES), "cutoff": cutoff} if name == "offence_facts" else None
        run_sql(con, f"facts: {name}", sql, params)
    check_key_budgets(con)
    run_sql(con, "facts: record cutoff", "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [HISTORY_CUTOFF_KEY, cutoff.isoformat() if cutoff else None])


# The dates packed into keys, by facts table: checked once the facts are built, inside the
# link's transaction, so that a refused value leaves the warehouse as it was.
_KEYED_DATES = {
    "offence_facts": ("offence_date", "outcome_date"),
    "custody_facts": ("reception_date",),
    "case_facts": ("supervision_start", "assessed_from"),
}


def check_key_budgets(con: duckdb.DuckDBPyConnection) -> None:
    """Raise KeyBudgetError if a packed field cannot hold the facts' dates or offence codes."""
    codes = run_sql(con, "facts: offence code budget", "SELECT count(*) FROM offence_codes").fetchone()[0]
    if codes:
        SANCTION_KEY.check("code_tie", 0, codes - 1, "offence code numbers")
    for table, columns in _KEYED_DATES.items():
        ranges = ", ".join(f"min({q(c)}), max({q(c)})" for c in columns)
        row = run_sql(con, f"facts: {table} date budget", f"SELECT {ranges} FROM {q(table)}").fetchone()
        for i, column in enumerate(columns):
            check_days(f"{table}.{column}", row[2 * i], row[2 * i + 1])


def stored_history_cutoff(con: duckdb.DuckDBPyConnection) -> date | None:
    """The settled cutoff of the current `offence_history` (None: no offences, nothing settled)."""
    row = run_sql(con, "facts: read cutoff", "SELECT value FROM meta WHERE key = ?", [HISTORY_CUTOFF_KEY]).fetchone()
    return date.fromisoformat(row[0]) if row and row[0] else None
