"""Start-up: the quick commands import none of the heavy libraries (pandera, scikit-learn, MLflow, Splink).

Checked in a fresh interpreter each, since this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from builders import write_workspace

from pipeline.warehouse import connect

REPO = Path(__file__).parents[2]
HEAVY = ("pandera", "sklearn", "mlflow", "splink")

_PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["iom", *json.loads(sys.argv[1])]
import cli
try:
    cli.app()
except SystemExit as done:
    code = done.code
print(json.dumps({"exit": code, "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(heavy))}))
"""


def loaded_after(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def config_path(tmp_path) -> str:
    config = write_workspace(tmp_path)
    connect(config).close()
    return str(config.path)


def test_help_imports_no_heavy_library():
    result = loaded_after("--help")
    assert result == {"exit": 0, "loaded": []}


def test_runs_imports_no_heavy_library(config_path):
    result = loaded_after("runs", "--config", config_path)
    assert result == {"exit": 0, "loaded": []}


def test_explain_imports_no_heavy_library(config_path):
    result = loaded_after("explain", "P000000000000", "--config", config_path)
    assert result["exit"] == 8  # no run yet: but the command's imports have all happened
    assert result["loaded"] == []


@pytest.mark.slow
def test_the_probe_sees_a_heavy_import(config_path):
    # the same probe on a command that validates extracts sees pandera: the checks above can fail
    result = loaded_after("ingest", "--config", config_path)
    assert result == {"exit": 0, "loaded": ["pandera"]}
