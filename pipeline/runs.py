"""The runs register: each run's manifest, and the runs read back (`iom runs`, `iom explain`).

Kept apart from `pipeline.run` so that reading the register imports no features, rules or
validation code: `iom runs` starts in a fraction of a second. The manifest's JSON fields are
documented in docs/operations.md ("The run manifest").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipeline.config import Config
from pipeline.errors import NotFoundError
from pipeline.schema import scores_table
from pipeline.warehouse import connect, run_sql, table_exists

__all__ = ["RunCounts", "RunInput", "RunManifest", "RulesUsed", "get_run", "list_runs", "scores_table"]


@dataclass(frozen=True)
class RunInput:
    """One load in the warehouse when the run started, in load order."""

    source: str
    file: str
    sha256: str
    rows_read: int | None
    rows_loaded: int | None
    rows_rejected: int | None


@dataclass(frozen=True)
class RulesUsed:
    name: str
    version: str
    sha256: str


@dataclass
class RunCounts:
    ingest: list[dict]  # per source: files, rows_read, rows_loaded, rows_rejected (all loads)
    link: list[dict]  # per source: the link report's counts
    people: int
    # Set once the run has scored (absent from a failed run's manifest):
    assessed: int | None = None
    stats: Any = None  # the selection's statistics, as the rule engine reports them
    movement: dict[str, int] | None = None  # "<cohort>_<status>" -> people
    release_watch: int | None = None
    unknown_offence_codes: int | None = None
    decisions: dict[str, int] | None = None  # the panel's decisions applied: managed, included, ...
    disagreement: dict[str, int] | None = None  # with a model: people on the disagreement list, by kind

    def to_dict(self) -> dict:
        counts: dict = {"ingest": self.ingest, "link": self.link, "people": self.people}
        if self.assessed is not None:
            counts.update(assessed=self.assessed, stats=self.stats, movement=self.movement,
                          release_watch=self.release_watch, unknown_offence_codes=self.unknown_offence_codes,
                          decisions=self.decisions)
            if self.disagreement is not None:
                counts["disagreement"] = self.disagreement
        return counts


@dataclass
class RunManifest:
    """What a run was made from and what it made: written to manifest.json and `runs.manifest`."""

    run_id: str
    as_of: date
    started_at: datetime
    code_version: str
    user: str
    host: str
    python: str
    inputs: list[RunInput]
    forced: bool
    counts: RunCounts
    relinked: bool
    status: str = "started"  # then "completed" or "failed"
    failure: str | None = None  # why a failed run failed
    rules: RulesUsed | None = None
    model: dict | None = None  # the advisory model used (name, version, run id, artefact sha256), else null
    previous_run_id: str | None = None
    output_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None
    report: dict | None = None  # the pack's and workbook's file names, and whether pseudonymised
    fairness: dict | None = None  # the run's fairness summary (evaluation.fairness.fairness_summary)

    def to_dict(self) -> dict:
        """The manifest as JSON-ready values; a failed run has `failure` and none of the outputs' fields."""
        manifest: dict = {
            "run_id": self.run_id, "as_of": self.as_of.isoformat(),
            "started_at": self.started_at.isoformat(timespec="seconds"), "code_version": self.code_version,
            "user": self.user, "host": self.host, "python": self.python,
            "inputs": [vars(i).copy() for i in self.inputs], "forced": self.forced,
            "counts": self.counts.to_dict(), "relinked": self.relinked, "status": self.status,
        }
        if self.status == "failed":
            manifest["failure"] = self.failure
            return manifest
        manifest.update(
            rules=vars(self.rules).copy() if self.rules else None, model=self.model,
            previous_run_id=self.previous_run_id,
            output_dir=str(self.output_dir) if self.output_dir is not None else None,
        )
        if self.finished_at is not None:
            manifest.update(timings=self.timings, finished_at=self.finished_at.isoformat(timespec="seconds"))
        if self.report is not None:
            manifest["report"] = self.report
        if self.fairness is not None:
            manifest["fairness"] = self.fairness
        return manifest

    def to_json(self, indent: int | None = None, sort_keys: bool = True) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str, sort_keys=sort_keys)


def list_runs(config: Config) -> list[dict]:
    con = connect(config, read_only=True)
    try:
        if not table_exists(con, "runs"):
            return []
        cursor = run_sql(
            con, "list runs",
            "SELECT run_id, as_of, status, started_at, finished_at, rules_name, rules_version, code_version "
            "FROM runs ORDER BY seq",
        )
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def get_run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> dict:
    if not table_exists(con, "runs"):
        raise NotFoundError("no runs yet in this workspace", hint="run `iom run` first")
    if run_id:
        rows = run_sql(con, "get run", "SELECT run_id, seq, as_of, status, manifest FROM runs WHERE run_id = ?",
                       [run_id]).fetchall()
    else:
        rows = run_sql(
            con, "get latest run",
            "SELECT run_id, seq, as_of, status, manifest FROM runs WHERE status = 'completed' ORDER BY seq DESC LIMIT 1",
        ).fetchall()
    if not rows:
        raise NotFoundError(f"no run {run_id!r}" if run_id else "no completed run yet",
                            hint="`iom runs` lists the runs of this workspace")
    run_id, seq, as_of, status, manifest = rows[0]
    return {"run_id": run_id, "seq": seq, "as_of": as_of, "status": status, "manifest": json.loads(manifest)}
