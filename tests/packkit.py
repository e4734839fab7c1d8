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


def poison_names(root: Path, every: int = 3) -> None:
    """Give every `every`-th police nominal a hostile surname and forenames."""
    config = load_config(root / "iom.toml")
    spec = config.extracts["police_nominals"]
    path = config.resolve(spec.file)
    columns = _canonical_to_source(config, "police_nominals")
    with path.open(encoding=spec.encoding, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=spec.delimiter))
    fields = list(rows[0])
    for i, row in enumerate(rows):
        if i % every == 0:
            row[columns["surname"]] = row[columns["forenames"]] = HOSTILE[(i // every) % len(HOSTILE)]
    with path.open("w", encoding=spec.encoding, newline="") as handle:
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
