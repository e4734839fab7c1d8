"""The clerical review queue and the reviewers' decisions, and the evidence of each link.

- `review_queue`: pairs the model scored between the two thresholds, undecided, whose records are
  still two people: both records side by side, the match probability and weight, the weight and
  level of each field, and a suggested decision (`match` at or above the midpoint of the lower
  threshold and the pair's upper one: `upper_threshold` across agencies, `upper_threshold_within`
  for two records of one agency). Written as CSV by `iom links review --out FILE`: the reviewer
  fills `decision` (`match` or `no_match`) and optionally `decided_by` and `reason`, and imports
  it with `iom links decide FILE`.
- `import_decisions`: checks every row first (an error names the row and the column; nothing
  is changed), then appends the decisions to `link_decisions` (the audit trail, with the file
  name, its sha256 and line) and relinks. The latest decision on a pair wins over the model at
  every later link; only the rule that two PNC ids are never merged wins over a decision.
- `link_evidence`: how each record of a person was linked, for `iom explain`.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config
from pipeline.errors import InputFileError
from pipeline.link.probabilistic import FIELD_LABELS, FIELDS
from pipeline.safe_cells import write_safe_csv
from pipeline.warehouse import connect, run_sql, transaction

log = logging.getLogger(__name__)

DECISIONS = ("match", "no_match")
DECISION_COLUMNS = ("record_id_l", "record_id_r", "decision")  # required in a decisions file
OPTIONAL_COLUMNS = ("decided_by", "reason")
_RECORD_FIELDS = ("source", "source_id", "surname", "forenames", "date_of_birth", "sex", "area", "pnc_id", "nomis_id")

# [one current source record]: what a reviewer compares, as the agency holds it (latest values)
_RECORDS = """
WITH probation AS (
    SELECT crn, arg_max(surname, coalesce(supervision_start, DATE '1900-01-01')) AS surname,
           arg_max(forenames, coalesce(supervision_start, DATE '1900-01-01')) AS forenames,
           arg_max(date_of_birth, coalesce(supervision_start, DATE '1900-01-01')) AS date_of_birth,
           arg_max(sex, coalesce(supervision_start, DATE '1900-01-01')) AS sex,
           arg_max(area, coalesce(supervision_start, DATE '1900-01-01')) AS area,
           arg_max(pnc_id, coalesce(supervision_start, DATE '1900-01-01')) FILTER (WHERE pnc_id IS NOT NULL) AS pnc_id,
           arg_max(nomis_id, coalesce(supervision_start, DATE '1900-01-01')) FILTER (WHERE nomis_id IS NOT NULL) AS nomis_id
    FROM cur_probation_cases GROUP BY crn),
prison AS (
    SELECT nomis_id, arg_max(surname, reception_date) AS surname, arg_max(forenames, reception_date) AS forenames,
           arg_max(date_of_birth, reception_date) AS date_of_birth, arg_max(sex, reception_date) AS sex,
           arg_max(release_area, reception_date) AS area,
           arg_max(pnc_id, reception_date) FILTER (WHERE pnc_id IS NOT NULL) AS pnc_id
    FROM cur_prison_custody GROUP BY nomis_id)
SELECT 'police:' || police_person_id AS record_id, 'police' AS source, police_person_id AS source_id, surname,
       forenames, date_of_birth, sex, area, pnc_id, NULL::VARCHAR AS nomis_id FROM cur_police_nominals
