"""The frames shared by the pack and the workbook, read from the warehouse alone.

Every frame comes from what a run stored: its `runs` row and manifest, its scores table
(`run_scores_NNNNNN`), `cohort_members`, `movement`, `run_release_watch`, `run_unknown_codes`,
and the `rejects` and `loads` registers; names and dates of birth from `people`; the panel's
decisions known when the run finished (`decisions`, `decision_imports`). So `iom report
--run RUN` regenerates the pack and the workbook of an earlier run without its output folder.
Each query is a named step with its grain in a comment; values are bound parameters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import polars as pl

from models.predict import MODEL_COLUMNS, disagreement
from pipeline.config import ModelConfig
from pipeline.decisions import decision_history, due_for_review
from pipeline.errors import NotFoundError
from pipeline.warehouse import cur_table, q, run_sql, table_exists

log = logging.getLogger(__name__)

IDENTIFIERS = ("police_person_id", "pnc_id", "crn", "nomis_id")
TIMELINE_YEARS = 5
PROBABILITY_COLUMNS = ("model_probability", "probability")


def store_run_extras(con: duckdb.DuckDBPyConnection, run_id: str, release_watch: pl.DataFrame,
                     unknown_codes: pl.DataFrame, fairness: pl.DataFrame | None = None) -> None:
    """Keep the release watch, the unknown codes and the fairness table of a run (inside the run's
    transaction), so that `iom report` rebuilds the pack from the warehouse alone."""
    con.register("watch_frame", release_watch.to_arrow())
    run_sql(con, "run: store release watch", """INSERT INTO run_release_watch SELECT ?, person_key, area, custody_type_at_d,
            expected_release_date, days_until_release, score, score_if_released, reasons_if_released FROM watch_frame""",
            [run_id])
    con.unregister("watch_frame")
    con.register("codes_frame", unknown_codes.to_arrow())
    run_sql(con, "run: store unknown codes", "INSERT INTO run_unknown_codes SELECT ?, code, count FROM codes_frame", [run_id])
    con.unregister("codes_frame")
    if fairness is not None:
        con.register("fairness_frame", fairness.to_arrow())
        run_sql(con, "run: store fairness", """INSERT INTO run_fairness SELECT ?, dimension, "group", metric, people, value,
                reference_group, reference_value, ratio, flagged FROM fairness_frame""", [run_id])
        con.unregister("fairness_frame")


@dataclass
class ReportData:
    run: dict  # run_id, seq, as_of, status, rules_name, rules_version, rules_sha256, code_version, output_dir
    manifest: dict
    stats: dict
    members: pl.DataFrame  # one row per proposed person (priority or super-prolific), rank order
    components: list[str]  # component names, in the rule set's order (points_<name> columns)
    probability_column: str | None
    movement: pl.DataFrame
    release_watch: pl.DataFrame
    events: pl.DataFrame  # person_key, kind (offence/custody/supervision), start, end, label, ongoing
    history: pl.DataFrame  # person_key, run_id, as_of, cohort, rank (earlier runs of the proposed)
    rejects: pl.DataFrame  # source, reason_code, rows
    unknown_codes: pl.DataFrame
    link: list[dict]
    fairness: pl.DataFrame | None
    validity: pl.DataFrame | None
    validity_source: str | None = None
    notes: list[str] = field(default_factory=list)
    # The panel's decisions known to the run: each proposed person's history, newest first, and
    # everyone whose decision in force was due for review at the as-of date.
    decisions: pl.DataFrame = field(default_factory=pl.DataFrame)
    due_for_review: pl.DataFrame = field(default_factory=pl.DataFrame)
    # The latest impact analysis stored before the run finished (`iom impact`): its summary.
    impact: dict | None = None
    # With an advisory model: its manifest entry, and where it and the rules part (models.predict).
    model: dict | None = None
    disagreement: pl.DataFrame | None = None
    model_eligible: int = 0  # the eligible people the disagreement list was drawn from


def run_row(con: duckdb.DuckDBPyConnection, run_id: str | None) -> dict:
    if not table_exists(con, "runs"):
        raise NotFoundError("no runs yet in this workspace", hint="run `iom run` first")
    columns = "run_id, seq, as_of, status, finished_at, rules_name, rules_version, rules_sha256, code_version, output_dir, manifest"
    if run_id:
        cursor = run_sql(con, "report: run row", f"SELECT {columns} FROM runs WHERE run_id = ?", [run_id])
    else:
        cursor = run_sql(con, "report: run row", f"SELECT {columns} FROM runs WHERE status = 'completed' ORDER BY seq DESC LIMIT 1")
    rows = cursor.fetchall()
    if not rows:
        raise NotFoundError(f"no run {run_id!r}" if run_id else "no completed run yet",
                            hint="`iom runs` lists the runs of this workspace")
    row = dict(zip([d[0] for d in cursor.description], rows[0], strict=True))
    if row["status"] != "completed":
        raise NotFoundError(f"run {row['run_id']} did not complete ({row['status']}): it has no cohort to report")
    return row


def _members(con, table: str) -> tuple[pl.DataFrame, list[str], str | None]:
    """[one proposed person]: their scored row with names and date of birth, in rank order."""
    columns = [r[0] for r in run_sql(con, "report: members", f"DESCRIBE {q(table)}").fetchall()]
    components = [c.removeprefix("points_") for c in columns if c.startswith("points_")]
    probability = next((c for c in PROBABILITY_COLUMNS if c in columns), None)
    wanted = ["rank", "area_rank", "person_key", "area", "score", "priority", "super_prolific", "cohort_type",
              "selection_note", "reasons", *IDENTIFIERS, "age", "offences_12m", "offences_36m",
              "days_since_last_offence", "in_custody", "under_supervision", "supervision_type", "rosh",
              "ogrs3_2yr", "in_police", "in_probation", "in_prison", "managed", "decision", "decision_note",
              "due_for_review",
              *([probability] if probability else []), *[c for c in ("model_band", "model_rank") if probability],
              *[f"points_{c}" for c in components]]
    select = ", ".join(f"s.{q(c)}" for c in wanted if c in columns)
    frame = run_sql(con, "report: members",
        f"""-- [one proposed person]
        SELECT {select}, p.surname, p.forenames, p.date_of_birth
        FROM {q(table)} s LEFT JOIN people p USING (person_key)
        WHERE s.priority OR s.super_prolific
        ORDER BY s.rank, s.person_key"""
    ).pl()
    return frame, components, probability


def _movement(con, run_id: str, table: str) -> pl.DataFrame:
    """[one person entering, staying in or leaving one cohort]: with their current area and score."""
    return run_sql(con, "report: movement",
        f"""-- [one movement of one person in one cohort]
        SELECT m.cohort, m.status, m.person_key, s.area, s.score, s.rank, m.reason,
               {", ".join(f"s.{q(c)}" for c in IDENTIFIERS)}, p.surname, p.forenames
        FROM movement m LEFT JOIN {q(table)} s USING (person_key) LEFT JOIN people p USING (person_key)
        WHERE m.run_id = ?
        ORDER BY m.cohort, CASE m.status WHEN 'new' THEN 0 WHEN 'continuing' THEN 1 ELSE 2 END, m.person_key""",
        [run_id],
    ).pl()


def _release_watch(con, run_id: str) -> pl.DataFrame:
    """[one person in custody, release due, who would qualify on release]."""
    ensure_tables = table_exists(con, "run_release_watch")
    if not ensure_tables:
        return pl.DataFrame(schema={"person_key": pl.Utf8})
    return run_sql(con, "report: release watch",
        f"""-- [one person on the release watch]
        SELECT w.person_key, w.area, w.custody_type_at_d, w.expected_release_date, w.days_until_release, w.score,
               w.score_if_released, w.reasons_if_released, {", ".join(f"p.{q(c)}" for c in IDENTIFIERS)},
               p.surname, p.forenames
        FROM run_release_watch w LEFT JOIN people p USING (person_key)
        WHERE w.run_id = ? ORDER BY w.score_if_released DESC, w.person_key""",
        [run_id],
    ).pl()


def _events(con, keys: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """[one offence, custody spell or supervision period of a proposed person, known at the as-of date]."""
    # end: the as-of date for what is still going on (custody, supervision), flagged by `ongoing`
    schema = {"person_key": pl.Utf8, "kind": pl.Utf8, "start": pl.Date, "end": pl.Date, "label": pl.Utf8,
              "ongoing": pl.Boolean}
    if keys.is_empty() or not table_exists(con, "person_ids"):
        return pl.DataFrame(schema=schema)
    since = as_of.replace(year=as_of.year - TIMELINE_YEARS) if not (as_of.month == 2 and as_of.day == 29) \
        else as_of - timedelta(days=365 * TIMELINE_YEARS)
    con.register("report_keys", keys.select("person_key").to_arrow())
    try:
        frame = run_sql(con, "report: events",
            f"""-- [one dated record of a proposed person within the timeline's years]
            WITH ids AS (SELECT i.person_key, i.source, i.source_id FROM person_ids i JOIN report_keys USING (person_key))
            SELECT ids.person_key, 'offence' AS kind, o.offence_date AS start, NULL::DATE AS "end",
                   coalesce(o.offence_description, o.ho_offence_code) || ' ('
                     || CASE WHEN o.outcome_date <= $as_of AND o.outcome IS NOT NULL THEN o.outcome ELSE 'pending' END
                     || ')' AS label, false AS ongoing
            FROM {q(cur_table('police_offences'))} o
            JOIN ids ON ids.source = 'police' AND ids.source_id = o.police_person_id
            WHERE o.offence_date <= $as_of AND o.offence_date >= $since
              AND (o.recorded_date IS NULL OR o.recorded_date <= $as_of)
            UNION ALL
            SELECT ids.person_key, 'custody', c.reception_date,
                   CASE WHEN c.release_date <= $as_of THEN c.release_date ELSE $as_of END,
                   coalesce(c.custody_type, 'custody'), c.release_date IS NULL OR c.release_date > $as_of
            FROM {q(cur_table('prison_custody'))} c JOIN ids ON ids.source = 'prison' AND ids.source_id = c.nomis_id
            WHERE c.reception_date <= $as_of AND coalesce(c.release_date, $as_of) >= $since
            UNION ALL
            SELECT ids.person_key, 'supervision', s.supervision_start,
                   CASE WHEN s.supervision_end <= $as_of THEN s.supervision_end ELSE $as_of END,
                   coalesce(replace(s.supervision_type, '_', ' '), 'supervision'),
                   s.supervision_end IS NULL OR s.supervision_end > $as_of
            FROM {q(cur_table('probation_cases'))} s JOIN ids ON ids.source = 'probation' AND ids.source_id = s.crn
            WHERE s.supervision_start <= $as_of AND coalesce(s.supervision_end, $as_of) >= $since
              AND coalesce(s.supervision_type, '') <> 'none'
            ORDER BY 1, 3, 2, 5""",
            {"as_of": as_of, "since": since},
        ).pl()
    finally:
        con.unregister("report_keys")
    return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)


def _history(con, keys: pl.DataFrame, seq: int) -> pl.DataFrame:
    """[one earlier run's cohort membership of a proposed person]."""
    schema = {"person_key": pl.Utf8, "run_id": pl.Utf8, "as_of": pl.Date, "cohort": pl.Utf8, "rank": pl.Int64}
    if keys.is_empty():
        return pl.DataFrame(schema=schema)
    con.register("report_keys", keys.select("person_key").to_arrow())
    try:
        frame = run_sql(con, "report: history",
            """-- [one cohort membership in an earlier completed run]
            SELECT c.person_key, c.run_id, r.as_of, c.cohort, c.rank
            FROM cohort_members c JOIN runs r USING (run_id) JOIN report_keys USING (person_key)
            WHERE r.seq < ? AND r.status = 'completed'
            ORDER BY c.person_key, r.as_of DESC, c.cohort""",
            [seq],
        ).pl()
    finally:
        con.unregister("report_keys")
    return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)


def _rejects(con, finished_at) -> pl.DataFrame:
    """[one source and reason]: rejected checks of the loads known when the run finished."""
    if not table_exists(con, "rejects"):
        return pl.DataFrame(schema={"source": pl.Utf8, "reason_code": pl.Utf8, "rows": pl.Int64})
    return run_sql(con, "report: rejects",
        """-- [one source and reason code]
        SELECT r.source, r.reason_code, count(*) AS rows
        FROM rejects r JOIN loads l USING (load_id)
        WHERE l.finished_at <= ?
        GROUP BY r.source, r.reason_code ORDER BY r.source, rows DESC, r.reason_code""",
        [finished_at],
    ).pl()


def _unknown_codes(con, run_id: str) -> pl.DataFrame:
    if not table_exists(con, "run_unknown_codes"):
        return pl.DataFrame(schema={"code": pl.Utf8, "count": pl.Int64})
    return run_sql(con, "report: unknown codes", "SELECT code, count FROM run_unknown_codes WHERE run_id = ? ORDER BY count DESC, code",
                       [run_id]).pl()


def _fairness(con, run_id: str) -> pl.DataFrame | None:
    """The run's fairness table (`run_fairness`: every run keeps it beside fairness.csv)."""
    frame = run_sql(con, "report: fairness",
                    "SELECT * EXCLUDE (run_id) FROM run_fairness WHERE run_id = ? ORDER BY rowid", [run_id]).pl()
    return _rounded(frame) if frame.height else None


def _rounded(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).round(3) for c, t in frame.schema.items() if t in (pl.Float32, pl.Float64))


