"""Retention: `iom purge --older-than 24m` removes personal data past the retention period.

What goes: for every load that finished before the cut-off, its extract rows (`src_*`), its
rejects and quarantined rows; for every run that finished before the cut-off, its per-person
scores table, cohort members and movement rows. What stays: the `loads` rows (file name, sha256,
counts), the `runs` rows and their manifests (counts, rules hash, timings): the audit trail
holds no names, dates of birth or identifiers. Current tables and identity links are rebuilt
from what remains, and the file is checkpointed so freed blocks are reused.
"""

from __future__ import annotations

import calendar
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.config import Config
from pipeline.contract import EXTRACTS
from pipeline.errors import UsageError
from pipeline.link import link_identities
from pipeline.lock import workspace_lock
from pipeline.schema import PER_RUN_TABLES, scores_table
from pipeline.warehouse import connect, q, run_sql, src_table, table_exists, transaction

log = logging.getLogger(__name__)


def cutoff_before(text: str, now: datetime) -> datetime:
    """The moment `text` ('24m', '2y' in calendar months and years; '730d', '104w') before `now`."""
    match = re.fullmatch(r"\s*(\d+)\s*([dwmy])\s*", text.lower())
    if not match:
        raise UsageError(f"--older-than {text!r} is not a period", hint="use a number and a unit: 730d, 104w, 24m or 2y")
    number, unit = int(match.group(1)), match.group(2)
    if unit in "dw":
        return now - timedelta(days=number * (7 if unit == "w" else 1))
    months = number * (12 if unit == "y" else 1)
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


@dataclass
class PurgeReport:
    cutoff: datetime
    dry_run: bool
    loads: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)


def purge(config: Config, older_than: str, dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    cutoff = cutoff_before(older_than, now or datetime.now(UTC).replace(tzinfo=None))
    report = PurgeReport(cutoff, dry_run)
    with workspace_lock(config.warehouse_path, "purge"):
        con = connect(config)
        try:
            report.loads = [r[0] for r in run_sql(
                con, "purge: old loads", "SELECT load_id FROM loads WHERE finished_at < ? ORDER BY load_seq",
                [cutoff]).fetchall()]
            has_runs = table_exists(con, "runs")
            if has_runs:
                report.runs = [r[0] for r in run_sql(
                    con, "purge: old runs", "SELECT run_id FROM runs WHERE finished_at < ? ORDER BY seq",
                    [cutoff]).fetchall()]
            counts = {}
            for extract in EXTRACTS.values():
                table = q(src_table(extract))
                counts[src_table(extract)] = run_sql(
                    con, f"purge: count {src_table(extract)}",
                    f"SELECT count(*) FROM {table} WHERE _load_id IN (SELECT load_id FROM loads WHERE finished_at < ?)",
                    [cutoff]).fetchall()[0][0]
            for table in ("rejects", "rejected_rows"):
                counts[table] = run_sql(
                    con, f"purge: count {table}",
                    f"SELECT count(*) FROM {table} WHERE load_id IN (SELECT load_id FROM loads WHERE finished_at < ?)",
                    [cutoff]).fetchall()[0][0]
            report.rows_deleted = counts
            if dry_run or (not report.loads and not report.runs):
                return report
            with transaction(con):
                for extract in EXTRACTS.values():
                    run_sql(
                        con, f"purge: delete {src_table(extract)}",
                        f"DELETE FROM {q(src_table(extract))} WHERE _load_id IN "
                        "(SELECT load_id FROM loads WHERE finished_at < ?)", [cutoff])
                for table in ("rejects", "rejected_rows"):
                    run_sql(con, f"purge: delete {table}",
                            f"DELETE FROM {table} WHERE load_id IN (SELECT load_id FROM loads WHERE finished_at < ?)",
                            [cutoff])
                if has_runs:
                    old_runs = run_sql(con, "purge: old run numbers", "SELECT run_id, seq FROM runs WHERE finished_at < ?",
                                       [cutoff]).fetchall()
                    for run_id, seq in old_runs:
                        run_sql(con, "purge: drop run scores", f"DROP TABLE IF EXISTS {q(scores_table(seq))}")
                        for table in PER_RUN_TABLES:
                            if table_exists(con, table):
                                run_sql(con, f"purge: delete {table}", f"DELETE FROM {table} WHERE run_id = ?", [run_id])
                    run_sql(con, "purge: mark runs", "UPDATE runs SET purged_at = ? WHERE finished_at < ?",
                            [datetime.now(UTC).replace(tzinfo=None), cutoff])
                run_sql(con, "purge: mark loads", "UPDATE loads SET purged_at = ? WHERE finished_at < ?",
                        [datetime.now(UTC).replace(tzinfo=None), cutoff])
                link_identities(con, config.linking)
            run_sql(con, "purge: checkpoint", "CHECKPOINT")
        finally:
            con.close()
    log.info("purged %d loads and %d runs older than %s", len(report.loads), len(report.runs), cutoff.date())
    return report
