"""Ingest: read every configured extract, validate it, load good rows and quarantine bad ones.

Per file: preflight (exists, readable, header, required columns) for *all* files first, so a bad
file stops the command before anything is written; then one transaction per command loads every
new file. A file already loaded (same source and sha256) is a reported no-op. For every load,
rows read = rows loaded + rows rejected is checked before commit.
"""

from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from pipeline.config import Config, ExtractConfig
from pipeline.contract import EXTRACTS, Extract
from pipeline.errors import InputFileError, IomError
from pipeline.validate import LINE, ParseOptions, build_schema, normalise, validate_batch, with_messages
from pipeline.warehouse import connect, q, src_table, transaction

log = logging.getLogger(__name__)

BATCH_ROWS = 500_000
Progress = Callable[[str, int, int | None], None]  # (label, rows done, rows total or None)


@dataclass
class LoadResult:
    source: str
    file_name: str
    load_id: str
    status: str  # "loaded" or "unchanged"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    absent_optional_columns: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    extract: Extract
    settings: ExtractConfig
    path: Path
    sha256: str
    mixed_newlines: bool
    fmt: str
    header: list[str]  # the file's column names, in order
    rename: dict[str, str]  # file column -> canonical
    ignored: list[str]
    absent_optional: list[str]


# --- files --------------------------------------------------------------------------------


def resolve_files(config: Config, name: str) -> list[Path]:
    settings = config.extracts[name]
    pattern = str(config.resolve(settings.file))
    if glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(pattern))
        if not paths:
            raise InputFileError(
                f"{name}: no file matches {settings.file!r} (looked in {config.root})",
                hint=f"put the extract there or change [extracts.{name}].file in {config.path.name}",
            )
        return paths
    path = Path(pattern)
    if not path.exists():
        raise InputFileError(
            f"{name}: file not found: {path}",
            hint=f"put the extract there or change [extracts.{name}].file in {config.path.name}",
        )
    return [path]


def _check_readable(name: str, path: Path) -> None:
    if path.is_dir():
        raise InputFileError(
            f"{name}: {path} is a directory, not a file",
            hint=f"point [extracts.{name}].file at the extract file itself (a glob such as 'dir/*.csv' is allowed)",
        )
    if not os.access(path, os.R_OK):
        raise InputFileError(
            f"{name}: {path} cannot be read (permission denied)",
            hint="check the file's owner and permissions for the account running iom",
        )
    if path.stat().st_size == 0:
        raise InputFileError(
            f"{name}: {path} is empty (0 bytes)",
            hint="the export may have failed; export the extract again",
        )


def file_sha256(path: Path) -> str:
    return _scan_file(path)[0]


def _scan_file(path: Path) -> tuple[str, bool]:
    """sha256 of the bytes, and whether line endings are mixed (CRLF and bare LF in one file)."""
    digest = hashlib.sha256()
    crlf = lf = 0
    previous = b""
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(chunk)
            lf += chunk.count(b"\n")
            crlf += chunk.count(b"\r\n") + (previous == b"\r" and chunk[:1] == b"\n")
            previous = chunk[-1:]
    return digest.hexdigest(), 0 < crlf < lf


def _decode_error(name: str, path: Path, encoding: str, detail: str) -> InputFileError:
    other = "cp1252" if encoding.startswith("utf") else "utf-8"
    return InputFileError(
        f"{name}: {path} is not valid {encoding} text ({detail})",
        hint=f"set [extracts.{name}].encoding (e.g. \"{other}\") to match how the file was exported",
    )