# The back-test's headline figures, in the order a panel reads them (evaluation.backtest).
BACKTEST_COLUMNS = ("rule_set", "rules_version", "scorer", "people", "reoffenders", "base_rate", "auc", "auc_low",
                    "auc_high", "average_precision", "cohort_size", "precision_at_cohort", "capture_offences",
                    "capture_neighbourhood")


def _validity(con) -> tuple[pl.DataFrame | None, str | None]:
    """The latest back-test's figures pooled over its dates, if a back-test has been stored."""
    if table_exists(con, "backtests") and table_exists(con, "backtest_metrics"):
        latest = run_sql(con, "report: validity",
            "SELECT backtest_id, from_date, to_date FROM backtests ORDER BY seq DESC LIMIT 1").fetchall()
        if latest:
            backtest_id, first, last = latest[0]
            columns = {r[0] for r in run_sql(con, "report: validity", "DESCRIBE backtest_metrics").fetchall()}
            wanted = ", ".join(q(c) for c in BACKTEST_COLUMNS if c in columns) or "*"
            pooled = "AND as_of IS NULL" if "as_of" in columns else ""
            frame = run_sql(con, "report: validity", f"SELECT {wanted} FROM backtest_metrics WHERE backtest_id = ? {pooled}",
                                [backtest_id]).pl()
            return _rounded(frame), f"{backtest_id}, as-of dates {first} to {last}, pooled"
    for (table,) in run_sql(con, "report: validity", "SELECT table_name FROM information_schema.tables "
                                "WHERE table_name LIKE 'backtest%' ORDER BY table_name").fetchall():
        columns = [r[0] for r in run_sql(con, "report: validity", f"DESCRIBE {q(table)}").fetchall()]
        key = next((c for c in ("backtest_id", "run_id") if c in columns), None)
        order = next((c for c in ("seq", "finished_at", "created_at", "started_at", "as_of") if c in columns), None)
        if key and order:
            latest = run_sql(con, "report: validity", f"SELECT {q(key)} FROM {q(table)} ORDER BY {q(order)} DESC LIMIT 1").fetchall()
            if latest:
                frame = run_sql(con, "report: validity", f"SELECT * FROM {q(table)} WHERE {q(key)} = ?", [latest[0][0]]).pl()
                return _rounded(frame), f"{table} {latest[0][0]}"
    return None, None