UNION ALL
SELECT 'probation:' || crn, 'probation', crn, surname, forenames, date_of_birth, sex, area, pnc_id, nomis_id
FROM probation
UNION ALL
SELECT 'prison:' || nomis_id, 'prison', nomis_id, surname, forenames, date_of_birth, sex, area, pnc_id, nomis_id
FROM prison
"""


def _midpoints(config: Config) -> tuple[float, float]:
    """The suggestion's cut across agencies and within one: halfway from the lower threshold to the pair's upper."""
    linking = config.linking
    return ((linking.lower_threshold + linking.upper_threshold) / 2,
            (linking.lower_threshold + linking.upper_threshold_within) / 2)


def _queue_sql(midpoints: tuple[float, float]) -> str:
    across, within = (float(m) for m in midpoints)
    sides = ", ".join(f"{x}.{c} AS {c}_{x}" for x in ("l", "r") for c in _RECORD_FIELDS)
    return f"""
    WITH recs AS MATERIALIZED ({_RECORDS}),
    pending AS (
        SELECT p.* FROM link_pairs p
        WHERE p.zone = 'review' AND NOT EXISTS (
            SELECT 1 FROM link_decisions d WHERE d.record_id_l = p.record_id_l AND d.record_id_r = p.record_id_r)),
    keyed AS MATERIALIZED (
        SELECT p.*, (SELECT person_key FROM person_key_registry g WHERE g.record_id = p.record_id_l) AS key_l,
               (SELECT person_key FROM person_key_registry g WHERE g.record_id = p.record_id_r) AS key_r
        FROM pending p)
    SELECT k.record_id_l, k.record_id_r, round(k.match_probability, 4) AS match_probability,
           round(k.match_weight, 2) AS match_weight,
           CASE WHEN k.match_probability >= CASE WHEN l.source = r.source THEN {within} ELSE {across} END
                THEN 'match' ELSE 'no_match' END AS suggested,
           '' AS decision, '' AS decided_by, '' AS reason,
           {sides},
           {", ".join(f"round(k.w_{f}, 2) AS weight_{f}, k.level_{f} AS level_{f}" for f in FIELDS)}
    FROM keyed k JOIN recs l ON l.record_id = k.record_id_l JOIN recs r ON r.record_id = k.record_id_r
    WHERE k.key_l IS DISTINCT FROM k.key_r
    ORDER BY k.match_probability DESC, k.record_id_l, k.record_id_r"""


def review_queue(config: Config) -> pl.DataFrame:
    con = connect(config, read_only=True)
    try:
        return run_sql(con, "review: queue", _queue_sql(_midpoints(config))).pl()
    finally:
        con.close()


def write_queue(frame: pl.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safe_csv(frame, path)  # the project's one formula-injection rule, set-based
    path.chmod(0o600)
    return path


# --- decisions ---------------------------------------------------------------------------------


@dataclass
class DecisionImport:
    file: str
    sha256: str
    recorded: int = 0
    matches: int = 0
    no_matches: int = 0
    blank: int = 0  # rows with no decision yet: skipped
    already_imported: bool = False
    link: object = None  # the LinkSummary of the relink
    warnings: list[str] = field(default_factory=list)


def _read_rows(path: Path) -> tuple[list[str], list[dict], str]:
    if not path.is_file():
        raise InputFileError(f"decisions file not found: {path}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path.name}: not UTF-8 text (byte {exc.start})",
                             hint="save the file as CSV UTF-8 from the spreadsheet") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    return header, list(reader), digest


def check_decisions(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[list[dict], str]:
    """Every row checked; all the errors at once, each naming the row (line of the file) and the column."""
    header, rows, digest = _read_rows(path)
    missing = [c for c in DECISION_COLUMNS if c not in header]
    if missing:
        raise InputFileError(f"{path.name}: row 1 (the header): missing column(s) {', '.join(missing)}",
                             hint="export the queue with `iom links review --out FILE` and fill its decision column")
    known = {r[0] for r in run_sql(con, "decide: current records",
                                   "SELECT source || ':' || source_id FROM person_ids").fetchall()}
    errors, good = [], []
    for line, row in enumerate(rows, start=2):
        decision = (row.get("decision") or "").strip().lower().replace(" ", "_").replace("-", "_")
        left, right = (row.get("record_id_l") or "").strip(), (row.get("record_id_r") or "").strip()
        if not decision:
            good.append({"line": line, "blank": True})
            continue
        if decision not in DECISIONS:
            errors.append(f"row {line}, column decision: {decision!r} is not a decision; use match or no_match")
        for column, value in (("record_id_l", left), ("record_id_r", right)):
            if not value:
                errors.append(f"row {line}, column {column}: empty; a record id such as probation:X123456")
            elif value not in known:
                errors.append(f"row {line}, column {column}: no current record {value!r} in the warehouse")
        if left and left == right:
            errors.append(f"row {line}, column record_id_r: the same record as record_id_l")
        good.append({"line": line, "blank": False, "record_id_l": min(left, right), "record_id_r": max(left, right),
                     "decision": decision, "decided_by": (row.get("decided_by") or "").strip() or None,
                     "reason": (row.get("reason") or "").strip() or None})
    if errors:
        shown = errors[:50] + ([f"... and {len(errors) - 50} more"] if len(errors) > 50 else [])
        raise InputFileError(f"{path.name}: {len(errors)} error(s); nothing was recorded:\n  " + "\n  ".join(shown),
                             hint="correct the rows named and import the file again")
    return good, digest


def import_decisions(config: Config, path: Path) -> DecisionImport:
    """Check the file, then record its decisions and relink, in one transaction."""
    from pipeline.link import link_identities

    path = Path(path)
    con = connect(config)
    try:
        rows, digest = check_decisions(con, path)
        result = DecisionImport(path.name, digest)
        if run_sql(con, "decide: file seen", "SELECT count(*) FROM link_decisions WHERE file_sha256 = ?",
                   [digest]).fetchone()[0]:
            result.already_imported = True
            return result
        now = datetime.now(UTC).replace(tzinfo=None)
        user = getpass.getuser()
        with transaction(con):
            first = run_sql(con, "decide: next id",
                            "SELECT coalesce(max(decision_id), 0) + 1 FROM link_decisions").fetchone()[0]
            decided = [r for r in rows if not r["blank"]]
            result.blank = len(rows) - len(decided)
            for offset, row in enumerate(decided):
                run_sql(con, "decide: record decision",
                        """INSERT INTO link_decisions SELECT ?, ?, ?, ?, ?, ?, ?,
                               (SELECT max(match_probability) FROM link_pairs WHERE record_id_l = ? AND record_id_r = ?),
                               ?, ?, ?""",
                        [first + offset, now, row["record_id_l"], row["record_id_r"], row["decision"],
                         row["decided_by"] or user, row["reason"], row["record_id_l"], row["record_id_r"],
                         path.name, digest, row["line"]])
            result.recorded = len(decided)
            result.matches = sum(r["decision"] == "match" for r in decided)
            result.no_matches = result.recorded - result.matches
            if decided:
                result.link = link_identities(con, config.linking)
    finally:
        con.close()
    log.info("recorded %d link decision(s) from %s", result.recorded, path.name)
    return result


def list_decisions(con: duckdb.DuckDBPyConnection) -> list[dict]:
    cursor = run_sql(con, "decisions: list", "SELECT * FROM link_decisions ORDER BY decision_id")
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]


# --- evidence for explain ------------------------------------------------------------------------

_EVIDENCE = f"""
WITH mine AS (SELECT source || ':' || source_id AS record_id, source, source_id, link_method
              FROM person_ids WHERE person_key = $person),
