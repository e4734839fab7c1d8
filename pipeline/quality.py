"""Data quality: the quarantined rows, for the analyst who must fix the extract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.config import Config
from pipeline.warehouse import connect, run_sql


@dataclass
class RejectsReport:
    by_reason: list[tuple[str, str, str, int]]  # source, file, reason, rows
    detail: pl.DataFrame  # source, file, line, column, value, reason, message (first `limit`)
    written: Path | None = None


def rejects(config: Config, source: str | None = None, limit: int = 20, out: Path | None = None) -> RejectsReport:
    """Counts of quarantined failures by source, file and reason, and the failures themselves.

    With `out`, every failure is written to that CSV (owner-only), in file and line order."""
    con = connect(config, read_only=True)
    try:
        where, params = ("WHERE source = ?", [source]) if source else ("", [])
        by_reason = run_sql(
            con, "rejects: by reason",
            f"SELECT source, file_name, reason_code, count(*) FROM rejects {where} "
            "GROUP BY ALL ORDER BY source, file_name, reason_code", params
        ).fetchall()
        query = (f"SELECT source, file_name, line, column_name, value, reason_code, message FROM rejects {where} "
                 "ORDER BY source, file_name, line, column_name")
        detail = run_sql(con, "rejects: first failures", query + " LIMIT ?", [*params, limit]).pl()
        written = None
        if out is not None:
            run_sql(con, "rejects: every failure", query, params).pl().write_csv(out)
            out.chmod(0o600)
            written = out
    finally:
        con.close()
    return RejectsReport(by_reason, detail, written)
