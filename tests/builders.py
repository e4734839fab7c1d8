"""The one workspace builder for the tests: tiny extracts written into a folder.

`write_workspace` writes the five extracts as canonical CSVs (header only where no rows are
given) and a rendered iom.toml, and returns the loaded Config. `build_warehouse` does that, then
ingests and links, and returns an open warehouse connection. Rows are dicts of canonical column
names; values may be dates, numbers, booleans or strings. The row helpers (`nominal`,
`offence`, `case`, `event`, `spell`, `example_row`) give a valid row with overrides.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config, load_config, render_config
from pipeline.contract import EXTRACTS
from pipeline.identifiers import pnc_check_letter

REPO = Path(__file__).resolve().parents[1]
EXTRACT_DATE = date(2026, 11, 1)
# Late enough for every "after D" row the feature tests add.
LATE_EXTRACT_DATE = date(2027, 6, 30)


# --- rows ------------------------------------------------------------------------------------


def example_row(name: str, **overrides) -> dict[str, str]:
    """The contract's example row of an extract (valid by construction), with overrides."""
    row = {c.name: c.example for c in EXTRACTS[name].columns}
    row.update(overrides)
    return row


def pnc(year: int, serial: int) -> str:
    """A valid long-form PNC id (right check letter)."""
    return f"20{year:02d}/{serial:07d}{pnc_check_letter(year, serial)}"


def nominal(pid: str, **overrides) -> dict:
    row = {
        "police_person_id": pid,
        "surname": "Smith" + "".join(chr(ord("A") + int(c)) for c in pid if c.isdigit()),
        "forenames": "Alex",
        "date_of_birth": date(1990, 6, 15),
        "sex": "M",
        "area": "Northgate",
    }
    row.update(overrides)
    return row


def offence(oid: str, pid: str, offence_date: date, code: str = "028/01", **overrides) -> dict:
    row = {
        "offence_id": oid,
        "police_person_id": pid,
        "offence_date": offence_date,
        "recorded_date": offence_date,
        "ho_offence_code": code,
        "outcome": "charged",
        "outcome_date": offence_date,
    }
    row.update(overrides)
    return row


def case(crn: str, start: date, **overrides) -> dict:
    row = {"crn": crn, "supervision_type": "community_order", "supervision_start": start}
    row.update(overrides)
    return row


def event(crn: str, event_date: date, event_type: str) -> dict:
    return {"crn": crn, "event_date": event_date, "event_type": event_type}


def spell(sid: str, nomis: str, reception: date, **overrides) -> dict:
    row = {"spell_id": sid, "nomis_id": nomis, "reception_date": reception, "custody_type": "sentenced"}
    row.update(overrides)
    return row


# --- files -----------------------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(path: Path, columns: list[str], rows: Iterable[Mapping], delimiter: str = ",",
              encoding: str = "utf-8") -> Path:
    """Rows as a CSV with these columns, in this order; keys not among the columns are left out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _text(row.get(c)) for c in columns})
    return path


def write_extract(path: Path, name: str, rows: Iterable[Mapping]) -> Path:
    """An extract's rows as a canonical CSV; a key that is not a contract column is a test bug."""
    columns = EXTRACTS[name].column_names
    rows = list(rows)
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise KeyError(f"{name}: not contract columns: {sorted(unknown)}")
    return write_csv(path, columns, rows)


def write_workspace(root: Path, rows: Mapping[str, Iterable[Mapping]] | None = None,
                    overrides: Mapping[str, dict] | None = None, extract_date: date = EXTRACT_DATE) -> Config:
    """All five extracts as canonical CSVs in ROOT/extracts (header only unless rows are given), and
    an iom.toml whose [extracts.NAME] sections take `overrides[NAME]`; return the loaded config."""
    rows = rows or {}
    overrides = overrides or {}
    root.mkdir(parents=True, exist_ok=True)
    specs = []
    for name in EXTRACTS:
        write_extract(root / "extracts" / f"{name}.csv", name, rows.get(name, ()))
        spec = {"name": name, "file": f"extracts/{name}.csv", "extract_date": extract_date}
        spec.update(overrides.get(name, {}))
        specs.append(spec)
    (root / "iom.toml").write_text(render_config(specs), encoding="utf-8")
    return load_config(root / "iom.toml")