def _utf8_copy(name: str, path: Path, encoding: str, mixed_newlines: bool, workdir: Path) -> Path:
    """DuckDB's strict CSV reader wants UTF-8 and one kind of line ending: copy the file once,
    in large chunks, when it has another encoding or mixed CRLF / LF endings."""
    if encoding in ("utf-8", "utf-8-sig") and not mixed_newlines:
        return path
    target = workdir / (path.stem + ".utf8.csv")
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    pending_cr = False
    try:
        with path.open("rb") as source, target.open("w", encoding="utf-8", newline="") as sink:
            for chunk in iter(lambda: source.read(16 * 1024 * 1024), b""):
                text = decoder.decode(chunk)
                if mixed_newlines:
                    if pending_cr:
                        text = "\r" + text
                    pending_cr = text.endswith("\r")
                    text = (text[:-1] if pending_cr else text).replace("\r\n", "\n")
                sink.write(text)
                offset += len(chunk)
            sink.write(decoder.decode(b"", final=True) + ("\r" if pending_cr else ""))
    except UnicodeDecodeError as exc:
        raise _decode_error(name, path, encoding, f"undecodable byte at offset {offset + exc.start}") from None
    return target


def _csv_header(name: str, path: Path, settings: ExtractConfig) -> list[str]:
    encoding = "utf-8-sig" if settings.encoding.startswith("utf-8") else settings.encoding
    try:
        with path.open("r", encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=settings.delimiter)
            header: list[str] = []
            for _ in range(settings.header_row):
                header = next(reader, [])
    except UnicodeDecodeError as exc:
        raise _decode_error(name, path, settings.encoding, f"in the header: {exc.reason}") from None
    except csv.Error as exc:
        raise InputFileError(f"{name}: {path}: the header line cannot be parsed: {exc}") from None
    if not header or all(not h.strip() for h in header):
        raise InputFileError(
            f"{name}: {path} has no header line (line {settings.header_row} is empty)",
            hint=f"the first line must name the columns; set [extracts.{name}].header_row if a title sits above it",
        )
    return [h.strip() for h in header]


def _xlsx_frame(name: str, path: Path, settings: ExtractConfig) -> pl.DataFrame:
    try:
        frame = pl.read_excel(
            path,
            sheet_name=settings.sheet,
            engine="calamine",
            read_options={"header_row": settings.header_row - 1},
            infer_schema_length=0,
            drop_empty_rows=False,
            raise_if_empty=False,
        )
    except Exception as exc:  # calamine raises its own types for every kind of damage
        raise InputFileError(
            f"{name}: {path} cannot be read as an Excel workbook: {str(exc).splitlines()[0][:200]}",
            hint="check the file opens in Excel, and [extracts.{name}].sheet / header_row",
        ) from None
    return frame


def _parquet_header(name: str, path: Path) -> list[str]:
    try:
        return [
            row[0]
            for row in duckdb.connect().execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        ]
    except duckdb.Error as exc:
        raise InputFileError(
            f"{name}: {path} cannot be read as Parquet: {str(exc).splitlines()[0][:200]}",
            hint=f"check the file, or set [extracts.{name}].format to match it",
        ) from None


