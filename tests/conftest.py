"""Shared fixtures: tiny workspaces written into tmp_path."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from pipeline.config import load_config, render_config
from pipeline.contract import EXTRACTS

EXTRACT_DATE = date(2026, 11, 1)


def example_row(name: str, **overrides) -> dict[str, str]:
    row = {c.name: c.example for c in EXTRACTS[name].columns}
    row.update(overrides)
    return row


def write_csv(path: Path, columns: list[str], rows: list[dict], delimiter: str = ",", encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def make_workspace(root: Path, rows: dict[str, list[dict]] | None = None, overrides: dict[str, dict] | None = None):
    """Write all five extracts as canonical CSVs (header only unless rows are given) and iom.toml."""
    rows = rows or {}
    overrides = overrides or {}
    specs = []
    for name, extract in EXTRACTS.items():
        path = root / "extracts" / f"{name}.csv"
        write_csv(path, extract.column_names, rows.get(name, []))
        spec = {"name": name, "file": f"extracts/{name}.csv", "extract_date": EXTRACT_DATE}
        spec.update(overrides.get(name, {}))
        specs.append(spec)
    (root / "iom.toml").write_text(render_config(specs), encoding="utf-8")
    return load_config(root / "iom.toml")


@pytest.fixture
def workspace(tmp_path: Path):
    def build(rows=None, overrides=None):
        return make_workspace(tmp_path, rows, overrides)

    return build
