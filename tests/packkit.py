"""A generated workspace whose people carry hostile names, run for two months (shared by the
panel pack, workbook and browser tests)."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

from pipeline.config import load_config
from pipeline.run import run_period
from pipeline.workspace import generate_workspace

MONTHS = (date(2026, 10, 1), date(2026, 11, 1))
HOSTILE = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    '=HYPERLINK("http://example.invalid/x","click")',
    "+SUM(1,2)",
    "@cmd",
    "-Smith",
)


def _canonical_to_source(config, extract: str) -> dict[str, str]:
    return {canonical: source for source, canonical in config.extracts[extract].columns.items()}


def _read(config, extract: str) -> tuple[list[dict], list[str]]:
    spec = config.extracts[extract]
    with config.resolve(spec.file).open(encoding=spec.encoding, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=spec.delimiter))
    return rows, list(rows[0])


def poison_names(root: Path, people: int = 60) -> None:
    """Give the `people` police nominals with the most offences (so the cohort surely holds some
    of each) a hostile surname and forenames, cycling through HOSTILE."""
    config = load_config(root / "iom.toml")
    offences, _ = _read(config, "police_offences")
    offence_id = _canonical_to_source(config, "police_offences")["police_person_id"]
    counts: dict[str, int] = {}
    for row in offences:
        counts[row[offence_id]] = counts.get(row[offence_id], 0) + 1
    prolific = sorted(counts, key=lambda pid: (-counts[pid], pid))[:people]
    hostile = {pid: HOSTILE[i % len(HOSTILE)] for i, pid in enumerate(prolific)}
    spec = config.extracts["police_nominals"]
    columns = _canonical_to_source(config, "police_nominals")
    rows, fields = _read(config, "police_nominals")
    for row in rows:
        name = hostile.get(row[columns["police_person_id"]])
        if name is not None:
            row[columns["surname"]] = row[columns["forenames"]] = name
    with config.resolve(spec.file).open("w", encoding=spec.encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter=spec.delimiter)
        writer.writeheader()
        writer.writerows(rows)


def build(root: Path, people: int = 1500, seed: int = 11) -> Path:
    generate_workspace(root, people=people, seed=seed, extract_date=MONTHS[-1], fault_rate=0.002)
    poison_names(root)
    config = load_config(root / "iom.toml")
    for as_of in MONTHS:
        run_period(config, as_of)
    return root


def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    # The run register holds absolute output folders; point them at the copy.
    import duckdb

    con = duckdb.connect(str(target / "warehouse.duckdb"))
    con.execute("UPDATE runs SET output_dir = replace(output_dir, ?, ?)", [str(source), str(target)])
    con.close()
    return target


def latest_output(root: Path) -> Path:
    return sorted(p for p in (root / "outputs").iterdir() if p.name.startswith("R"))[-1]