def build_warehouse(
    root: Path,
    *,
    nominals: Iterable[dict] = (),
    offences: Iterable[dict] = (),
    cases: Iterable[dict] = (),
    events: Iterable[dict] = (),
    custody: Iterable[dict] = (),
    extract_date: date = LATE_EXTRACT_DATE,
    expect_no_rejects: bool = True,
) -> duckdb.DuckDBPyConnection:
    """`write_workspace` with these rows, then ingest and link; return the open warehouse connection."""
    from pipeline.ingest import ingest
    from pipeline.link import link_identities
    from pipeline.warehouse import connect

    config = write_workspace(root, {
        "police_nominals": nominals,
        "police_offences": offences,
        "probation_cases": cases,
        "probation_events": events,
        "prison_custody": custody,
    }, extract_date=extract_date)
    con = connect(config)
    ingest(config, con=con)
    if expect_no_rejects:
        rejects = con.execute("SELECT file_name, line, column_name, reason_code FROM rejects").fetchall()
        assert not rejects, f"test data was rejected: {rejects}"
    link_identities(con)
    return con


# --- reading back ------------------------------------------------------------------------------


def person_key(con: duckdb.DuckDBPyConnection, source: str, source_id: str) -> str:
    row = con.execute(
        "SELECT person_key FROM person_ids WHERE source = ? AND source_id = ?", [source, source_id]
    ).fetchone()
    assert row, f"no person for {source} {source_id}"
    return row[0]


def person_keys_by_record(config: Config) -> dict[str, str]:
    """Every linked record ('source:source_id') and the person key it was given."""
    from pipeline.warehouse import connect

    con = connect(config, read_only=True)
    try:
        return dict(con.execute("SELECT source || ':' || source_id, person_key FROM person_ids").fetchall())
    finally:
        con.close()


def row_of(frame: pl.DataFrame, key: str) -> dict:
    rows = frame.filter(pl.col("person_key") == key).to_dicts()
    assert len(rows) == 1, f"expected one row for {key}, got {len(rows)}"
    return rows[0]


# --- hand-made feature frames for scoring tests ----------------------------------------------


def feature_row(**overrides) -> dict:
    """One person's features with neutral defaults (no offending, no custody, no supervision)."""
    from features.build import FEATURE_SCHEMA

    row = {name: None for name in FEATURE_SCHEMA}
    row.update(
        person_key="P000000000001", age=30, area="Northgate", deceased=False,
        offences_3m=0, offences_12m=0, offences_36m=0, offences_total=0, neighbourhood_12m=0, violence_12m=0,
        distinct_groups_36m=0, seriousness_sum_36m=0, trend_12m=0, prev_12m=0, in_custody=False,
        release_due_90d=False, short_sentences_36m=0, under_supervision=False, breaches_12m=0, recalls_12m=0,
        missed_appointments_12m=0, positive_drug_tests_12m=0, in_police=True, in_probation=False,
        in_prison=False, unknown_offences_36m=0,
    )
    unknown = set(overrides) - set(FEATURE_SCHEMA)
    if unknown:
        raise KeyError(f"not feature columns: {sorted(unknown)}")
    row.update(overrides)
    return row


def feature_frame(rows: Iterable[dict]) -> pl.DataFrame:
    """Rows (dicts from feature_row) as a frame with the dtypes compute_features returns."""
    from features.build import FEATURE_SCHEMA

    return pl.DataFrame(list(rows), schema=FEATURE_SCHEMA)


def without_extracts(config_path: Path, *names: str) -> None:
    """Drop the named extracts' tables from an iom.toml (a partnership holding only some agencies'
    data): `without_extracts(path, "probation_cases", "probation_events")`."""
    prefixes = tuple(f"[extracts.{n}" for n in names)
    kept, skipping = [], False
    for line in config_path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.startswith(prefixes)
        if not skipping:
            kept.append(line)
    config_path.write_text("".join(kept), encoding="utf-8")
