"""Operations and safety: the lock, encryption at rest, owner-only files, retention purge."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from builders import example_row
from typer.testing import CliRunner

from cli import app
from pipeline.errors import LockedError, UsageError, WarehouseError
from pipeline.ingest import ingest
from pipeline.lock import workspace_lock
from pipeline.retention import cutoff_before, purge
from pipeline.warehouse import connect, open_warehouse

runner = CliRunner()
REPO = Path(__file__).parents[2]


def test_second_holder_of_the_lock_is_refused_at_once(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from pipeline.lock import workspace_lock;"
         "cm = workspace_lock(__import__('pathlib').Path(sys.argv[2])); cm.__enter__(); print('held', flush=True);"
         "time.sleep(30)", str(REPO), str(warehouse)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(LockedError, match=str(holder.pid)), workspace_lock(warehouse):
            pass
        assert time.monotonic() - started < 1.0
    finally:
        holder.kill()
        holder.wait()
    # killed holder (like kill -9): the kernel released the lock
    with workspace_lock(warehouse):
        pass


def test_encrypted_warehouse_refuses_without_the_right_key(tmp_path, monkeypatch, workspace):
    config = workspace({"police_nominals": [example_row("police_nominals")]})
    config = config.with_overrides(encryption_key_env="IOM_TEST_KEY")
    monkeypatch.setenv("IOM_TEST_KEY", "correct horse battery staple")
    ingest(config)
    data = config.warehouse_path.read_bytes()
    assert b"Ashworth" not in data and b"police_nominals" not in data  # nothing readable at rest
    monkeypatch.delenv("IOM_TEST_KEY")
    with pytest.raises(WarehouseError, match="IOM_TEST_KEY"):
        connect(config)
    monkeypatch.setenv("IOM_TEST_KEY", "wrong key")
    with pytest.raises(WarehouseError, match="key is missing or wrong"):
        connect(config)
    with pytest.raises(WarehouseError, match="encrypted and no key"):
        open_warehouse(config.warehouse_path)
    monkeypatch.setenv("IOM_TEST_KEY", "correct horse battery staple")
    con = connect(config)
    assert con.execute("SELECT surname FROM src_police_nominals").fetchall() == [("Ashworth",)]
    con.close()


@pytest.mark.slow
def test_cli_creates_warehouse_and_folders_owner_only(tmp_path):
    from builders import write_workspace

    write_workspace(tmp_path / "ws", {"police_nominals": [example_row("police_nominals")]})
    result = subprocess.run([sys.executable, "-m", "cli", "ingest", "--config", str(tmp_path / "ws" / "iom.toml")],
                            cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    mode = stat.S_IMODE(os.stat(tmp_path / "ws" / "warehouse.duckdb").st_mode)
    assert mode == 0o600


def test_retention_periods_are_calendar_months_years_days_weeks():
    now = datetime(2026, 11, 22, 9, 30)
    assert cutoff_before("24m", now) == datetime(2024, 11, 22, 9, 30)
    assert cutoff_before("2y", now) == datetime(2024, 11, 22, 9, 30)
    assert cutoff_before("1m", datetime(2026, 3, 31)) == datetime(2026, 2, 28)  # no 31 February
    assert cutoff_before("730d", now) == now - timedelta(days=730)
    assert cutoff_before("2w", now) == now - timedelta(days=14)
    with pytest.raises(UsageError):
        cutoff_before("two years", now)


def test_purge_removes_old_rows_and_keeps_the_register(workspace):
    config = workspace({"police_nominals": [example_row("police_nominals")],
                        "police_offences": [example_row("police_offences", outcome="bogus"),
                                            example_row("police_offences", offence_id="CR2")]})
    ingest(config)
    dry = purge(config, "24m", dry_run=True, now=datetime.now() + timedelta(days=800))
    assert dry.rows_deleted["src_police_offences"] == 1 and dry.rows_deleted["rejects"] == 1
    con = connect(config)
    assert con.execute("SELECT count(*) FROM src_police_offences").fetchall() == [(1,)]  # dry run changed nothing
    con.close()
    recent = purge(config, "24m", now=datetime.now())
    assert recent.loads == []
    report = purge(config, "24m", now=datetime.now() + timedelta(days=800))
    assert len(report.loads) == 5
    con = connect(config)
    try:
        remaining = con.execute(
            "SELECT (SELECT count(*) FROM src_police_offences), (SELECT count(*) FROM src_police_nominals), "
            "(SELECT count(*) FROM rejects), (SELECT count(*) FROM rejected_rows), (SELECT count(*) FROM people)"
        ).fetchall()[0]
        register = con.execute("SELECT count(*), sum(rows_read), count(purged_at) FROM loads").fetchall()[0]
    finally:
        con.close()
    assert remaining == (0, 0, 0, 0, 0)
    assert register == (5, 3, 5)


def test_purge_command(tmp_path, workspace):
    config = workspace({"police_nominals": [example_row("police_nominals")]})
    result = runner.invoke(app, ["purge", "--older-than", "24m", "--dry-run", "--config", str(config.path)])
    assert result.exit_code == 0, result.output
    assert "Would remove" in result.output
    bad = runner.invoke(app, ["purge", "--older-than", "soon", "--config", str(config.path)])
    assert bad.exit_code == 2


HOSTILE = ['"; DROP TABLE loads; --', 'a"b', "Robert'); DELETE FROM rejects;--", "select", "x y z"]


def test_hostile_column_names_in_mappings_are_data_not_sql(workspace, tmp_path):
    import polars as pl

    from pipeline.contract import EXTRACTS

    columns = EXTRACTS["probation_events"].column_names
    mapping = dict(zip(HOSTILE[:3], columns, strict=True))
    (tmp_path / "extracts").mkdir(exist_ok=True)
    frame = pl.DataFrame({HOSTILE[0]: ["X123456", "X123456"], HOSTILE[1]: ["2026-08-14", "bad"],
                          HOSTILE[2]: ["breach", "recall"], HOSTILE[3]: ["extra", "extra"]})
    frame.write_parquet(tmp_path / "extracts" / "events.parquet")
    csv_path = tmp_path / "extracts" / "events.csv"
    frame.write_csv(csv_path)
    for file, fmt in (("extracts/events.parquet", "parquet"), ("extracts/events.csv", "csv")):
        config = workspace(overrides={"probation_events": {"file": file, "format": fmt, "columns": mapping}})
        results = {r.source: r for r in ingest(config)}
        events = results["probation_events"]
        assert (events.rows_read, events.rows_loaded, events.rows_rejected) == (2, 1, 1)
        assert events.ignored_columns == [HOSTILE[3]]
        con = connect(config)
        try:
            assert con.execute("SELECT count(*) FROM loads").fetchall()[0][0] >= 5  # nothing dropped
            assert con.execute("SELECT count(*) FROM rejects").fetchall()[0][0] >= 1
        finally:
            con.close()
        config.warehouse_path.unlink()


@pytest.mark.slow
def test_run_outputs_are_owner_only(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli", "--quiet", "demo", "--dir", str(tmp_path / "d"),
                             "--people", "300"], cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outputs = tmp_path / "d" / "outputs"
    for path in [outputs, *outputs.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
