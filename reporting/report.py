"""Build the pack and the workbook of one stored run (`iom run` and `iom report`)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.warehouse import connect
from reporting.pack import write_pack
from reporting.pseudonyms import for_config, lookup_path
from reporting.tables import load_report_data, pseudonymised, run_row
from reporting.workbook import write_workbook

log = logging.getLogger(__name__)
PACK = "pack.html"
WORKBOOK = "pack.xlsx"


@dataclass
class ReportPaths:
    run_id: str
    pack: Path
    workbook: Path
    lookup: Path | None = None
    members: int = 0
    timings: dict = field(default_factory=dict)


def build_report(con: duckdb.DuckDBPyConnection, run_id: str | None, out_dir: Path, config: Config,
                 pseudonymiser=None) -> ReportPaths:
    """Write pack.html and pack.xlsx for a completed run into out_dir (which must exist)."""
    started = time.perf_counter()
    data = load_report_data(con, run_id)
    timings = {"report_tables_s": round(time.perf_counter() - started, 3)}
    if pseudonymiser is None:
        pseudonymiser = for_config(config)
    data = pseudonymised(data, pseudonymiser)
    step = time.perf_counter()
    pack = write_pack(data, out_dir / PACK, pseudonymiser is not None)
    timings["pack_s"] = round(time.perf_counter() - step, 3)
    step = time.perf_counter()
    workbook = write_workbook(data, out_dir / WORKBOOK, pseudonymiser is not None)
    timings["workbook_s"] = round(time.perf_counter() - step, 3)
    for path in (pack, workbook):
        path.chmod(0o600)
    lookup = pseudonymiser.write_lookup(lookup_path(config, data.run["run_id"])) if pseudonymiser else None
    log.info("pack and workbook of run %s: %d proposed people in %.1f s", data.run["run_id"], data.members.height,
             time.perf_counter() - started)
    return ReportPaths(data.run["run_id"], pack, workbook, lookup, data.members.height, timings)


def report_run(config: Config, run_id: str | None, out_dir: Path | None = None,
               pseudonymise: bool | None = None) -> ReportPaths:
    """`iom report`: regenerate an earlier run's pack and workbook from the warehouse alone.

    Written to `out_dir`, or by default into the run's own output folder (created if it was
    removed). The files are written beside their targets first and renamed into place."""
    if pseudonymise is not None:
        config = config.with_overrides(pseudonymise=pseudonymise)
    con = connect(config, read_only=True)
    try:
        run = run_row(con, run_id)
        target = Path(out_dir) if out_dir else Path(run["output_dir"] or config.outputs_path / run["run_id"])
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = target / f".tmp-report-{os.getpid()}"
        staging.mkdir(mode=0o700, exist_ok=True)
        try:
            paths = build_report(con, run["run_id"], staging, config)
            for name in (PACK, WORKBOOK):
                (staging / name).replace(target / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        con.close()
    paths.pack, paths.workbook = target / PACK, target / WORKBOOK
    return paths