def _plan(config: Config, name: str, path: Path) -> _Planned:
    extract = EXTRACTS[name]
    settings = config.extracts[name]
    _check_readable(name, path)
    fmt = settings.format_for(path)
    if fmt == "csv":
        header = _csv_header(name, path, settings)
    elif fmt == "parquet":
        header = _parquet_header(name, path)
    else:
        header = [str(c) for c in _xlsx_frame(name, path, settings).columns]

    mapping = dict(settings.columns) or {c: c for c in extract.column_names}
    # Columns named canonically need no mapping line.
    for canonical in extract.column_names:
        if canonical in header and canonical not in mapping and canonical not in mapping.values():
            mapping[canonical] = canonical
    seen: dict[str, int] = {}
    for column in header:
        seen[column] = seen.get(column, 0) + 1
    rename: dict[str, str] = {}
    for column in header:
        if column in mapping:
            if seen[column] > 1:
                raise InputFileError(
                    f"{name}: {path}: column \"{column}\" appears {seen[column]} times in the header",
                    hint="remove or rename the duplicate column in the export",
                )
            rename[column] = mapping[column]
    missing = [c for c in extract.required_columns if c not in rename.values()]
    if missing:
        expected = {v: k for k, v in mapping.items()}
        detail = ", ".join(f"'{m}' (expected in the file as \"{expected.get(m, m)}\")" for m in missing)
        found = ", ".join(f'"{h}"' for h in header[:15]) + (" ..." if len(header) > 15 else "")
        hint = f"map the file's column names in [extracts.{name}.columns] of {config.path.name}"
        if len(header) == 1 and any(d in header[0] for d in ",;|\t" if d != settings.delimiter):
            hint = f"the header is one column: check [extracts.{name}].delimiter (now {settings.delimiter!r})"
        raise InputFileError(
            f"{name}: {path}: required column missing: {detail}; columns found: {found}", hint=hint
        )
    ignored = [h for h in header if h not in rename]
    absent = [c for c in extract.column_names if c not in rename.values()]
    sha256, mixed_newlines = _scan_file(path)
    return _Planned(extract, settings, path, sha256, mixed_newlines, fmt, header, rename, ignored, absent)


# --- reading batches of text -----------------------------------------------------------------


def _canonical_text(frame: pl.DataFrame, plan: _Planned) -> pl.DataFrame:
    """Rename to canonical names, add absent optional columns as empty, keep the raw text."""
    frame = frame.rename({k: v for k, v in plan.rename.items() if k in frame.columns})
    missing = [pl.lit(None, dtype=pl.Utf8).alias(c) for c in plan.extract.column_names if c not in frame.columns]
    if missing:
        frame = frame.with_columns(missing)
    return frame.select(LINE, *[pl.col(c).cast(pl.Utf8) for c in plan.extract.column_names])


@dataclass
class _Malformed:
    line: int
    raw: str
    message: str


