"""The DuckDB warehouse: one file per workspace, opened here, with its schema in place.

The tables, the schema version and the migrations are declared in `pipeline.schema`; this
module opens the file (encrypted or not), upgrades an older schema in place, refuses a newer one,
and runs every SQL statement of the pipeline through `run_sql`, which names the step in the
debug log and in any error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.errors import WarehouseError, note_step
from pipeline.schema import (
    FSST,
    MIGRATIONS,
    SCHEMA_VERSION,
    VERSION_KEY,
    cur_table,
    pending_migrations,
    q,
    src_table,
    table_ddl,
    version_number,
)

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "connect", "cur_table", "q", "run_sql", "src_table", "table_exists", "transaction"]

MEMORY_LIMIT = os.environ.get("IOM_MEMORY_LIMIT", "1536MB")
CATALOG = "wh"


def run_sql(con: duckdb.DuckDBPyConnection, step: str, sql: str, params=None) -> duckdb.DuckDBPyConnection:
    """Run one named SQL step: the step is logged at debug, and a DuckDB error raised by it
    carries the step's name (a note on the exception; the CLI logs it for an internal error)."""
    log.debug("sql step: %s", step)
    try:
        return con.execute(sql) if params is None else con.execute(sql, params)
    except duckdb.Error as exc:
        note_step(exc, step)
        raise


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
    try:
        version = check_version(con)
        if not read_only:
            ensure_schema(con, version)
    except BaseException:
        con.close()
        raise
    # Bounded memory (big joins and sorts spill to disk) and no order bookkeeping on inserts:
    # every query that feeds an output says its ORDER BY.
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = false")
    if not read_only:
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


def stored_version(con: duckdb.DuckDBPyConnection) -> str | None:
    """The schema version the open warehouse records (None: a new, empty file)."""
    if not table_exists(con, "meta"):
        return None
    row = run_sql(con, "read schema version",  # a literal, not a parameter: see table_exists
                  f"SELECT value FROM meta WHERE key = {_literal(VERSION_KEY)}").fetchone()
    return row[0] if row else None


def check_version(con: duckdb.DuckDBPyConnection) -> str | None:
    """Refuse a warehouse written by newer code (its tables may mean what this code cannot know)."""
    version = stored_version(con)
    if version is not None and version_number(version) > version_number(SCHEMA_VERSION):
        raise WarehouseError(
            f"the warehouse has schema version {version}, newer than this code's schema version {SCHEMA_VERSION}",
            hint="use the iom-cohort version that wrote this warehouse (or a newer one); "
            "older code must not read or change it",
        )
    return version


def text_compression(con: duckdb.DuckDBPyConnection) -> str:
    """The compression clause for nearly unique text (identifiers, names) in the open warehouse:
    `schema.FSST` where its storage version has FSST as a method of its own (before 1.3), else none."""
    row = run_sql(con, "schema: storage version", "SELECT tags['storage_version'] FROM duckdb_databases() "
                  "WHERE database_name = current_database()").fetchone()
    found = re.match(r"v(\d+)\.(\d+)", (row[0] or "") if row else "")
    return FSST if found and (int(found[1]), int(found[2])) < (1, 3) else ""


def ensure_schema(con: duckdb.DuckDBPyConnection, version: str | None = None) -> None:
    """Bring an open, writable warehouse to SCHEMA_VERSION: create a new one, or upgrade an older
    one in place with the migrations it has not had, in order, in one transaction."""
    version = check_version(con) if version is None else version
    if version == SCHEMA_VERSION:
        # Idempotent and cheap: a src table of an extract the contract added appears.
        for step, ddl in table_ddl(text_compression(con)):
            run_sql(con, f"schema: {step}", ddl)
        return
    # A new file gets today's tables, which hold every migration already.
    pending = MIGRATIONS if version is None else pending_migrations(version)
    now = datetime.now(UTC).replace(tzinfo=None)
    with transaction(con):
        if version is not None:
            for migration in pending:
                log.info("upgrading the warehouse schema from version %s to %s: %s",
                         migration.from_version, migration.to_version, migration.name)
                for number, statement in enumerate(migration.statements, start=1):
                    run_sql(con, f"migration {migration.name} ({number})", statement)
        for step, ddl in table_ddl(text_compression(con)):
            run_sql(con, f"schema: {step}", ddl)
        for migration in pending:
            run_sql(con, "schema: record migration",
                    "INSERT INTO schema_migrations VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [migration.name, migration.to_version, now])
        run_sql(con, "schema: record version", "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [VERSION_KEY, SCHEMA_VERSION])


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
    # Table names come from the code, quoted as literals: binding any parameter makes DuckDB
    # import numpy and pandas (0.3 s), which `iom runs` would pay for nothing.
    row = run_sql(
        con, "table exists",
        f"SELECT count(*) FROM duckdb_tables() WHERE database_name = {_literal(CATALOG)} "
        f"AND table_name = {_literal(name)}",
    ).fetchone()
    return bool(row and row[0])
