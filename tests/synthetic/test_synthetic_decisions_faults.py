"""The simulated panel's decisions name only people whose police record survives validation:
with faults injected (the default rate, and a high one that is sure to hit decided people), the
whole file is accepted by `iom decisions import`."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_config
from pipeline.warehouse import connect
from pipeline.workspace import generate_workspace, ingest_workspace

pytestmark = pytest.mark.slow  # generated workspaces, ingested

runner = CliRunner()


@pytest.mark.parametrize(("people", "fault_rate"), [(20_000, 0.002), (4_000, 0.05)])
def test_the_past_decisions_of_a_faulted_world_are_all_imported(tmp_path, people, fault_rate):
    data, config_path = generate_workspace(tmp_path, people, 3, date(2026, 12, 1), fault_rate)
    config = load_config(config_path)
    ingest_workspace(config)
    con = connect(config)
    try:
        quarantined = con.execute("SELECT count(*) FROM rejected_rows WHERE source = 'police_nominals'").fetchone()[0]
    finally:
        con.close()
    assert quarantined > 0  # the world has faulted nominals to avoid
    decisions = pl.read_csv(data.decisions_path, infer_schema=False)
    result = runner.invoke(app, ["decisions", "import", str(data.decisions_path), "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    con = connect(config)
    try:
        stored = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
    finally:
        con.close()
    assert stored == decisions.height


def test_people_with_a_faulted_nominal_are_left_out_of_the_decisions(tmp_path):
    """Faults come from their own random streams, so the same world with and without them has
    the same panel: with them, the file is the clean world's rows less some (those naming people
    whose nominal was faulted), the others unchanged."""
    clean, _ = generate_workspace(tmp_path / "clean", 4_000, 3, date(2026, 12, 1), 0.0)
    faulted, _ = generate_workspace(tmp_path / "faulted", 4_000, 3, date(2026, 12, 1), 0.05)
    every = pl.read_csv(clean.decisions_path, infer_schema=False)
    kept = pl.read_csv(faulted.decisions_path, infer_schema=False)
    assert 0 < kept.height < every.height
    assert kept.join(every, on=every.columns, how="anti", nulls_equal=True).height == 0
