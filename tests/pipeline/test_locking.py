"""Every command started while another holds the workspace: exit 6 naming the holder, or wait."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import example_row
from typer.testing import CliRunner

from cli import app, hoist_global_options
from pipeline.lock import workspace_lock
from pipeline.run import run_period

pytestmark = pytest.mark.slow  # a holder subprocess per test: seconds each

runner = CliRunner()
REPO = Path(__file__).parents[2]

# A stand-in for a command in progress: it holds the lock as that command does and keeps the
# warehouse open (for writing unless shared), so a command that ignored the lock would fail to
# open the file instead of reporting the lock.
HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pipeline.config import load_config
from pipeline.lock import workspace_lock
from pipeline.warehouse import connect
cfg = load_config(sys.argv[2])
shared = sys.argv[4] == "shared"
with workspace_lock(cfg.warehouse_path, "run", shared=shared):
    con = connect(cfg, read_only=shared)
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    con.close()
"""


@pytest.fixture
def done_workspace(workspace):
    """A tiny workspace with one completed run, so that every reading command has something to read."""
    config = workspace({
        "police_nominals": [example_row("police_nominals")],
        "police_offences": [example_row("police_offences", offence_date="2026-09-01")],
    })
    run_period(config, as_of=__import__("datetime").date(2026, 11, 1))
    return config


def hold(config, seconds: float = 30, shared: bool = False) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(REPO), str(config.path), str(seconds), "shared" if shared else "x"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def commands(config) -> dict[str, list[str]]:
    c = ["--config", str(config.path)]
    return {
        "ingest": ["ingest", *c],
        "run": ["run", *c, "--as-of", "2026-11-01", "--force"],
        "purge": ["purge", "--older-than", "24m", "--dry-run", *c],
        "explain": ["explain", example_row("police_nominals")["police_person_id"], *c],
        "rejects": ["rejects", *c],
        "runs": ["runs", *c],
        "runs show": ["runs", "show", "R0001-2026-11-01", *c],
        "report": ["report", *c],
        "decisions import": ["decisions", "import", str(config.path.parent / "decisions.csv"), *c],
        "decisions list": ["decisions", "list", *c],
        "backtest": ["backtest", *c],
        "train": ["train", *c],
        "impact": ["impact", *c],
    }


def test_every_command_started_during_a_run_exits_6_naming_the_run(done_workspace):
    holder = hold(done_workspace)
    try:
        for name, args in commands(done_workspace).items():
            started = time.monotonic()
            result = runner.invoke(app, args)
            assert result.exit_code == 6, (name, result.output)
            assert "`iom run`" in result.output and f"pid {holder.pid}" in result.output, (name, result.output)
            assert "since" in result.output and "UTC" in result.output, name
            assert "--wait" in result.output, name
            assert time.monotonic() - started < 2, name  # refused at once, not after a timeout
    finally:
        holder.kill()
        holder.wait()


def test_readers_share_the_workspace_and_a_writer_is_told_it_is_being_read(done_workspace):
    holder = hold(done_workspace, shared=True)
    try:
        for name in ("explain", "rejects", "runs", "runs show", "report", "decisions list"):
            result = runner.invoke(app, commands(done_workspace)[name])
            assert result.exit_code == 0, (name, result.output)
        for name in ("ingest", "decisions import"):
            result = runner.invoke(app, commands(done_workspace)[name])
            assert result.exit_code == 6, (name, result.output)
            assert "being read" in result.output
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", ["runs", "ingest"])
def test_wait_waits_for_the_holder_to_finish(done_workspace, name):
    holder = hold(done_workspace, seconds=1.5)
    try:
        started = time.monotonic()
        result = runner.invoke(app, [*commands(done_workspace)[name], "--wait", "30"])
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started >= 0.5  # it did wait for the holder
    finally:
        holder.wait()


def test_wait_gives_up_after_the_time_asked_for(done_workspace):
    holder = hold(done_workspace)
    try:
        started = time.monotonic()
        result = runner.invoke(app, [*commands(done_workspace)["runs"], "--wait", "1"])
        assert result.exit_code == 6 and "waited 1 s" in result.output
        assert 1 <= time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_within_a_process_but_not_upgradable(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with workspace_lock(warehouse, "run"), workspace_lock(warehouse, "run"):
        pass
    with workspace_lock(warehouse, "runs", shared=True), pytest.raises(RuntimeError), workspace_lock(warehouse, "run"):
        pass
    with workspace_lock(warehouse, "run"):  # released after all of the above
        pass


def test_global_options_work_after_the_command_as_well_as_before(done_workspace):
    assert hoist_global_options(["run", "--quiet", "--as-of", "2026-11-01"]) == ["--quiet", "run", "--as-of", "2026-11-01"]
    assert hoist_global_options(["run", "--log-format", "json", "-v"]) == ["--log-format", "json", "-v", "run"]
    assert hoist_global_options(["explain", "--", "--quiet"]) == ["explain", "--", "--quiet"]
    log_file = done_workspace.path.parent / "iom.log"
    args = ["runs", "--config", str(done_workspace.path), "--quiet", f"--log-file={log_file}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "R0001-2026-11-01" in result.output and log_file.exists()
