"""The DuckDB warehouse: one file per workspace holding loads, rejects, people, runs and outputs.

Tables (grain in brackets):
- `loads` [one extract file loaded once]: load id, source, file name, sha256, counts, times.
- `rejects` [one failed check of one row]; `rejected_rows` [one quarantined row, raw text as JSON].
- `src_<extract>` [one loaded row of one load]: typed contract columns plus `_load_id`, `_line`.
- `cur_<extract>` [one current row per natural key]: the latest load wins (materialised by `link`).
- `person_ids`, `people`, `link_report`: identity linking (see `pipeline.link`).
- `offence_codes`, `offence_facts`, `offence_history`, `custody_facts`, `case_facts`, `event_facts`:
  the current rows of linked records by person number, rebuilt with every link (`pipeline.facts`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.contract import EXTRACTS, Extract
from pipeline.errors import WarehouseError
from pipeline.validate import sql_type

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
MEMORY_LIMIT = os.environ.get("IOM_MEMORY_LIMIT", "1536MB")
CATALOG = "wh"


def q(identifier: str) -> str:
    """Quote an SQL identifier (column names come from user mappings: never trust them)."""
    return '"' + identifier.replace('"', '""') + '"'


def src_table(extract: Extract | str) -> str:
    return f"src_{extract if isinstance(extract, str) else extract.name}"


def cur_table(extract: Extract | str) -> str:
    return f"cur_{extract if isinstance(extract, str) else extract.name}"


_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS loads (
        load_id VARCHAR PRIMARY KEY, load_seq BIGINT NOT NULL, source VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL, file_path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
        file_bytes BIGINT, file_format VARCHAR, rows_read BIGINT, rows_loaded BIGINT,
        rows_rejected BIGINT, extract_date DATE, started_at TIMESTAMP, finished_at TIMESTAMP, purged_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS rejects (
        load_id VARCHAR NOT NULL, source VARCHAR NOT NULL, file_name VARCHAR NOT NULL, line BIGINT,
        column_name VARCHAR, value VARCHAR, reason_code VARCHAR NOT NULL, message VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS rejected_rows (
        load_id VARCHAR NOT NULL, source VARCHAR NOT NULL, line BIGINT, raw VARCHAR)""",
]


def _src_ddl(extract: Extract) -> str:
    cols = ", ".join(f"{q(c.name)} {sql_type(c)}" for c in extract.columns)
    return f"CREATE TABLE IF NOT EXISTS {q(src_table(extract))} (_load_id VARCHAR NOT NULL, _line BIGINT, {cols})"


def encryption_key(config: Config) -> str | None:
    variable = config.workspace.encryption_key_env
    if not variable:
        return None
    key = os.environ.get(variable)
    if not key:
        raise WarehouseError(
            f"the warehouse is configured as encrypted but environment variable {variable} is not set",
            hint=f"export {variable}=... with the workspace key (it is never stored in iom.toml)",
        )
    return key


def private_file(path: Path) -> None:
    """Owner-only permissions on files we create (0600) and their folder (0700)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            path.chmod(0o600)
    except PermissionError:  # pragma: no cover - a file we do not own: leave it as it is
        log.warning("could not restrict permissions on %s", path.name)


def _load_crypto(con: duckdb.DuckDBPyConnection) -> None:
    """Load DuckDB's OpenSSL crypto module (the httpfs extension) from the installed wheel.

    Without it DuckDB can only read encrypted files. The extension ships on PyPI
    (duckdb-ext-httpfs), so nothing is downloaded at run time."""
    try:
        import duckdb_ext  # type: ignore[import-not-found]
    except ImportError:
        raise WarehouseError(
            "warehouse encryption needs the duckdb-ext-httpfs package, which is not installed on this platform",
            hint="install iom-cohort on Linux x86-64, or remove encryption_key_env from iom.toml",
        ) from None
    platform_dir = "linux_amd64"
    candidates = [
        Path(p) / "extensions" / f"v{duckdb.__version__}" / platform_dir / "httpfs.duckdb_extension"
        for p in duckdb_ext.__path__
    ]
    for candidate in candidates:
        if candidate.exists():
            con.execute(f"LOAD {_literal(str(candidate))}")
            return
    raise WarehouseError(
        f"no httpfs extension for DuckDB {duckdb.__version__} in duckdb-ext-httpfs",
        hint="reinstall with the locked versions (`uv sync --frozen`)",
    )


def open_warehouse(path: Path, key: str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and create if needed) the warehouse file as catalog `wh`, with the schema in place."""
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(f"no warehouse at {path}", hint="run `iom ingest` or `iom run` first")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    con = duckdb.connect(":memory:")
    if key is not None:
        _load_crypto(con)
    elif path.exists() and _is_encrypted(path):
        con.close()
        raise WarehouseError(
            f"the warehouse {path.name} is encrypted and no key was given",
            hint="set workspace.encryption_key_env in iom.toml and export that variable with the key",
        )
    options = []
    if key is not None:
        options.append(f"ENCRYPTION_KEY {_literal(key)}")  # ATTACH takes no bound parameters
    if read_only:
        options.append("READ_ONLY")
    sql = f"ATTACH {_literal(str(path))} AS {CATALOG}" + (f" ({', '.join(options)})" if options else "")
    try:
        con.execute(sql)
    except duckdb.Error as exc:
        con.close()
        text = str(exc)
        if "encrypt" in text.lower() or "key" in text.lower():
            raise WarehouseError(
                f"cannot open the warehouse {path.name}: it is encrypted and the key is missing or wrong",
                hint="set the environment variable named by workspace.encryption_key_env to the right key",
            ) from None
        raise WarehouseError(f"cannot open the warehouse {path}: {text.splitlines()[0]}") from None
    con.execute(f"USE {CATALOG}")
    # Bounded memory (big joins and sorts spill to disk) and no order bookkeeping on inserts:
    # every query that feeds an output says its ORDER BY.
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = false")
    if not read_only:
        ensure_schema(con)
        private_file(path)
    return con


def _is_encrypted(path: Path) -> bool:
    """DuckDB marks encrypted files in the main header; a plain read avoids a confusing error."""
    probe = duckdb.connect(":memory:")
    try:
        probe.execute(f"ATTACH {_literal(str(path))} AS probe (READ_ONLY)")
        return False
    except duckdb.Error as exc:
        return "encrypt" in str(exc).lower()
    finally:
        probe.close()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in _DDL:
        con.execute(ddl)
    for extract in EXTRACTS.values():
        con.execute(_src_ddl(extract))
    con.execute(
        "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING", [SCHEMA_VERSION]
    )


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a failure leaves the warehouse exactly as it was."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A second connection to the same open warehouse, for a query run from another thread."""
    second = con.cursor()
    second.execute(f"USE {CATALOG}")
    return second


def connect(config: Config, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    return open_warehouse(config.warehouse_path, encryption_key(config), read_only=read_only)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?", [CATALOG, name]
    ).fetchone()
    return bool(row and row[0])