def _read_batches(plan: _Planned, workdir: Path) -> tuple[Iterator[pl.DataFrame], Callable[[], list[_Malformed]]]:
    """Yield text batches with a provisional `_line`; afterwards, the rows the reader could not parse."""
    settings = plan.settings
    malformed: list[_Malformed] = []
    if plan.fmt == "xlsx":
        frame = _xlsx_frame(plan.extract.name, plan.path, settings)
        frame = frame.rename(dict(zip(frame.columns, plan.header, strict=True)))
        frame = frame.with_row_index(LINE, offset=settings.header_row + 1).with_columns(pl.col(LINE).cast(pl.Int64))
        frame = frame.with_columns(pl.col(c).str.replace(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$", "$1") for c in plan.header)
        return iter([_canonical_text(frame, plan)] if frame.height else []), lambda: malformed

    reader_con = duckdb.connect(":memory:")
    reader_con.execute("SET preserve_insertion_order = true")
    if plan.fmt == "parquet":
        cols = ", ".join(f"CAST({q(h)} AS VARCHAR) AS {q(h)}" for h in plan.header)
        query = f"SELECT {cols} FROM read_parquet(?)"
        params: list = [str(plan.path)]
        first_line = 1
    else:
        source = _utf8_copy(plan.extract.name, plan.path, settings.encoding, plan.mixed_newlines, workdir)
        positional = {f"c{i}": "VARCHAR" for i in range(len(plan.header))}
        query = (
            "SELECT * FROM read_csv(?, header = true, delim = ?, quote = '\"', escape = '\"', "
            "skip = ?, columns = ?, auto_detect = false, store_rejects = true, "
            "null_padding = false, strict_mode = true, max_line_size = 4194304)"
        )
        params = [str(source), settings.delimiter, settings.header_row - 1, positional]
        first_line = settings.header_row + 1
    names = [f"c{i}" for i in range(len(plan.header))] if plan.fmt == "csv" else plan.header

    def batches() -> Iterator[pl.DataFrame]:
        try:
            relation = reader_con.sql(query, params=params)
            reader = relation.fetch_record_batch(BATCH_ROWS)
            done = 0
            for record_batch in reader:
                frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
                assert isinstance(frame, pl.DataFrame)
                frame = frame.rename(dict(zip(names, plan.header, strict=True)))
                frame = frame.with_row_index(LINE, offset=first_line + done).with_columns(pl.col(LINE).cast(pl.Int64))
                done += frame.height
                yield _canonical_text(frame, plan)
        except duckdb.Error as exc:
            text = str(exc)
            if "unicode" in text.lower() or "encod" in text.lower():
                raise _decode_error(plan.extract.name, plan.path, settings.encoding, text.splitlines()[0][:160]) from None
            raise InputFileError(
                f"{plan.extract.name}: {plan.path} cannot be read: {text.splitlines()[0][:200]}",
                hint=f"check the file and [extracts.{plan.extract.name}] format, delimiter and encoding",
            ) from None
        if plan.fmt == "csv":
            for line, raw, message in reader_con.execute(
                "SELECT line, csv_line, error_type || ': ' || error_message FROM reject_errors ORDER BY line"
            ).fetchall():
                malformed.append(_Malformed(int(line), raw, message))

    return batches(), lambda: _dedupe(malformed)


def _dedupe(rows: list[_Malformed]) -> list[_Malformed]:
    """A row DuckDB rejects for several reasons appears once per reason; keep the first."""
    seen: dict[int, _Malformed] = {}
    for row in rows:
        seen.setdefault(row.line, row)
    return list(seen.values())


# --- loading ---------------------------------------------------------------------------------


def _register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register(name, frame.to_arrow())


def _load_file(con: duckdb.DuckDBPyConnection, plan: _Planned, workdir: Path, progress: Progress | None) -> LoadResult:
    extract = plan.extract
    name = extract.name
    load_id = f"{name}:{plan.sha256[:16]}"
    extract_date = plan.settings.extract_date or date.today()
    options = ParseOptions(extract_date=extract_date, date_formats=tuple(plan.settings.date_formats))
    schema = build_schema(extract, options)
    seq = con.execute("SELECT coalesce(max(load_seq), 0) + 1 FROM loads").fetchone()[0]
    started = datetime.now(UTC).replace(tzinfo=None)
    con.execute(
        "INSERT INTO loads (load_id, load_seq, source, file_name, file_path, sha256, file_bytes, file_format, "
        "extract_date, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [load_id, seq, name, plan.path.name, str(plan.path), plan.sha256, plan.path.stat().st_size, plan.fmt,
         extract_date, started],
    )
    table = q(src_table(extract))
    columns = ", ".join(q(c) for c in extract.column_names)
    rows_read = 0
    batches, malformed_rows = _read_batches(plan, workdir)
    for text in batches:
        rows_read += text.height
        text = _quarantine_repeated_header(con, load_id, plan, text)
        typed, failures = validate_batch(normalise(text, extract), extract, schema, options)
        _register(con, "batch_good", typed)
        con.execute(
            f"INSERT INTO {table} (_load_id, _line, {columns}) SELECT ?, {q(LINE)}, {columns} FROM batch_good",
            [load_id],
        )
        if failures.height:
            bad = text.filter(pl.col(LINE).is_in(failures.get_column(LINE).unique().implode()))
            _store_failures(con, load_id, plan, failures, _raw_json(bad))
        con.unregister("batch_good")
        if progress:
            progress(name, rows_read, None)

    malformed = malformed_rows()
    if malformed:
        rows_read += len(malformed)
        _fix_lines_around(con, load_id, plan, [m.line for m in malformed])
        failures = with_messages(
            pl.DataFrame(
                {
                    LINE: [m.line for m in malformed],
                    "column_name": [None] * len(malformed),
                    "value": [m.message for m in malformed],
                    "reason_code": ["malformed_row"] * len(malformed),
                },
                schema={LINE: pl.Int64, "column_name": pl.Utf8, "value": pl.Utf8, "reason_code": pl.Utf8},
            )
        )
        raw = pl.DataFrame({LINE: [m.line for m in malformed], "raw": [m.raw for m in malformed]},
                           schema={LINE: pl.Int64, "raw": pl.Utf8})
        _store_failures(con, load_id, plan, failures, raw)

    _reject_duplicate_keys(con, load_id, extract, plan)
    loaded = con.execute(f"SELECT count(*) FROM {table} WHERE _load_id = ?", [load_id]).fetchone()[0]
    rejected = con.execute("SELECT count(*) FROM rejected_rows WHERE load_id = ?", [load_id]).fetchone()[0]
    if rows_read != loaded + rejected:
        raise IomError(
            f"{name}: reconciliation failed for {plan.path.name}: read {rows_read}, loaded {loaded}, "
            f"rejected {rejected}; nothing was loaded"
        )
    con.execute(
        "UPDATE loads SET rows_read = ?, rows_loaded = ?, rows_rejected = ?, finished_at = ? WHERE load_id = ?",
        [rows_read, loaded, rejected, datetime.now(UTC).replace(tzinfo=None), load_id],
    )
    reasons = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM rejects WHERE load_id = ? GROUP BY 1 ORDER BY 1", [load_id]
        ).fetchall()
    )
    log.info("loaded %s (%s): read %d, loaded %d, rejected %d", name, plan.path.name, rows_read, loaded, rejected)
    return LoadResult(name, plan.path.name, load_id, "loaded", rows_read, loaded, rejected, reasons,
                      plan.ignored, plan.absent_optional)