pairs AS (
    SELECT p.* FROM link_pairs p
    WHERE p.record_id_l IN (SELECT record_id FROM mine) AND p.record_id_r IN (SELECT record_id FROM mine)),
decided AS (
    SELECT record_id_l, record_id_r, arg_max(decision, decision_id) AS decision,
           arg_max(decided_by, decision_id) AS decided_by, max(decided_at) AS decided_at
    FROM link_decisions
    WHERE record_id_l IN (SELECT record_id FROM mine) OR record_id_r IN (SELECT record_id FROM mine)
    GROUP BY ALL)
SELECT coalesce(p.record_id_l, d.record_id_l) AS record_id_l, coalesce(p.record_id_r, d.record_id_r) AS record_id_r,
       p.match_probability, p.match_weight, p.zone, d.decision, d.decided_by, d.decided_at,
       {", ".join(f"p.w_{f}, p.level_{f}" for f in FIELDS)}
FROM pairs p FULL JOIN decided d USING (record_id_l, record_id_r)
ORDER BY coalesce(p.match_probability, 2) DESC, 1, 2
"""


@dataclass
class LinkEvidence:
    records: list[dict]  # record_id, source, source_id, link_method
    pairs: list[dict]  # the scored or decided pairs among (or from) this person's records


def link_evidence(con: duckdb.DuckDBPyConnection, person_key: str) -> LinkEvidence:
    cursor = run_sql(con, "explain: records",
                     "SELECT source || ':' || source_id AS record_id, source, source_id, link_method FROM person_ids "
                     "WHERE person_key = ? ORDER BY source, source_id", [person_key])
    columns = [d[0] for d in cursor.description]
    records = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    cursor = run_sql(con, "explain: link pairs", _EVIDENCE, {"person": person_key})
    columns = [d[0] for d in cursor.description]
    pairs = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    return LinkEvidence(records, pairs)


METHOD_TEXT = {
    "pnc": "same PNC id as another record of this person",
    "nomis": "same prison (NOMIS) number as another record of this person",
    "name_dob": "exact surname, first forename and date of birth (no conflicting PNC id)",
    "probabilistic": "probabilistic match (Splink) with a record of this person; evidence below",
    "review": "a reviewer's decision that it is the same person; see below",
    "unlinked": "the only record of this person",
}


def evidence_lines(evidence: LinkEvidence) -> list[str]:
    """Plain-English lines: each record's method, then each pair with its weights per field."""
    lines = [f"{r['record_id']}: {METHOD_TEXT.get(r['link_method'], r['link_method'])}" for r in evidence.records]
    for pair in evidence.pairs:
        parts = []
        if pair["match_probability"] is not None:
            parts.append(f"match probability {pair['match_probability']:.4f} (weight {pair['match_weight']:+.1f})"
                         + {"auto_link": ", linked by the model", "review": ", in the review queue"}.get(pair["zone"], ""))
        if pair["decision"]:
            verdict = "same person" if pair["decision"] == "match" else "not the same person"
            parts.append(f"reviewer {pair['decided_by']} decided {verdict} on {pair['decided_at']:%Y-%m-%d}")
        lines.append(f"{pair['record_id_l']} ~ {pair['record_id_r']}: {'; '.join(parts)}")
        if pair["match_probability"] is not None:
            for f in FIELDS:
                lines.append(f"    {FIELD_LABELS[f]:<15} {pair[f'w_{f}']:+6.1f}  {pair[f'level_{f}']}")
    return lines


def example_link(config: Config) -> tuple[str, list[str]] | None:
    """A person linked by the model whose evidence is least clear-cut (the auto-linked pair of
    lowest probability), with the lines `iom explain` shows: what the demo prints."""
    con = connect(config, read_only=True)
    try:
        row = run_sql(con, "demo: example link",
                      """SELECT i.person_key FROM link_pairs p
                         JOIN person_ids i ON i.source || ':' || i.source_id = p.record_id_l
                         JOIN person_ids j ON j.source || ':' || j.source_id = p.record_id_r
                         WHERE p.zone = 'auto_link' AND i.person_key = j.person_key
                         ORDER BY p.match_probability, p.record_id_l, p.record_id_r LIMIT 1""").fetchone()
        if row is None:
            return None
        return row[0], evidence_lines(link_evidence(con, row[0]))
    finally:
        con.close()
