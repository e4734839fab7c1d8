"""`iom generate`: the world's options on the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli import app
from pipeline.errors import UsageError

runner = CliRunner()


def test_generate_writes_the_truth_and_past_decisions_with_the_asked_effect(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "ws"), "--people", "400", "--seed", "3",
                                 "--extract-date", "2026-10-01", "--treatment-effect", "0.3"])
    assert result.exit_code == 0, result.output
    world = json.loads((tmp_path / "ws" / "truth" / "world.json").read_text())
    assert world["treatment_effect"] == 0.3 and world["people"] == 400
    assert (tmp_path / "ws" / "decisions" / "past_decisions.csv").is_file()
    assert "Truth (never read by the pipeline)" in result.output
    config = (tmp_path / "ws" / "iom.toml").read_text()
    assert "truth" not in config and "past_decisions" not in config


def test_generate_without_a_scheme_or_identity_noise(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "ws"), "--people", "300",
                                 "--no-past-decisions", "--identity-noise", "0"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "ws" / "decisions").exists()
    world = json.loads((tmp_path / "ws" / "truth" / "world.json").read_text())
    assert world["treatment_effect"] is None
    assert not any(world["counts"]["corruptions"].values())


def test_generate_refuses_an_effect_outside_zero_to_one(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "ws"), "--people", "100",
                                 "--treatment-effect", "1.5"])
    assert result.exit_code == UsageError.exit_code
    assert "--treatment-effect" in result.output
    assert not (tmp_path / "ws" / "extracts").exists()
