"""`iom explain ID`: why a person is where they are in a run, in plain English."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from pipeline.config import Config
from pipeline.errors import IomError, NotFoundError
from pipeline.identifiers import pnc_normal_form
from pipeline.link.review import LinkEvidence, link_evidence
from pipeline.runs import get_run, scores_table
from pipeline.warehouse import connect, cur_table, q, run_sql, table_exists


@dataclass
class Explanation:
    run_id: str
    as_of: date
    person: dict  # identifiers and names from the people table
    row: dict  # the person's scored row in the run (every feature and component)
    components: list[tuple[str, int]]  # (component, points) with points != 0
    timeline: list[dict]  # date, agency, event, detail; newest first
    model: dict | None = None  # the run's advisory model (manifest) and this person's contributions
    links: LinkEvidence | None = None  # how each record of the person was linked


def find_person_key(con: duckdb.DuckDBPyConnection, identifier: str) -> str:
    """Accept a person key, police id, PNC id (any form), CRN or NOMIS number."""
    value = identifier.strip()
    upper = value.upper()
    pnc = pnc_normal_form(upper)
    rows = run_sql(
        con, "explain: find person",
        """SELECT DISTINCT person_key FROM (
               SELECT person_key FROM people WHERE person_key = ?
               UNION ALL SELECT person_key FROM person_ids WHERE source_id IN (?, ?)
               UNION ALL SELECT person_key FROM person_ids WHERE pnc_norm = ?)""",
        [upper, value, upper, pnc],
    ).fetchall()
    if not rows:
        raise NotFoundError(
            "no person with that identifier in the warehouse",
            hint="use a person key (P...), police id, PNC id, CRN or NOMIS number as in scores.csv",
        )
    if len(rows) > 1:
        raise NotFoundError("that identifier matches more than one person; use the person key from scores.csv")
    return rows[0][0]


def _timeline(con: duckdb.DuckDBPyConnection, person_key: str, as_of: date, limit: int) -> list[dict]:
    """Named step [one row per dated event known at the as-of date], newest first."""
    sql = f"""
    WITH ids AS (SELECT source, source_id FROM person_ids WHERE person_key = $person)
    SELECT * FROM (
        SELECT o.offence_date AS day, 'police' AS agency,
               'offence' AS event,
               -- the outcome as it was known at the as-of date, as the features used it
               coalesce(o.offence_description, o.ho_offence_code) || ' ('
                   || CASE WHEN o.outcome_date <= $as_of AND o.outcome IS NOT NULL THEN o.outcome ELSE 'pending' END
                   || ')' AS detail
        FROM {q(cur_table('police_offences'))} o JOIN ids ON ids.source = 'police' AND ids.source_id = o.police_person_id
        WHERE o.offence_date <= $as_of AND (o.recorded_date IS NULL OR o.recorded_date <= $as_of)
        UNION ALL
        SELECT p.reception_date, 'prison', 'received into custody',
               coalesce(p.custody_type, 'custody') || coalesce(', sentence ' || p.sentence_days || ' days', '')
        FROM {q(cur_table('prison_custody'))} p JOIN ids ON ids.source = 'prison' AND ids.source_id = p.nomis_id
        WHERE p.reception_date <= $as_of
        UNION ALL
        SELECT p.release_date, 'prison', 'released', coalesce('to ' || p.release_area, '')
        FROM {q(cur_table('prison_custody'))} p JOIN ids ON ids.source = 'prison' AND ids.source_id = p.nomis_id
        WHERE p.release_date <= $as_of
        UNION ALL
        SELECT c.supervision_start, 'probation', 'supervision started',
               coalesce(c.supervision_type, '') || coalesce(', RoSH ' || c.rosh, '')
        FROM {q(cur_table('probation_cases'))} c JOIN ids ON ids.source = 'probation' AND ids.source_id = c.crn
        WHERE c.supervision_start <= $as_of
        UNION ALL
        SELECT e.event_date, 'probation', replace(e.event_type, '_', ' '), ''
        FROM {q(cur_table('probation_events'))} e JOIN ids ON ids.source = 'probation' AND ids.source_id = e.crn
        WHERE e.event_date <= $as_of
    ) ORDER BY day DESC, agency, event, detail LIMIT $limit"""
    cursor = run_sql(con, "explain: timeline", sql, {"person": person_key, "as_of": as_of, "limit": limit})
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def explain_person(config: Config, identifier: str, run_id: str | None = None, events: int = 15) -> Explanation:
    con = connect(config, read_only=True)
    try:
        run = get_run(con, run_id)
        person_key = find_person_key(con, identifier)
        table = scores_table(run["seq"])
        if not table_exists(con, table):
            raise NotFoundError(f"the scores of run {run['run_id']} have been purged")
        frame = run_sql(con, "explain: scored row", f"SELECT * FROM {q(table)} WHERE person_key = ?", [person_key]).pl()
        if frame.is_empty():
            raise NotFoundError(
                f"that person was not assessed in run {run['run_id']} (no offence, custody or supervision "
                f"known on or before {run['as_of']})"
            )
        row = frame.row(0, named=True)
        person = run_sql(
            con, "explain: person",
            "SELECT person_key, police_person_id, pnc_id, crn, nomis_id, surname, forenames, date_of_birth, area "
            "FROM people WHERE person_key = ?", [person_key]
        ).pl().row(0, named=True)
        components = [(c.removeprefix("points_"), int(row[c])) for c in frame.columns
                      if c.startswith("points_") and row[c]]
        timeline = _timeline(con, person_key, run["as_of"], events)
        links = link_evidence(con, person_key) if table_exists(con, "link_pairs") else None
    finally:
        con.close()
    model = None
    used = run["manifest"].get("model")
    if used and row.get("model_probability") is None:  # the model scores the eligible only
        model = {**used, "note": "not scored, as the model scores only the eligible (the people it was "
                                 "trained and calibrated on)"}
    elif used:
        # The run's own model version, and only if its artefact still has the hash the run recorded.
        from models.predict import explain_row
        from models.registry import load

        try:
            loaded = load(config, str(used["version"]), expected_sha256=used["artefact_sha256"])
            model = {**used, **explain_row(loaded.artefact, row)}
        except IomError as exc:  # the rules' explanation stands without the model's
            model = {**used, "error": f"{exc.label}: {exc.message}"}
    return Explanation(run["run_id"], run["as_of"], person, row, components, timeline, model, links)


def feature_lines(row: dict, skip: set[str]) -> list[tuple[str, str]]:
    """Feature values for display, in the order of the scored frame."""
    out = []
    for key, value in row.items():
        if key in skip or key.startswith("points_"):
            continue
        if isinstance(value, float):
            value = f"{value:.1f}"
        out.append((key, "" if value is None else str(value)))
    return out
