"""The panel's decisions: `iom decisions import`, the audit trail, and the decisions in force at
an as-of date, which the next run applies (includes and excludes until review).

Rules (docs/decisions.md):
- A file is imported whole or not at all: every row is checked (`pipeline.decision_file`), each
  person must be known to the warehouse (and assessed in the run the file names, if it names
  one), and any problem stops the import with nothing stored.
- The same file (by sha256) imported again is a reported no-op.
- Every stored decision keeps its import (who, when, which file and its sha256) and the row as
  read. Nothing is overwritten: a later decision supersedes an earlier one person by person.
- The decision in force for a person at a date D is their latest decision whose meeting was on or
  before D (later meeting first; for the same meeting, the later import, then the later row).
  It holds from its meeting until its review date; from the review date on it is *due for
  review* and no longer applied; an accepted person whose management ended is no longer managed.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config
from pipeline.decision_file import (
    IDENTIFIER_COLUMNS,
    SHEET,
    DecisionFile,
    DecisionFileError,
    Problem,
    as_problems,
    normalised,
    read_decision_file,
    row_problems,
)
from pipeline.errors import NotFoundError
from pipeline.identifiers import pnc_normal_sql
from pipeline.warehouse import connect, q, run_sql, table_exists, transaction

log = logging.getLogger(__name__)

__all__ = ["DecisionFileError", "ImportReport", "decisions_in_force", "import_decisions", "list_decisions",
           "panel_at", "DECISION_COLUMNS"]

# The columns a run adds to its scores from the decisions in force (see `panel_at`).
DECISION_COLUMNS = ("managed", "decision", "decision_cohort_type", "decision_date", "review_date",
                    "due_for_review", "decision_note")
_SOURCE_OF = {"police_person_id": "police", "crn": "probation", "nomis_id": "prison"}


@dataclass
class ImportReport:
    import_id: str
    status: str  # "imported" or "already imported"
    file_name: str
    sha256: str
    sheet: str | None
    run_id: str | None
    imported_at: datetime
    imported_by: str
    rows_read: int = 0
    decisions: int = 0
    blank_rows: int = 0
    by_decision: dict[str, int] = field(default_factory=dict)
    superseding: int = 0  # people who had a decision before this file


# --- who is the row about? -------------------------------------------------------------------


def _resolve_persons(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> tuple[pl.DataFrame, list[Problem]]:
    """(row_number, person_key, named_by) per decided row, and a problem for each row whose
    identifiers name nobody, more than one person, or different people. One join, not a query per row."""
    ids = rows.unpivot(index="row_number", on=list(IDENTIFIER_COLUMNS), variable_name="id_column",
                       value_name="value").filter(pl.col("value").is_not_null())
    ids = ids.with_columns(pl.col("value").str.strip_chars(), pl.col("id_column").cast(pl.Utf8))
    con.register("decision_ids", ids.to_arrow())
    try:
        found = run_sql(con, "decisions: resolve persons", f"""
            -- [one identifier of one decided row, and each person it names (none: person_key null)]
            WITH matches AS (
                SELECT d.row_number, d.id_column, p.person_key
                FROM decision_ids d JOIN people p ON d.id_column = 'person_key' AND p.person_key = upper(d.value)
                UNION ALL
                SELECT d.row_number, d.id_column, i.person_key
                FROM decision_ids d JOIN person_ids i
                  ON i.source = CASE d.id_column {" ".join(f"WHEN '{c}' THEN '{s}'" for c, s in _SOURCE_OF.items())} END
                 AND i.source_id = d.value
                UNION ALL
                -- the id as typed and upper-cased as two equality joins: `IN (a, b)` made a
                -- nested loop over every record (minutes for 40,000 rows against 1M people)
                SELECT d.row_number, d.id_column, i.person_key
                FROM decision_ids d JOIN person_ids i
                  ON i.source = CASE d.id_column {" ".join(f"WHEN '{c}' THEN '{s}'" for c, s in _SOURCE_OF.items())} END
                 AND i.source_id = upper(d.value) AND d.value <> upper(d.value)
                UNION ALL
                SELECT d.row_number, d.id_column, i.person_key
                FROM decision_ids d JOIN person_ids i
                  ON d.id_column = 'pnc_id' AND i.pnc_norm = {pnc_normal_sql("upper(d.value)")})
            SELECT d.row_number, d.id_column, list_sort(list_distinct(list(m.person_key))) AS keys
            FROM decision_ids d LEFT JOIN matches m USING (row_number, id_column)
            GROUP BY ALL ORDER BY d.row_number, d.id_column""").pl()
    finally:
        con.unregister("decision_ids")
    found = found.with_columns(pl.col("keys").list.drop_nulls())
    problems = [
        Problem(r, c, f"no person with this {c.replace('_', ' ')} in the warehouse" if not n else
                f"this {c.replace('_', ' ')} matches {n} people; name the person by person_key")
        for r, c, n in found.filter(pl.col("keys").list.len() != 1)
        .select("row_number", "id_column", pl.col("keys").list.len()).iter_rows()
    ]
    single = found.filter(pl.col("keys").list.len() == 1).with_columns(pl.col("keys").list.first().alias("person_key"))
    order = {c: i for i, c in enumerate(IDENTIFIER_COLUMNS)}
    per_row = (single.with_columns(pl.col("id_column").replace_strict(order, return_dtype=pl.Int8).alias("_order"))
               .sort("row_number", "_order")
               .group_by("row_number", maintain_order=True)
               .agg(pl.col("person_key").unique().alias("people"), pl.col("person_key").first(),
                    pl.col("id_column").first().alias("named_by")))
    problems += [Problem(r, None, "the row's identifiers name different people; keep the ones of one person")
                 for (r,) in per_row.filter(pl.col("people").list.len() > 1).select("row_number").iter_rows()]
    return per_row.filter(pl.col("people").list.len() == 1).drop("people"), problems


def _run_problems(con, file: DecisionFile, decided: pl.DataFrame) -> list[Problem]:
    """The run the file names must exist, each person must have been assessed in it, and no
    meeting can be before its as-of date."""
    if file.run_id is None:
        return []
    column = "run_id" if file.file_format == "csv" else None
    if not table_exists(con, "runs"):
        return [Problem(None, column, f"the file names run {file.run_id}, but the workspace has no runs")]
    run = run_sql(con, "decisions: named run", "SELECT seq, as_of, status FROM runs WHERE run_id = ?",
                  [file.run_id]).fetchall()
    if not run or run[0][2] != "completed":
        return [Problem(None, column, f"the file names run {file.run_id}, which is not a completed run of this "
                        "workspace (`iom runs` lists them)")]
    seq, as_of, _ = run[0]
    problems = [Problem(r, "meeting_date", f"before the as-of date of run {file.run_id} ({as_of})")
                for (r,) in decided.filter(pl.col("meeting_date_parsed") < as_of).select("row_number").iter_rows()]
    table = f"run_scores_{seq:06d}"
    if not table_exists(con, table):
        return [*problems, Problem(None, None, f"the scores of run {file.run_id} have been purged: "
                                   "its people cannot be checked")]
    con.register("decided_keys", decided.select("row_number", "person_key").to_arrow())
    try:
        missing = run_sql(con, "decisions: assessed in the run",
                          f"""-- [one decided row whose person the named run did not assess]
                          SELECT d.row_number FROM decided_keys d ANTI JOIN {q(table)} s USING (person_key)
                          ORDER BY d.row_number""").fetchall()
    finally:
        con.unregister("decided_keys")
    return problems + [Problem(r, None, f"the person was not assessed in run {file.run_id}") for (r,) in missing]


def _unpseudonymised(config: Config, file: DecisionFile, decided: pl.DataFrame) -> tuple[pl.DataFrame, list[Problem]]:
    """A pseudonymised workbook's identifiers mapped back through the analyst's lookup of its run
    (`OUTPUTS/pseudonyms/RUN_ID.csv`); a value not in the lookup is kept as the panel typed it."""
    lookup_path = config.pseudonym_lookup_path(file.run_id) if file.run_id else None
    if lookup_path is None or not lookup_path.is_file():
        where = f" ({lookup_path})" if lookup_path else ""
        return decided, [Problem(None, None, f"the workbook is pseudonymised and its run's pseudonym lookup{where} "
                                 "is not in this workspace: import it where the run was made")]
    lookup = pl.read_csv(lookup_path, schema={"kind": pl.Utf8, "pseudonym": pl.Utf8, "value": pl.Utf8})
    mapped = []
    for column in IDENTIFIER_COLUMNS:
        pairs = lookup.filter(pl.col("kind") == column)
        mapped.append(pl.col(column).replace_strict(pairs["pseudonym"], pairs["value"], default=pl.col(column),
                                                    return_dtype=pl.Utf8))
    return decided.with_columns(mapped), []


def _checked(con, config: Config, file: DecisionFile, today: date) -> tuple[pl.DataFrame, int]:
    """The decided rows with their person keys, or DecisionFileError listing every problem."""
    frame = normalised(file.rows)
    problems = as_problems(row_problems(frame, today, file.columns))
    decided = frame.filter(pl.col("decision").is_not_null())
    blank = frame.height - decided.height
    missing: list[Problem] = []
    if file.pseudonymised:
        decided, missing = _unpseudonymised(config, file, decided)
        problems += missing
    if decided.height and not missing:
        persons, unresolved = _resolve_persons(con, decided.select("row_number", *IDENTIFIER_COLUMNS))
        problems += unresolved
        decided = decided.drop("person_key").join(persons, on="row_number", how="inner")
        duplicate = decided.filter(pl.struct("person_key", "meeting_date_parsed").is_duplicated()
                                   & pl.col("meeting_date_parsed").is_not_null())
        first = duplicate.group_by("person_key", "meeting_date_parsed").agg(pl.col("row_number").min().alias("first"))
        problems += [Problem(r, None, f"a second decision on the same person at the same meeting (first in row {f})")
                     for r, f in duplicate.join(first, on=["person_key", "meeting_date_parsed"])
                     .filter(pl.col("row_number") != pl.col("first")).select("row_number", "first").iter_rows()]
        problems += _run_problems(con, file, decided)
    if not problems and decided.is_empty():
        problems.append(Problem(None, "decision", "no row has a decision: fill accept, reject or defer"))
    if problems:
        problems.sort(key=lambda p: (p.row or 0, p.column or ""))
        raise DecisionFileError(file.where, problems)
    return decided, blank


# --- import ------------------------------------------------------------------------------------


def import_decisions(config: Config, path: Path, sheet: str = SHEET, today: date | None = None,
                     user: str | None = None) -> ImportReport:
    """Check and store one decisions file, all or nothing; the same file again is a no-op."""
    file = read_decision_file(Path(path), sheet)
    now = datetime.now(UTC).replace(tzinfo=None)
    user = user or getpass.getuser()
    con = connect(config)
    try:
        done = run_sql(con, "decisions: imported before", "SELECT import_id, imported_at, imported_by, decisions "
                       "FROM decision_imports WHERE sha256 = ? ORDER BY seq LIMIT 1", [file.sha256]).fetchall()
        if done:
            import_id, at, by, n = done[0]
            log.info("decisions file already imported as %s", import_id)
            return ImportReport(import_id, "already imported", file.path.name, file.sha256, file.sheet, file.run_id,
                                at, by, decisions=n)
        if not table_exists(con, "people"):
            raise NotFoundError("no people in the warehouse yet", hint="run `iom ingest` before importing decisions")
        decided, blank = _checked(con, config, file, today or date.today())
        seq = run_sql(con, "decisions: next import", "SELECT coalesce(max(seq), 0) + 1 FROM decision_imports").fetchall()[0][0]
        import_id = f"D{seq:04d}"
        stored = decided.select(
            pl.lit(import_id).alias("import_id"), "row_number", "person_key", "named_by", "decision", "cohort_type",
            "reason", "decided_by", pl.col("meeting_date_parsed").alias("meeting_date"),
            pl.col("review_date_parsed").alias("review_date"), pl.col("management_end_parsed").alias("management_end"),
            pl.lit(file.run_id, dtype=pl.Utf8).alias("run_id"), "raw",
        ).sort("row_number")
        with transaction(con):
            superseding = run_sql(con, "decisions: people decided before",
                                  "SELECT count(DISTINCT person_key) FROM decisions WHERE list_contains(?, person_key)",
                                  [stored.get_column("person_key").unique().to_list()]).fetchall()[0][0]
            run_sql(con, "decisions: record import",
                    "INSERT INTO decision_imports (import_id, seq, file_name, file_path, sha256, file_format, sheet, run_id, "
                    "imported_by, host, imported_at, rows_read, decisions, blank_rows) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [import_id, seq, file.path.name, str(file.path.resolve()), file.sha256, file.file_format, file.sheet,
                     file.run_id, user, socket.gethostname(), now, file.rows.height, stored.height, blank])
            con.register("decision_rows", stored.to_arrow())
            run_sql(con, "decisions: store rows", "INSERT INTO decisions BY NAME SELECT * FROM decision_rows")
            con.unregister("decision_rows")
    finally:
        con.close()
    counts = stored.group_by("decision").len().sort("decision")
    log.info("imported %d decisions as %s", stored.height, import_id)
    return ImportReport(import_id, "imported", file.path.name, file.sha256, file.sheet, file.run_id, now, user,
                        file.rows.height, stored.height, blank, dict(counts.iter_rows()), int(superseding))


# --- the decisions in force ---------------------------------------------------------------------


def decisions_in_force(con: duckdb.DuckDBPyConnection, as_of: date, known_by: datetime | None = None) -> pl.DataFrame:
    """[one person with a decision]: their latest decision with a meeting on or before `as_of`,
    with its status at `as_of`, its import, and the note a run shows. `known_by` leaves out
    imports made after that time (a run's pack made again shows what the run knew)."""
    schema = {"person_key": pl.Utf8, "decision": pl.Utf8, "cohort_type": pl.Utf8, "reason": pl.Utf8,
              "decided_by": pl.Utf8, "meeting_date": pl.Date, "review_date": pl.Date, "management_end": pl.Date,
              "import_id": pl.Utf8, "file_name": pl.Utf8, "imported_at": pl.Datetime("us"), "earlier": pl.Int64,
              "status": pl.Utf8, "managed": pl.Boolean, "due_for_review": pl.Boolean, "in_force": pl.Boolean,
              "note": pl.Utf8}
    if not table_exists(con, "decisions"):
        return pl.DataFrame(schema=schema)
    frame = run_sql(con, "decisions: in force", """
        -- [one person: the latest decision with a meeting on or before the as-of date]
        WITH known AS (
            SELECT d.*, i.seq, i.file_name, i.imported_at
            FROM decisions d JOIN decision_imports i USING (import_id)
            WHERE d.meeting_date <= $as_of AND ($known_by::TIMESTAMP IS NULL OR i.imported_at <= $known_by::TIMESTAMP)),
        latest AS (
            SELECT *, count(*) OVER (PARTITION BY person_key) - 1 AS earlier FROM known
            QUALIFY row_number() OVER (PARTITION BY person_key
                                       ORDER BY meeting_date DESC, seq DESC, row_number DESC) = 1),
        status AS (
            SELECT *, CASE WHEN decision = 'accept' AND management_end <= $as_of THEN 'management ended'
                           WHEN review_date <= $as_of THEN 'due for review' ELSE 'in force' END AS status
            FROM latest)
        SELECT person_key, decision, cohort_type, reason, decided_by, meeting_date, review_date, management_end,
               import_id, file_name, imported_at, earlier, status,
               decision = 'accept' AND status = 'in force' AS managed,
               status = 'due for review' AS due_for_review, status = 'in force' AS in_force,
               CASE decision WHEN 'accept' THEN 'accepted as ' || cohort_type WHEN 'reject' THEN 'rejected'
                             ELSE 'deferred' END
                 || ' on ' || strftime(meeting_date, '%Y-%m-%d')
                 || CASE status WHEN 'management ended' THEN '; management ended ' || strftime(management_end, '%Y-%m-%d')
                                WHEN 'due for review' THEN '; due for review since ' || strftime(review_date, '%Y-%m-%d')
                                ELSE ' (review ' || strftime(review_date, '%Y-%m-%d') || ')' END AS note
        FROM status ORDER BY person_key""", {"as_of": as_of, "known_by": known_by}).pl()
    return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)


