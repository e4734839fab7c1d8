"""The run manifest: its JSON fields are the ones docs/operations.md documents, for completed and
failed runs alike."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

from pipeline.runs import RulesUsed, RunCounts, RunInput, RunManifest

DOCS = Path(__file__).parents[2] / "docs" / "operations.md"


def documented_fields() -> set[str]:
    text = DOCS.read_text().split("## The run manifest", 1)[1].split("\n## ", 1)[0]
    fields = set()
    for cell in re.findall(r"^\| ([^|]+) \|", text, flags=re.M):
        fields.update(re.findall(r"`([a-z_.]+)`", cell))
    return fields


def manifest(status: str) -> RunManifest:
    m = RunManifest(
        run_id="R0001-2026-11-01", as_of=date(2026, 11, 1), started_at=datetime(2026, 11, 2, 6, 30, 0, 999),
        code_version="0.1.0+abc", user="iom", host="box", python="3.11.7",
        inputs=[RunInput("police_nominals", "n.csv", "ab" * 32, 10, 9, 1)], forced=False,
        counts=RunCounts(ingest=[{"source": "police_nominals", "files": 1}], link=[], people=9), relinked=True,
    )
    m.status = status
    if status == "failed":
        m.failure = "validation threshold exceeded: police_nominals (n.csv): 10.0% rejected, limit 5%"
        return m
    m.rules = RulesUsed("default", "2026.1", "cd" * 32)
    m.output_dir = Path("/srv/outputs/R0001-2026-11-01")
    m.counts.assessed, m.counts.stats, m.counts.movement = 9, {"eligible": 8}, {"priority_new": 3}
    m.counts.release_watch, m.counts.unknown_offence_codes = 0, 1
    m.timings, m.finished_at = {"store_s": 0.1}, datetime(2026, 11, 2, 6, 31, 5)
    m.report = {"pack": "pack.html", "workbook": "pack.xlsx", "pseudonymised": False}
    m.fairness = {"ratio_range": [0.8, 1.25], "checked": 4, "flagged": []}
    m.counts.disagreement = {"high_rules_low_model": 3, "low_rules_high_model": 2}
    m.model = {"name": "iom-reoffending", "version": "1", "run_id": "abc", "artefact_sha256": "ef" * 32}
    return m


def keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in d.items():
        out.add(prefix + key)
        if key == "counts":
            out |= keys(value, "counts.")
    return out


def test_every_manifest_field_is_documented_and_every_documented_field_is_written():
    completed, failed = manifest("completed").to_dict(), manifest("failed").to_dict()
    written = keys(completed) | keys(failed)
    documented = documented_fields()
    assert written - {"counts"} == documented - {"counts"}
    assert "failure" not in completed and "rules" not in failed and "timings" not in failed


def test_the_manifest_json_keeps_its_value_formats():
    data = json.loads(manifest("completed").to_json(indent=2))
    assert data["as_of"] == "2026-11-01"
    assert data["started_at"] == "2026-11-02T06:30:00" and data["finished_at"] == "2026-11-02T06:31:05"
    assert data["output_dir"] == "/srv/outputs/R0001-2026-11-01"
    assert data["inputs"] == [{"source": "police_nominals", "file": "n.csv", "sha256": "ab" * 32,
                               "rows_read": 10, "rows_loaded": 9, "rows_rejected": 1}]
    assert data["rules"] == {"name": "default", "version": "2026.1", "sha256": "cd" * 32}
    assert data["model"]["artefact_sha256"] == "ef" * 32 and data["previous_run_id"] is None
    # a failed run's JSON keeps the order it was written in (the runs table stores it unsorted)
    assert list(json.loads(manifest("failed").to_json(sort_keys=False)))[-2:] == ["status", "failure"]