def _impact(con, known_by) -> dict | None:
    """The summary of the latest impact analysis made by `known_by` (so a pack made again is the same)."""
    if not table_exists(con, "impacts"):
        return None
    row = run_sql(con, "report: impact", """
        SELECT summary FROM impacts WHERE $known_by::TIMESTAMP IS NULL OR created_at <= $known_by::TIMESTAMP
        ORDER BY seq DESC LIMIT 1""", {"known_by": known_by}).fetchone()
    return json.loads(row[0]) if row else None


def _disagreement(con, table: str, model: dict | None) -> tuple[pl.DataFrame | None, int]:
    """[one eligible person ranked high by the rules and low by the model, or the reverse], as the
    run's disagreement.csv, with names: made again from the stored scores."""
    if not model:
        return None, 0
    columns = {r[0] for r in run_sql(con, "report: model columns", f"DESCRIBE {q(table)}").fetchall()}
    needed = ("person_key", "area", "rank", "score", "priority", "super_prolific", "eligible", *MODEL_COLUMNS)
    if not set(needed) <= columns:
        return None, 0
    eligible = run_sql(con, "report: eligible with the model",
        f"""-- [one eligible person, with the rules' and the model's ranks]
        SELECT {", ".join(q(c) for c in needed)} FROM {q(table)} WHERE eligible ORDER BY rank, person_key""").pl()
    top_percent = model.get("disagreement_top_percent") or ModelConfig().disagreement_top_percent
    frame = disagreement(eligible, top_percent)
    if frame.is_empty():
        return frame.with_columns(pl.lit(None, pl.Utf8).alias(c) for c in ("surname", "forenames", *IDENTIFIERS)), \
            eligible.height
    con.register("report_keys", frame.select("person_key").to_arrow())
    try:
        names = run_sql(con, "report: disagreement names",
            f"""SELECT person_key, surname, forenames, {", ".join(q(c) for c in IDENTIFIERS)}
            FROM people JOIN report_keys USING (person_key)""").pl()
    finally:
        con.unregister("report_keys")
    return frame.join(names, on="person_key", how="left", maintain_order="left"), eligible.height