def panel_at(con: duckdb.DuckDBPyConnection, as_of: date, known_by: datetime | None = None) -> pl.DataFrame:
    """The frame `rules.select.select_cohorts` takes: per person with a decision, the include
    (accepted, in force) or exclude (rejected, in force), the panel's cohort type, the note, and
    the DECISION_COLUMNS a run adds to its scores."""
    force = decisions_in_force(con, as_of, known_by)
    return force.select(
        "person_key",
        pl.col("managed").alias("panel_include"),
        ((pl.col("decision") == "reject") & pl.col("in_force")).alias("panel_exclude"),
        pl.when(pl.col("managed")).then(pl.col("cohort_type")).alias("panel_cohort_type"),
        pl.col("note").alias("panel_note"),
        "managed", "decision", pl.col("cohort_type").alias("decision_cohort_type"),
        pl.col("meeting_date").alias("decision_date"), "review_date", "due_for_review",
        pl.col("note").alias("decision_note"),
    )


def due_for_review(con: duckdb.DuckDBPyConnection, as_of: date, known_by: datetime | None = None) -> pl.DataFrame:
    """[one person whose decision in force is due for review at `as_of`], with names and identifiers."""
    due = decisions_in_force(con, as_of, known_by).filter(pl.col("due_for_review"))
    return _with_people(con, due)