def _raw_json(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(LINE, pl.struct(pl.all().exclude(LINE)).struct.json_encode().alias("raw"))


def _quarantine_repeated_header(
    con: duckdb.DuckDBPyConnection, load_id: str, plan: _Planned, text: pl.DataFrame
) -> pl.DataFrame:
    """A header line repeated inside the data is reported as one clear reason, not a dozen bad values."""
    file_column, canonical = next(iter(plan.rename.items()))
    is_header = pl.col(canonical) == file_column
    repeated = text.filter(is_header)
    if not repeated.height:
        return text
    failures = with_messages(
        repeated.select(
            LINE,
            pl.lit(None, dtype=pl.Utf8).alias("column_name"),
            pl.lit(None, dtype=pl.Utf8).alias("value"),
            pl.lit("repeated_header").alias("reason_code"),
        )
    )
    _store_failures(con, load_id, plan, failures, _raw_json(repeated))
    return text.filter(~is_header.fill_null(False))


def _store_failures(
    con: duckdb.DuckDBPyConnection, load_id: str, plan: _Planned, failures: pl.DataFrame, raw: pl.DataFrame
) -> None:
    """Named step [one row per failed check; one raw row per quarantined line]."""
    _register(con, "batch_failures", failures)
    con.execute(
        f"INSERT INTO rejects SELECT ?, ?, ?, {q(LINE)}, column_name, value, reason_code, message FROM batch_failures",
        [load_id, plan.extract.name, plan.path.name],
    )
    con.unregister("batch_failures")
    _register(con, "batch_raw", raw)
    con.execute(f"INSERT INTO rejected_rows SELECT ?, ?, {q(LINE)}, raw FROM batch_raw", [load_id, plan.extract.name])
    con.unregister("batch_raw")


def _fix_lines_around(con: duckdb.DuckDBPyConnection, load_id: str, plan: _Planned, bad_lines: list[int]) -> None:
    """Good rows were numbered as if no row had been dropped by the reader; shift them past the
    malformed lines. The k-th good line is first + k + #{malformed lines among the ones before it}."""
    first = plan.settings.header_row + 1
    adjusted = sorted(line - first - i for i, line in enumerate(sorted(bad_lines)))
    con.register("malformed_adj", pa.table({"a": pa.array(adjusted, pa.int64())}))
    shift = "(SELECT count(*) FROM malformed_adj m WHERE m.a <= t._line - ?)"
    for table in (q(src_table(plan.extract)),):
        con.execute(f"UPDATE {table} AS t SET _line = _line + {shift} WHERE _load_id = ?", [first, load_id])
    for table in ("rejects", "rejected_rows"):
        con.execute(f"UPDATE {table} AS t SET line = line + (SELECT count(*) FROM malformed_adj m WHERE m.a <= t.line - ?) "
                    "WHERE load_id = ?", [first, load_id])
    con.unregister("malformed_adj")


def _reject_duplicate_keys(con: duckdb.DuckDBPyConnection, load_id: str, extract: Extract, plan: _Planned) -> None:
    """Named step [one row per later duplicate of a natural key within this load]: the first line
    wins, later lines are quarantined with reason `duplicate_id`. Events have no key of their own."""
    if extract.name == "probation_events":
        return
    table = q(src_table(extract))
    key = ", ".join(q(k) for k in extract.key)
    key_text = " || '|' || ".join(f"coalesce(CAST({q(k)} AS VARCHAR), '')" for k in extract.key)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dup_lines AS
        SELECT _line, {key_text} AS key_value, to_json(t) AS raw
        FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY _line) AS occurrence
              FROM {table} WHERE _load_id = ?) AS t
        WHERE occurrence > 1""",
        [load_id],
    )
    con.execute(
        """INSERT INTO rejects SELECT ?, ?, ?, _line, ?, key_value, 'duplicate_id',
               ? || ' value ''' || key_value || ''' repeats a key already seen earlier in the file'
           FROM dup_lines""",
        [load_id, extract.name, plan.path.name, "+".join(extract.key), "+".join(extract.key)],
    )
    con.execute("INSERT INTO rejected_rows SELECT ?, ?, _line, raw FROM dup_lines", [load_id, extract.name])
    con.execute(f"DELETE FROM {table} WHERE _load_id = ? AND _line IN (SELECT _line FROM dup_lines)", [load_id])
    con.execute("DROP TABLE dup_lines")


def plan_ingest(config: Config) -> list[_Planned]:
    """Preflight every configured file; raise InputFileError before anything is written."""
    if not config.extracts:
        raise InputFileError(
            f"{config.path}: no [extracts.*] sections", hint="run `iom init DIR` for a template"
        )
    plans = []
    for name in EXTRACTS:  # a fixed order: nominals before offences, and so on
        if name in config.extracts:
            for path in resolve_files(config, name):
                plans.append(_plan(config, name, path))
    return plans


def ingest(config: Config, progress: Progress | None = None, con: duckdb.DuckDBPyConnection | None = None) -> list[LoadResult]:
    """Load every new extract file into the warehouse; return one result per file."""
    plans = plan_ingest(config)
    own = con is None
    con = con or connect(config)
    results: list[LoadResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="iom-ingest-") as tmp, transaction(con):
            for plan in plans:
                done = con.execute(
                    "SELECT load_id, rows_read, rows_loaded, rows_rejected FROM loads WHERE source = ? AND sha256 = ?",
                    [plan.extract.name, plan.sha256],
                ).fetchone()
                if done:
                    log.info("%s (%s) already loaded as %s: skipped", plan.extract.name, plan.path.name, done[0])
                    results.append(LoadResult(plan.extract.name, plan.path.name, done[0], "unchanged", *done[1:]))
                    continue
                results.append(_load_file(con, plan, Path(tmp), progress))
    finally:
        if own:
            con.close()
    return results


def read_reconciliation(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Per source, over every load: files, rows read, loaded, rejected."""
    return con.execute(
        "SELECT source, count(*), sum(rows_read), sum(rows_loaded), sum(rows_rejected) FROM loads "
        "GROUP BY source ORDER BY source"
    ).fetchall()