def load_report_data(con: duckdb.DuckDBPyConnection, run_id: str | None) -> ReportData:
    """Everything the pack and the workbook show for one completed run, from the warehouse alone."""
    run = run_row(con, run_id)
    manifest = json.loads(run.pop("manifest") or "{}")
    table = f"run_scores_{run['seq']:06d}"
    if not table_exists(con, table):
        raise NotFoundError(f"the scores of run {run['run_id']} have been purged: its pack cannot be made again")
    members, components, probability = _members(con, table)
    keys = members.select("person_key")
    disagreeing, model_eligible = _disagreement(con, table, manifest.get("model"))
    validity, validity_source = _validity(con)
    known_by = run["finished_at"]
    return ReportData(
        run=run,
        manifest=manifest,
        stats=manifest.get("counts", {}).get("stats", {}),
        members=members,
        components=components,
        probability_column=probability,
        movement=_movement(con, run["run_id"], table),
        release_watch=_release_watch(con, run["run_id"]),
        events=_events(con, keys, run["as_of"]),
        history=_history(con, keys, run["seq"]),
        rejects=_rejects(con, run["finished_at"]),
        unknown_codes=_unknown_codes(con, run["run_id"]),
        link=manifest.get("counts", {}).get("link", []),
        fairness=_fairness(con, run["run_id"]),
        validity=validity,
        validity_source=validity_source,
        decisions=decision_history(con, keys, run["as_of"], known_by),
        due_for_review=due_for_review(con, run["as_of"], known_by),
        impact=_impact(con, known_by),
        model=manifest.get("model"),
        disagreement=disagreeing,
        model_eligible=model_eligible,
    )


def pseudonymised(data: ReportData, pseudonymiser) -> ReportData:
    """The same data with names and identifiers replaced (see `reporting.pseudonyms`)."""
    if pseudonymiser is None:
        return data
    p = pseudonymiser.frame
    return ReportData(**{
        **data.__dict__,
        "members": p(data.members), "movement": p(data.movement), "release_watch": p(data.release_watch),
        "events": p(data.events), "history": p(data.history),
        "disagreement": None if data.disagreement is None else p(data.disagreement),
        # The panel's free text may name people: left out of a pseudonymised pack.
        "decisions": p(data.decisions.drop("reason", "decided_by", strict=False)),
        "due_for_review": p(data.due_for_review.drop("reason", "decided_by", strict=False)),
    })