def _with_people(con, frame: pl.DataFrame) -> pl.DataFrame:
    con.register("decided_people", frame.select("person_key").to_arrow())
    try:
        people = run_sql(con, "decisions: people", """
            -- [one decided person]: names, identifiers and area
            SELECT p.person_key, p.surname, p.forenames, p.area, p.police_person_id, p.pnc_id, p.crn, p.nomis_id
            FROM people p SEMI JOIN decided_people USING (person_key)""").pl()
    finally:
        con.unregister("decided_people")
    return frame.join(people, on="person_key", how="left").sort("review_date", "person_key")


def decision_history(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame, as_of: date,
                     known_by: datetime | None = None) -> pl.DataFrame:
    """[one decision on one of `keys` with a meeting on or before `as_of`], newest first."""
    schema = {"person_key": pl.Utf8, "meeting_date": pl.Date, "decision": pl.Utf8, "cohort_type": pl.Utf8,
              "review_date": pl.Date, "management_end": pl.Date, "reason": pl.Utf8, "decided_by": pl.Utf8,
              "import_id": pl.Utf8}
    if keys.is_empty() or not table_exists(con, "decisions"):
        return pl.DataFrame(schema=schema)
    con.register("history_keys", keys.select("person_key").to_arrow())
    try:
        frame = run_sql(con, "decisions: history", """
            -- [one decision on a person of the run, known to it]
            SELECT d.person_key, d.meeting_date, d.decision, d.cohort_type, d.review_date, d.management_end,
                   d.reason, d.decided_by, d.import_id
            FROM decisions d JOIN decision_imports i USING (import_id) SEMI JOIN history_keys USING (person_key)
            WHERE d.meeting_date <= $as_of AND ($known_by::TIMESTAMP IS NULL OR i.imported_at <= $known_by::TIMESTAMP)
            ORDER BY d.person_key, d.meeting_date DESC, i.seq DESC, d.row_number DESC""",
            {"as_of": as_of, "known_by": known_by}).pl()
    finally:
        con.unregister("history_keys")
    return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)


def list_decisions(config: Config, as_of: date | None = None, due_only: bool = False) -> pl.DataFrame:
    """`iom decisions list`: the decision in force per person at `as_of` (default today), with
    names; only those due for review with `due_only`."""
    as_of = as_of or date.today()
    con = connect(config, read_only=True)
    try:
        force = decisions_in_force(con, as_of)
        if due_only:
            force = force.filter(pl.col("due_for_review"))
        return _with_people(con, force) if force.height else force
    finally:
        con.close()


def import_summary(report: ImportReport) -> dict:
    """The report as plain values (for JSON logs and tests)."""
    return json.loads(json.dumps(report.__dict__, default=str))
