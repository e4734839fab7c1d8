"""The command line: help for every command, exit codes, messages that name file and column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from builders import example_row, write_csv
from typer.testing import CliRunner

from cli import app
from pipeline.contract import EXTRACTS
from pipeline.errors import EXIT_CODES

runner = CliRunner()


def command_names() -> list[str]:
    import typer.main

    group = typer.main.get_group(app)
    return sorted(group.commands)


@pytest.mark.parametrize("command", command_names())
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.strip().splitlines()) > 3


def test_init_writes_a_commented_config_that_loads(tmp_path):
    from pipeline.config import load_config

    result = runner.invoke(app, ["init", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "ws" / "iom.toml")
    assert set(config.extracts) == set(EXTRACTS)
    text = (tmp_path / "ws" / "iom.toml").read_text()
    assert text.count("#") > 30  # commented for the analyst who edits it
    again = runner.invoke(app, ["init", str(tmp_path / "ws")])
    assert again.exit_code == 2 and "--force" in again.output


def test_config_errors_name_the_file_and_key(tmp_path):
    runner.invoke(app, ["init", str(tmp_path)])
    config = tmp_path / "iom.toml"
    config.write_text(config.read_text().replace('format = "csv"', 'format = "xls"', 1))
    result = runner.invoke(app, ["ingest", "--config", str(config)])
    assert result.exit_code == 3
    assert "iom.toml" in result.output and "extracts.police_nominals.format" in result.output
    assert "csv" in result.output  # what is allowed


def test_missing_config_is_a_config_error(tmp_path):
    result = runner.invoke(app, ["ingest", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 3 and "nope.toml" in result.output


def _iom(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"}, timeout=120)


@pytest.mark.slow
def test_subprocess_bad_file_exit_code_names_file_and_column(tmp_path):
    runner.invoke(app, ["init", str(tmp_path)])
    for name, extract in EXTRACTS.items():
        columns = [c for c in extract.column_names if not (name == "police_offences" and c == "ho_offence_code")]
        write_csv(tmp_path / "extracts" / f"{name}.csv", columns, [example_row(name)])
    result = _iom("ingest", "--config", str(tmp_path / "iom.toml"), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "police_offences.csv" in result.stderr and "ho_offence_code" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "warehouse.duckdb").exists() or _load_count(tmp_path) == 0


def _load_count(root: Path) -> int:
    from pipeline.warehouse import open_warehouse

    con = open_warehouse(root / "warehouse.duckdb")
    try:
        return con.execute("SELECT count(*) FROM loads").fetchone()[0]
    finally:
        con.close()


def test_subprocess_usage_error_exit_code(tmp_path):
    result = _iom("ingest", "--no-such-option", cwd=tmp_path)
    assert result.returncode == 2


def test_exit_code_table_is_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for code, name, _ in EXIT_CODES:
        assert f"| {code} | {name} |" in readme


def test_rejects_command_lists_each_failure_with_file_line_and_column(tmp_path):
    from builders import write_workspace

    from pipeline.ingest import ingest

    config = write_workspace(tmp_path, {"police_offences": [
        example_row("police_offences"), example_row("police_offences", offence_id="CR2", outcome="arrested")]})
    ingest(config)
    target = tmp_path / "rejects.csv"
    result = runner.invoke(app, ["rejects", "--config", str(config.path), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "not_allowed_value" in result.output and "police_offences.csv" in result.output
    written = target.read_text().splitlines()
    assert len(written) == 2 and ",3,outcome,arrested,not_allowed_value," in written[1]


@pytest.mark.slow
def test_demo_runs_the_evidence_steps_and_no_evidence_skips_them(tmp_path):
    full = runner.invoke(app, ["demo", "--dir", str(tmp_path / "full"), "--people", "600"])
    assert full.exit_code == 0, full.output
    for step in ("Past panel decisions of the simulated scheme imported", "Back-test B", "Impact I", "Training T",
                 "advisory model: iom-reoffending version"):
        assert step in full.output, step
    made = {p.name.split("-")[0] for p in (tmp_path / "full" / "outputs").iterdir()}
    assert {"backtest", "impact", "train"} <= made

    quick = runner.invoke(app, ["demo", "--dir", str(tmp_path / "quick"), "--people", "600", "--no-evidence"])
    assert quick.exit_code == 0, quick.output
    assert "Back-test B" not in quick.output and "Training T" not in quick.output
    assert all(p.name.startswith("R") for p in (tmp_path / "quick" / "outputs").iterdir())
