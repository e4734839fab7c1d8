"""`iom run` end to end on generated data: outputs, determinism, idempotency, movement,
explain, runs, the lock, crash recovery, the rejected-share threshold and log hygiene."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_config
from pipeline.workspace import generate_workspace

pytestmark = pytest.mark.slow  # a generated workspace and runs: seconds each

REPO = Path(__file__).parents[2]
AS_OF = date(2026, 11, 1)
runner = CliRunner()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """One small generated workspace, copied per test (generation is the slow part)."""
    root = tmp_path_factory.mktemp("generated")
    generate_workspace(root, people=1500, seed=11, extract_date=AS_OF, fault_rate=0.002)
    return root


@pytest.fixture
def ws(generated, tmp_path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(generated, target)
    return target


def iom(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                               "HOME": str(cwd)}, timeout=timeout)


def run_ok(ws: Path, *extra: str):
    result = runner.invoke(app, ["run", "--config", str(ws / "iom.toml"), "--as-of", AS_OF.isoformat(), *extra])
    assert result.exit_code == 0, result.output
    return result


def output_dir(ws: Path) -> Path:
    return sorted(p for p in (ws / "outputs").iterdir() if not p.name.startswith("."))[-1]


def test_run_writes_every_output_and_the_cohort_respects_capacity(ws):
    result = run_ok(ws)
    out = output_dir(ws)
    for name in ("scores.csv", "scores.parquet", "cohort.csv", "movement.csv", "manifest.json"):
        assert (out / name).is_file(), name
    assert "Outputs:" in result.output
    scores = pl.read_parquet(out / "scores.parquet")
    assert scores["person_key"].is_unique().all()
    assert {"score", "reasons", "eligible", "priority", "super_prolific", "crn", "pnc_id"} <= set(scores.columns)
    assert "ineligible_code" not in scores.columns  # internal: movement reads it, the outputs do not carry it
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["as_of"] == AS_OF.isoformat()
    assert len(manifest["rules"]["sha256"]) == 64
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert manifest["counts"]["assessed"] == scores.height
    from rules.schema import load_rules

    rules = load_rules("default")
    members = scores.filter(pl.col("priority"))
    for area, size in members.group_by("area").len().iter_rows():
        assert size <= rules.cohorts.capacity_of(area)
    # the super-prolific are everyone eligible with enough offences in 12 months
    assert scores.filter(pl.col("super_prolific"))["offences_12m"].min() >= rules.cohorts.super_prolific_min_offences_12m


def test_identical_inputs_give_byte_identical_outputs(generated, tmp_path):
    outputs = []
    for name in ("a", "b"):
        target = tmp_path / name
        shutil.copytree(generated, target)
        run_ok(target)
        outputs.append(output_dir(target))
    for name in ("scores.csv", "cohort.csv", "movement.csv", "release_watch.csv"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name


def test_rerunning_a_completed_period_is_a_no_op_unless_forced(ws):
    run_ok(ws)
    again = run_ok(ws)
    assert "already completed" in again.output
    assert len([p for p in (ws / "outputs").iterdir() if not p.name.startswith(".")]) == 1
    forced = run_ok(ws, "--force")
    assert "Outputs:" in forced.output
    assert len([p for p in (ws / "outputs").iterdir() if not p.name.startswith(".")]) == 2


def test_movement_between_two_months_names_reasons(ws):
    config = str(ws / "iom.toml")
    assert runner.invoke(app, ["run", "--config", config, "--as-of", "2026-09-01"]).exit_code == 0
    assert runner.invoke(app, ["run", "--config", config, "--as-of", "2026-11-01"]).exit_code == 0
    out = output_dir(ws)
    moves = pl.read_csv(out / "movement.csv")
    assert set(moves["status"]) <= {"new", "continuing", "leaving"}
    assert moves.filter(pl.col("status") == "leaving")["reason"].null_count() == 0
    previous = pl.read_csv(sorted((ws / "outputs").iterdir())[0] / "cohort.csv")
    current = pl.read_csv(out / "cohort.csv")
    priority_now = set(current.filter(pl.col("priority"))["person_key"])
    priority_before = set(previous.filter(pl.col("priority"))["person_key"])
    priority_moves = moves.filter(pl.col("cohort") == "priority")
    assert set(priority_moves.filter(pl.col("status") == "new")["person_key"]) == priority_now - priority_before
    assert set(priority_moves.filter(pl.col("status") == "leaving")["person_key"]) == priority_before - priority_now


def test_explain_accepts_every_kind_of_identifier(ws):
    run_ok(ws)
    scores = pl.read_parquet(output_dir(ws) / "scores.parquet")
    person = scores.filter(pl.col("priority") & pl.col("crn").is_not_null() & pl.col("pnc_id").is_not_null()).row(0, named=True)
    outputs = []
    for identifier in (person["person_key"], person["police_person_id"], person["pnc_id"], person["crn"]):
        result = runner.invoke(app, ["explain", identifier, "--config", str(ws / "iom.toml")])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert len(set(outputs)) == 1
    text = outputs[0]
    assert f"score {person['score']}" in text
    for line in person["reasons"].splitlines():
        assert line in text
    assert "Timeline" in text
    missing = runner.invoke(app, ["explain", "NOBODY", "--config", str(ws / "iom.toml")])
    assert missing.exit_code == 8


def test_runs_lists_and_shows(ws):
    run_ok(ws)
    listed = runner.invoke(app, ["runs", "--config", str(ws / "iom.toml")])
    assert listed.exit_code == 0
    run_id = re.search(r"R\d{4}-2026-11-01", listed.output).group(0)
    shown = runner.invoke(app, ["runs", "--config", str(ws / "iom.toml"), "show", run_id])
    assert shown.exit_code == 0
    manifest = json.loads(shown.output)
    assert manifest["run_id"] == run_id and manifest["user"] and manifest["host"] and manifest["code_version"]
    assert runner.invoke(app, ["runs", "--config", str(ws / "iom.toml"), "show", "R9999"]).exit_code == 8


def test_threshold_on_rejected_share_fails_the_run_with_exit_5(ws):
    config = ws / "iom.toml"
    config.write_text(config.read_text().replace("# max_rejected_percent = 5.0", "max_rejected_percent = 0.01"))
    result = iom("run", "--config", str(config), "--as-of", AS_OF.isoformat(), cwd=ws)
    assert result.returncode == 5, result.stderr
    assert "rejected" in result.stderr and "Traceback" not in result.stderr


def test_a_second_run_while_one_holds_the_lock_exits_6(ws):
    from pipeline.lock import workspace_lock

    config = load_config(ws / "iom.toml")
    with workspace_lock(config.warehouse_path):
        started = time.monotonic()
        result = iom("run", "--config", str(ws / "iom.toml"), "--as-of", AS_OF.isoformat(), cwd=ws)
        # "exits within a second": the CLI takes the lock before its heavy imports (margin for a busy CI)
        assert time.monotonic() - started < 1.5
    assert result.returncode == 6 and "locked" in result.stderr


def test_a_run_killed_mid_way_leaves_the_warehouse_usable_and_the_next_run_completes(ws):
    args = [sys.executable, "-m", "cli", "--quiet", "run", "--config", str(ws / "iom.toml"), "--as-of",
            AS_OF.isoformat()]
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ws)}
    for delay in (1.5, 3.0):
        proc = subprocess.Popen(args, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = iom("run", "--config", str(ws / "iom.toml"), "--as-of", AS_OF.isoformat(), cwd=ws)
    assert result.returncode == 0, result.stderr
    scores = output_dir(ws) / "scores.csv"
    with scores.open() as handle:
        assert sum(1 for _ in csv.reader(handle)) > 100
    assert not list((ws / "outputs").glob(".tmp-*"))


def test_logs_of_a_full_demo_hold_no_names_or_identifiers(tmp_path):
    log_file = tmp_path / "logs" / "iom.jsonl"
    result = iom("--log-format", "json", "--log-file", str(log_file), "demo", "--dir", str(tmp_path / "demo"),
                 "--people", "800", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log_lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert len(log_lines) > 5
    assert oct(log_file.stat().st_mode & 0o777) == oct(0o600)
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == log_lines
    logs = "\n".join(line["message"] for line in log_lines)
    config = load_config(tmp_path / "demo" / "iom.toml")
    from pipeline.warehouse import connect

    con = connect(config, read_only=True)
    try:
        values = set()
        for table, columns in {
            "src_police_nominals": ["police_person_id", "pnc_id", "cro_number", "surname", "forenames"],
            "src_probation_cases": ["crn", "pnc_id", "nomis_id", "surname", "forenames"],
            "src_prison_custody": ["nomis_id", "pnc_id", "surname", "forenames", "spell_id"],
            "src_police_offences": ["offence_id"],
        }.items():
            for column in columns:
                values |= {v for (v,) in con.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()}
        dobs = {d.isoformat() for (d,) in con.execute("SELECT DISTINCT date_of_birth FROM src_police_nominals").fetchall()}
    finally:
        con.close()
    words = set(re.findall(r"[\w'’/-]+", logs))
    leaked = {v for v in values | dobs if v in words or (len(v) > 6 and v in logs)}
    assert not leaked, sorted(leaked)[:10]


def test_settled_summary_gives_the_features_of_every_row_on_generated_data(ws):
    """Generated histories (ten years, late outcomes, several sanctions per person) give the
    same features from the settled summary as from every offence row."""
    from polars.testing import assert_frame_equal

    from features.build import _history_applies, compute_features
    from features.reference import load_offence_reference
    from pipeline.warehouse import connect
    from pipeline.workspace import ingest_workspace
    from rules.schema import load_rules

    config = load_config(ws / "iom.toml")
    ingest_workspace(config)
    rules, reference = load_rules("default"), load_offence_reference()
    con = connect(config, read_only=True)
    try:
        settled, rows = con.execute("SELECT count(*) FILTER (settled), count(*) FROM offence_facts").fetchone()
        assert 0 < settled < rows
        assert _history_applies(con, AS_OF)
        for as_of in (AS_OF, date(2026, 10, 1), date(2025, 2, 14)):
            for counted in (rules.counted_outcomes, ["convicted", "cautioned"]):
                summarised = compute_features(con, as_of, reference, counted, rules.unknown_offence)
                every_row = compute_features(con, as_of, reference, counted, rules.unknown_offence,
                                             settled_history=False)
                assert_frame_equal(summarised, every_row)
    finally:
        con.close()
