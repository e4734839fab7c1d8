"""Facts tables: the current extract rows of linked people as person numbers, dates, small codes
and packed tie-break keys, rebuilt with every link (`pipeline.link`).

The monthly features (and any historical snapshot for a model) read these instead of the
extracts: no join of millions of rows on text ids, no grouping on text, no hashing per run.

- `offence_codes` [one offence code in the current offences]: `code_number`, dense in code order.
- `offence_facts` [one current offence of a linked police record]: dates, `code_number` and
  `outcome_number` (the outcome's index in `contract.OUTCOMES`), sorted by person then date.
- `custody_facts` [one current custody spell of a linked prisoner]: `spell_order` orders a
  person's spells by reception date, ties by a hash of the spell id.
- `case_facts` [one current probation case row of a linked CRN]: `period_order` orders periods by
  start date, `assessment_order` assessments by date then period start; ties by a hash of the CRN.
- `event_facts` [one current probation event of a linked CRN], sorted by date.

Offences, spells, cases and events of ids no person holds (orphans, counted by the link) have
no facts: they belong to nobody the features could describe.
"""

from __future__ import annotations

import logging

import duckdb

from pipeline import contract
from pipeline.warehouse import cur_table, q

log = logging.getLogger(__name__)

# Packed keys hold days since DAY_ZERO in 19 bits (to the year 3235).
DAY_ZERO = "1800-01-01"
DAY_LIMIT = 2**19


def day_number_sql(column: str) -> str:
    """Days since DAY_ZERO in 0 .. DAY_LIMIT - 1 (0 for a missing date): a packed-key field."""
    return f"coalesce(greatest(0, least({DAY_LIMIT - 1}, {column} - DATE '{DAY_ZERO}')), 0)"


def _steps() -> dict[str, str]:
    offences, custody = q(cur_table("police_offences")), q(cur_table("prison_custody"))
    cases, events = q(cur_table("probation_cases")), q(cur_table("probation_events"))
    assessed_from = "coalesce(c.assessment_date, c.supervision_start)"
    return {
        "offence_codes": f"""
            CREATE OR REPLACE TABLE offence_codes AS
            SELECT ho_offence_code, (row_number() OVER (ORDER BY ho_offence_code) - 1)::INTEGER AS code_number
            FROM (SELECT DISTINCT ho_offence_code FROM {offences} WHERE ho_offence_code IS NOT NULL)""",
        # In person order: a run groups ten million of these by person, far faster on sorted rows.
        "offence_facts": f"""
            CREATE OR REPLACE TABLE offence_facts AS
            SELECT i.person_number, o.offence_date, o.recorded_date, o.outcome_date, k.code_number,
                   (list_position($outcomes, o.outcome) - 1)::UTINYINT AS outcome_number
            FROM {offences} o
            JOIN person_ids i ON i.source = 'police' AND i.source_id = o.police_person_id
            JOIN offence_codes k USING (ho_offence_code)
            ORDER BY i.person_number, o.offence_date""",
        "custody_facts": f"""
            CREATE OR REPLACE TABLE custody_facts AS
            SELECT i.person_number, s.reception_date, s.release_date, s.expected_release_date, s.sentence_days,
                   s.custody_type, s.release_area,
                   {day_number_sql('s.reception_date')} * {2 ** 32} + CAST(hash(s.spell_id) % {2 ** 32} AS BIGINT)
                       AS spell_order
            FROM {custody} s JOIN person_ids i ON i.source = 'prison' AND i.source_id = s.nomis_id""",
        "case_facts": f"""
            CREATE OR REPLACE TABLE case_facts AS
            SELECT i.person_number, c.supervision_type, c.supervision_start, c.supervision_end,
                   {assessed_from} AS assessed_from, c.area, c.ogrs3_2yr, c.rosh, c.mappa_level,
                   {day_number_sql('c.supervision_start')} * {2 ** 32} + CAST(hash(c.crn) % {2 ** 32} AS BIGINT)
                       AS period_order,
                   {day_number_sql(assessed_from)} * {2 ** 41} + {day_number_sql('c.supervision_start')} * {2 ** 22}
                       + CAST(hash(c.crn) % {2 ** 22} AS BIGINT) AS assessment_order
            FROM {cases} c JOIN person_ids i ON i.source = 'probation' AND i.source_id = c.crn""",
        "event_facts": f"""
            CREATE OR REPLACE TABLE event_facts AS
            SELECT i.person_number, e.event_date, e.event_type
            FROM {events} e JOIN person_ids i ON i.source = 'probation' AND i.source_id = e.crn
            ORDER BY e.event_date""",
    }


FACT_TABLES = tuple(_steps())


def build_facts(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)build every facts table from the current tables and `person_ids` (step 6 of the link)."""
    for name, sql in _steps().items():
        con.execute(sql, {"outcomes": list(contract.OUTCOMES)} if "$outcomes" in sql else None)
        log.debug("built %s", name)
