"""Ingest: read every configured extract, validate it, load good rows and quarantine bad ones.

Per file: preflight (exists, readable, header, required columns) for *all* files first, so a bad
file stops the command before anything is written; then one transaction per command loads every
new file. A file already loaded (same source and sha256) is a reported no-op. For every load,
rows read = rows loaded + rows rejected is checked before commit.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob
import hashlib
import itertools
import json
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl
import pyarrow as pa

from pipeline.config import Config, ExtractConfig
from pipeline.contract import EXTRACTS, Extract, RejectReason
from pipeline.errors import InputFileError, IomError
from pipeline.validate import LINE, ParseOptions, build_schema, normalise, validate_batch, with_messages
from pipeline.warehouse import connect, q, run_sql, src_table, transaction

log = logging.getLogger(__name__)

BATCH_ROWS = 1_000_000
COMMIT_ROWS = 2_000_000
SCAN_CHUNK_BYTES = 8 * 1024 * 1024
ROW_GROUP_ROWS = 122_880  # DuckDB's row group size: the Arrow batch size handed to inserts
Progress = Callable[[str, int, int | None], None]  # (label, rows done, rows total or None)
T = TypeVar("T")


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


def _scan_file(path: Path, name: str | None = None, encoding: str | None = None) -> tuple[str, bool]:
    """sha256 of the bytes, and whether line endings are mixed (CRLF and bare LF in one file).

    With an encoding, also check in the same pass that the whole file decodes, so a file in the
    wrong encoding stops the command in preflight, naming the line of the first bad byte.
    The digest runs in a worker thread (hashlib releases the GIL) while this thread checks the
    text; an ASCII chunk is valid in every accepted encoding and is not decoded at all."""
    digest = hashlib.sha256()
    crlf = lf = 0
    saw_cr = False
    previous = b""
    offset = 0
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict") if encoding else None
    with path.open("rb") as handle, ThreadPoolExecutor(max_workers=1) as hasher:
        hashing = None
        for chunk in iter(lambda: handle.read(SCAN_CHUNK_BYTES), b""):
            if hashing is not None:
                hashing.result()  # bounded: at most one chunk waits for the digest
            hashing = hasher.submit(digest.update, chunk)
            if decoder is not None:
                pending = len(decoder.getstate()[0])
                if pending or not chunk.isascii():
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        at = offset - pending + exc.start
                        line = _lines_before(path, max(0, at)) + 1
                        byte = exc.object[exc.start : exc.start + 1].hex().upper()
                        raise _decode_error(
                            name or path.name, path, encoding or "",
                            f"line {line}: byte 0x{byte} at byte offset {at} cannot be decoded",
                        ) from None
            # Line endings are counted only in files that hold a carriage return at all.
            if saw_cr or b"\r" in chunk:
                if not saw_cr:
                    saw_cr = True
                    lf = _lines_before(path, offset)
                lf += chunk.count(b"\n")
                crlf += chunk.count(b"\r\n") + (previous == b"\r" and chunk[:1] == b"\n")
            previous = chunk[-1:]
            offset += len(chunk)
        if hashing is not None:
            hashing.result()
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _decode_error(
                name or path.name, path, encoding or "",
                f"the file ends in the middle of a character (line {_lines_before(path, offset) + 1}): "
                "it may be truncated",
            ) from None
    return digest.hexdigest(), 0 < crlf < lf


def _lines_before(path: Path, offset: int) -> int:
    """Line feeds in the first `offset` bytes (only read again when a message needs a line)."""
    count = 0
    with path.open("rb") as handle:
        while offset > 0:
            chunk = handle.read(min(offset, SCAN_CHUNK_BYTES))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _decode_error(name: str, path: Path, encoding: str, detail: str) -> InputFileError:
    other = "cp1252" if encoding.startswith("utf") else "utf-8"
    source = "a Windows / Excel export" if other == "cp1252" else "a UTF-8 export"
    return InputFileError(
        f"{name}: {path} is not valid {encoding} text ({detail})",
        hint=f"set [extracts.{name}].encoding to match how the file was exported "
        f"(e.g. encoding = \"{other}\" for {source})",
    )


# Leading bytes of files that are often given a .csv name by mistake: (magic, what it is, what to do).
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or another zip archive",
     'set [extracts.{name}].format = "xlsx" for a workbook, or unzip / export the data as CSV'),
    (b"\xd0\xcf\x11\xe0", "an old-style Excel workbook (.xls)", "open it in Excel and save it as .xlsx or CSV"),
    (b"PAR1", "a Parquet file", 'set [extracts.{name}].format = "parquet"'),
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it first (gunzip) and point the config at the .csv"),
    (b"\xff\xfe", "UTF-16 text (Excel's \"Unicode Text\")", "save it again as \"CSV UTF-8\" (or CSV) from Excel"),
    (b"\xfe\xff", "UTF-16 text", "save it again as \"CSV UTF-8\" (or CSV)"),
)
# Bytes that never appear in CSV text: C0 controls other than tab, LF, FF, CR and ^Z (old DOS end of file).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 26))
_TEXT_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)


def _check_looks_like_text(name: str, path: Path) -> None:
    """A binary file named .csv gets a message saying what it looks like, not a decoding error."""
    with path.open("rb") as handle:
        sample = handle.read(8192)
    for magic, what, todo in _MAGIC:
        if sample.startswith(magic):
            raise InputFileError(
                f"{name}: {path} is not CSV text: it looks like {what}", hint=todo.format(name=name)
            )
    controls = len(sample.translate(None, delete=_TEXT_BYTES))
    if controls > 0.05 * len(sample):
        raise InputFileError(
            f"{name}: {path} is not CSV text: {controls} of its first {len(sample)} bytes are binary control "
            "characters",
            hint=f"the file may be damaged, UTF-16 text or another format; export the extract again as CSV "
            f"(UTF-8 or Windows cp1252), or set [extracts.{name}].format to match it",
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
            hint=f"check the file opens in Excel, and [extracts.{name}].sheet / header_row",
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
    try:
        return _plan_file(config, name, path)
    except OSError as exc:  # e.g. permission denied despite os.access (ACLs, root squash), or gone
        raise InputFileError(
            f"{name}: {path} cannot be read: {exc.strerror or exc}",
            hint="check the file exists and its owner and permissions for the account running iom",
        ) from None


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "|": "pipe", "\t": "tab"}


def _delimiter_hint(name: str, header: list[str], settings: ExtractConfig) -> str | None:
    """A one-column header that holds another delimiter: name the delimiter to set."""
    if len(header) != 1:
        return None
    counts = {d: header[0].count(d) for d in _DELIMITER_NAMES if d != settings.delimiter}
    best = max(counts, key=lambda d: counts[d])
    if not counts[best]:
        return None
    return (
        f"the header is one column but looks {_DELIMITER_NAMES[best]}-separated: set "
        f"[extracts.{name}].delimiter = {json.dumps(best)} (now {json.dumps(settings.delimiter)})"
    )


def _find_header_row(path: Path, settings: ExtractConfig, fmt: str, wanted: list[str]) -> int | None:
    """The 1-based row, among the first 30, that holds every wanted column name (None if none does)."""
    wanted_set = set(wanted)
    rows: list[list[str]] = []
    try:
        if fmt == "csv":
            encoding = "utf-8-sig" if settings.encoding.startswith("utf-8") else settings.encoding
            with path.open("r", encoding=encoding, newline="") as handle:
                rows = list(itertools.islice(csv.reader(handle, delimiter=settings.delimiter), 30))
        elif fmt == "xlsx":
            frame = pl.read_excel(path, sheet_name=settings.sheet, engine="calamine", has_header=False,
                                  infer_schema_length=0, drop_empty_rows=False, raise_if_empty=False)
            rows = [[str(v) for v in r if v is not None] for r in frame.head(30).iter_rows()]
    except Exception:  # only a hint: any trouble reading means no hint
        return None
    for number, row in enumerate(rows, start=1):
        if wanted_set <= {cell.strip() for cell in row}:
            return number
    return None


def _plan_file(config: Config, name: str, path: Path) -> _Planned:
    extract = EXTRACTS[name]
    settings = config.extracts[name]
    _check_readable(name, path)
    fmt = settings.format_for(path)
    sha256, mixed_newlines = "", False
    if fmt == "csv":
        _check_looks_like_text(name, path)
        sha256, mixed_newlines = _scan_file(path, name, settings.encoding)  # stops on undecodable bytes
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
        detail = ", ".join(
            f"'{m}'" if expected.get(m, m) == m else f"'{m}' (expected in the file as \"{expected[m]}\")"
            for m in missing
        )
        found = ", ".join(f'"{h[:80]}"' for h in header[:15]) + (" ..." if len(header) > 15 else "")
        hint = _delimiter_hint(name, header, settings)
        if hint is None and header and header[0].startswith("\u00ef\u00bb\u00bf"):  # a UTF-8 BOM read as cp1252
            hint = f'the file starts with a UTF-8 byte-order mark: set [extracts.{name}].encoding = "utf-8-sig"'
        if hint is None:
            row = _find_header_row(path, settings, fmt, [expected.get(m, m) for m in missing])
            if row is not None and row != settings.header_row:
                hint = (
                    f"the column names are on row {row}, not row {settings.header_row} (a title above them?): "
                    f"set header_row = {row} in [extracts.{name}] of {config.path.name}"
                )
        if hint is None:
            hint = (
                f"map the file's column names in [extracts.{name}.columns] of {config.path.name}"
                + (f", or set [extracts.{name}].header_row if a title sits above the column names"
                   if fmt != "parquet" else "")
            )
        raise InputFileError(
            f"{name}: {path}: required column missing: {detail}; columns found: {found}", hint=hint
        )
    ignored = [h for h in header if h not in rename]
    absent = [c for c in extract.column_names if c not in rename.values()]
    if fmt != "csv":
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
    reader_con.execute("SET preserve_insertion_order = true")  # line numbers follow the file
    reader_con.execute("SET memory_limit = '1GB'")
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
            # execute() streams; a relation's fetch_record_batch re-plans and is several times slower
            reader = run_sql(reader_con, f"read {plan.extract.name}", query, params).fetch_record_batch(BATCH_ROWS)
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
            for line, raw, message in run_sql(
                reader_con, f"read {plan.extract.name}: malformed rows",
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
    """Hand a frame to DuckDB as row-group-sized Arrow batches (string views kept): one huge
    batch makes the insert build its row groups late and costs seconds more at commit."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    con.register(name, pa.Table.from_batches(table.to_batches(max_chunksize=ROW_GROUP_ROWS), table.schema))


def _load_file(con: duckdb.DuckDBPyConnection, plan: _Planned, workdir: Path, progress: Progress | None) -> LoadResult:
    extract = plan.extract
    name = extract.name
    load_id = f"{name}:{plan.sha256[:16]}"
    extract_date = plan.settings.extract_date or date.today()
    options = ParseOptions(extract_date=extract_date, date_formats=tuple(plan.settings.date_formats))
    schema = build_schema(extract, options)
    seq = run_sql(con, "ingest: next load_seq", "SELECT coalesce(max(load_seq), 0) + 1 FROM loads").fetchone()[0]
    started = datetime.now(UTC).replace(tzinfo=None)
    with transaction(con):
        run_sql(
            con, "ingest: register load",
            "INSERT INTO loads (load_id, load_seq, source, file_name, file_path, sha256, file_bytes, file_format, "
            "extract_date, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [load_id, seq, name, plan.path.name, str(plan.path), plan.sha256, plan.path.stat().st_size, plan.fmt,
             extract_date, started],
        )
    con.execute("BEGIN TRANSACTION")
    table = q(src_table(extract))
    columns = ", ".join(q(c) for c in extract.column_names)
    rows_read = committed_at = 0
    batches, malformed_rows = _read_batches(plan, workdir)
    # The next batch is read and normalised in a worker thread while this one is validated and
    # stored: DuckDB's Arrow export and Polars release the GIL, so the two cores both work.
    prepared = ((text, normalise(text, extract)) for text in batches)
    # closing(): after an error below, the worker stops at once, not when the traceback is freed
    with contextlib.closing(_read_ahead(prepared)) as ahead:
        for text, normalised in ahead:
            rows_read += text.height
            keep = _quarantine_repeated_header(con, load_id, plan, text)
            if keep is not None:
                text, normalised = text.filter(keep), normalised.filter(keep)
            typed, failures = validate_batch(normalised, extract, schema, options, plan.path.name)
            _register(con, "batch_good", typed)
            run_sql(
                con, f"ingest: insert {name} rows",
                f"INSERT INTO {table} (_load_id, _line, {columns}) SELECT ?, {q(LINE)}, {columns} FROM batch_good",
                [load_id],
            )
            if failures.height:
                bad = text.filter(pl.col(LINE).is_in(failures.get_column(LINE).unique().implode()))
                _store_failures(con, load_id, plan, failures, _raw_json(bad))
            con.unregister("batch_good")
            # Commit every COMMIT_ROWS: a ten-million-row file in one transaction holds gigabytes in
            # memory. All-or-nothing is kept by `_forget_loads` (on failure) and `clean_unfinished_loads`.
            if rows_read - committed_at >= COMMIT_ROWS:
                con.execute("COMMIT")
                con.execute("BEGIN TRANSACTION")
                committed_at = rows_read
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
                    "reason_code": [RejectReason.MALFORMED_ROW.value] * len(malformed),
                },
                schema={LINE: pl.Int64, "column_name": pl.Utf8, "value": pl.Utf8, "reason_code": pl.Utf8},
            )
        )
        raw = pl.DataFrame({LINE: [m.line for m in malformed], "raw": [m.raw for m in malformed]},
                           schema={LINE: pl.Int64, "raw": pl.Utf8})
        _store_failures(con, load_id, plan, failures, raw)

    _reject_duplicate_keys(con, load_id, extract, plan)
    loaded = run_sql(con, "ingest: count loaded", f"SELECT count(*) FROM {table} WHERE _load_id = ?",
                     [load_id]).fetchone()[0]
    rejected = run_sql(con, "ingest: count rejected", "SELECT count(*) FROM rejected_rows WHERE load_id = ?",
                       [load_id]).fetchone()[0]
    if rows_read != loaded + rejected:
        raise IomError(
            f"{name}: reconciliation failed for {plan.path.name}: read {rows_read}, loaded {loaded}, "
            f"rejected {rejected}; nothing was loaded"
        )
    run_sql(
        con, "ingest: finish load",
        "UPDATE loads SET rows_read = ?, rows_loaded = ?, rows_rejected = ?, finished_at = ? WHERE load_id = ?",
        [rows_read, loaded, rejected, datetime.now(UTC).replace(tzinfo=None), load_id],
    )
    con.execute("COMMIT")  # the load is finished only now
    reasons = dict(
        run_sql(
            con, "ingest: count reasons",
            "SELECT reason_code, count(*) FROM rejects WHERE load_id = ? GROUP BY 1 ORDER BY 1", [load_id],
        ).fetchall()
    )
    log.info("loaded %s (%s): read %d, loaded %d, rejected %d", name, plan.path.name, rows_read, loaded, rejected)
    if plan.ignored:
        log.info("%s (%s): columns not in the contract, ignored: %s", name, plan.path.name, ", ".join(plan.ignored))
    if plan.absent_optional:
        log.info("%s (%s): optional columns absent, left empty: %s", name, plan.path.name,
                 ", ".join(plan.absent_optional))
    return LoadResult(name, plan.path.name, load_id, "loaded", rows_read, loaded, rejected, reasons,
                      plan.ignored, plan.absent_optional)


def _raw_json(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(LINE, pl.struct(pl.all().exclude(LINE)).struct.json_encode().alias("raw"))


def _quarantine_repeated_header(
    con: duckdb.DuckDBPyConnection, load_id: str, plan: _Planned, text: pl.DataFrame
) -> pl.Series | None:
    """A header line repeated inside the data is reported as one clear reason, not a dozen bad
    values. Returns the mask of rows to keep, or None when there is no such line."""
    file_column, canonical = next(iter(plan.rename.items()))
    is_header = (pl.col(canonical) == file_column).fill_null(False)
    mask = text.select(is_header).to_series()
    if not mask.any():
        return None
    repeated = text.filter(mask)
    failures = with_messages(
        repeated.select(
            LINE,
            pl.lit(None, dtype=pl.Utf8).alias("column_name"),
            pl.lit(None, dtype=pl.Utf8).alias("value"),
            pl.lit(RejectReason.REPEATED_HEADER.value).alias("reason_code"),
        )
    )
    _store_failures(con, load_id, plan, failures, _raw_json(repeated))
    return ~mask


_END = object()


def _read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `items`, producing the next ones in a worker thread (at most `depth` waiting, so
    memory stays bounded). An error in the worker is raised here; leaving early stops it."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    cancelled = threading.Event()

    def offer(entry: tuple) -> bool:
        while not cancelled.is_set():
            try:
                slots.put(entry, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            offer((_END, exc))

    worker = threading.Thread(target=produce, name="iom-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        cancelled.set()
        worker.join()


def _store_failures(
    con: duckdb.DuckDBPyConnection, load_id: str, plan: _Planned, failures: pl.DataFrame, raw: pl.DataFrame
) -> None:
    """Named step [one row per failed check; one raw row per quarantined line]."""
    _register(con, "batch_failures", failures)
    run_sql(
        con, "ingest: store rejects",
        f"INSERT INTO rejects SELECT ?, ?, ?, {q(LINE)}, column_name, value, reason_code, message FROM batch_failures",
        [load_id, plan.extract.name, plan.path.name],
    )
    con.unregister("batch_failures")
    _register(con, "batch_raw", raw)
    run_sql(con, "ingest: store rejected rows", f"INSERT INTO rejected_rows SELECT ?, ?, {q(LINE)}, raw FROM batch_raw",
            [load_id, plan.extract.name])
    con.unregister("batch_raw")


def _fix_lines_around(con: duckdb.DuckDBPyConnection, load_id: str, plan: _Planned, bad_lines: list[int]) -> None:
    """Good rows were numbered as if no row had been dropped by the reader; shift them past the
    malformed lines. The k-th good line is first + k + #{malformed lines among the ones before it}."""
    first = plan.settings.header_row + 1
    adjusted = sorted(line - first - i for i, line in enumerate(sorted(bad_lines)))
    con.register("malformed_adj", pa.table({"a": pa.array(adjusted, pa.int64())}))
    shift = "(SELECT count(*) FROM malformed_adj m WHERE m.a <= t._line - ?)"
    for table in (q(src_table(plan.extract)),):
        run_sql(con, "ingest: renumber lines", f"UPDATE {table} AS t SET _line = _line + {shift} WHERE _load_id = ?",
                [first, load_id])
    for table in ("rejects", "rejected_rows"):
        run_sql(con, f"ingest: renumber {table} lines", f"UPDATE {table} AS t SET line = line + (SELECT count(*) FROM malformed_adj m WHERE m.a <= t.line - ?) "
                    "WHERE load_id = ?", [first, load_id])
    con.unregister("malformed_adj")


def _reject_duplicate_keys(con: duckdb.DuckDBPyConnection, load_id: str, extract: Extract, plan: _Planned) -> None:
    """Named step [one row per later duplicate of a natural key within this load]: the first line
    wins, later lines are quarantined with reason `duplicate_id`. A key that may repeat is left alone."""
    if not extract.has_unique_key:
        return
    table = q(src_table(extract))
    key = ", ".join(q(k) for k in extract.key)
    key_text = " || '|' || ".join(f"coalesce(CAST({q(k)} AS VARCHAR), '')" for k in extract.key)
    # Find repeated keys by hash aggregation first: a window over every row costs far more.
    run_sql(
        con, "ingest: find duplicate keys",
        f"""CREATE OR REPLACE TEMP TABLE dup_lines AS
        WITH repeated AS (
            SELECT {key} FROM {table} WHERE _load_id = ? GROUP BY {key} HAVING count(*) > 1)
        SELECT _line, {key_text} AS key_value, to_json(t) AS raw
        FROM (SELECT t.*, row_number() OVER (PARTITION BY {', '.join('t.' + q(k) for k in extract.key)} ORDER BY t._line)
                  AS occurrence
              FROM {table} t SEMI JOIN repeated r ON {' AND '.join(f't.{q(k)} IS NOT DISTINCT FROM r.{q(k)}' for k in extract.key)}
              WHERE t._load_id = ?) AS t
        WHERE occurrence > 1""",
        [load_id, load_id],
    )
    key_name = "+".join(extract.key)
    run_sql(
        con, "ingest: reject duplicate keys",
        """INSERT INTO rejects SELECT $load, $source, $file, _line, $key, key_value, $reason,
               replace(replace($template, '{column}', $key), '{value}', key_value)
           FROM dup_lines""",
        {"load": load_id, "source": extract.name, "file": plan.path.name, "key": key_name,
         "reason": RejectReason.DUPLICATE_ID.value, "template": RejectReason.DUPLICATE_ID.template},
    )
    run_sql(con, "ingest: quarantine duplicate rows", "INSERT INTO rejected_rows SELECT ?, ?, _line, raw FROM dup_lines",
            [load_id, extract.name])
    run_sql(con, "ingest: remove duplicate rows",
            f"DELETE FROM {table} WHERE _load_id = ? AND _line IN (SELECT _line FROM dup_lines)", [load_id])
    run_sql(con, "ingest: drop dup_lines", "DROP TABLE dup_lines")


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


def _forget_loads(con: duckdb.DuckDBPyConnection, load_ids: list[str]) -> None:
    """Remove every row of these loads: the warehouse holds what it held before they began."""
    if not load_ids:
        return
    with transaction(con):
        for extract in EXTRACTS.values():
            run_sql(con, f"forget loads: {src_table(extract)}",
                    f"DELETE FROM {q(src_table(extract))} WHERE list_contains(?, _load_id)", [load_ids])
        for table in ("rejects", "rejected_rows", "loads"):
            run_sql(con, f"forget loads: {table}", f"DELETE FROM {table} WHERE list_contains(?, load_id)", [load_ids])


def clean_unfinished_loads(con: duckdb.DuckDBPyConnection) -> list[str]:
    """A load that never finished (the process was killed) is removed before anything else."""
    stale = [r[0] for r in run_sql(con, "ingest: unfinished loads",
                                   "SELECT load_id FROM loads WHERE finished_at IS NULL").fetchall()]
    if stale:
        log.warning("removing %d unfinished load(s) left by an interrupted ingest", len(stale))
        _forget_loads(con, stale)
    return stale


def ingest(config: Config, progress: Progress | None = None, con: duckdb.DuckDBPyConnection | None = None) -> list[LoadResult]:
    """Load every new extract file into the warehouse; return one result per file.

    All or nothing: if any file fails part-way, the loads this command made are removed again."""
    plans = plan_ingest(config)
    own = con is None
    con = con or connect(config)
    results: list[LoadResult] = []
    started: list[str] = []
    try:
        clean_unfinished_loads(con)
        with tempfile.TemporaryDirectory(prefix="iom-ingest-") as tmp:
            for plan in plans:
                done = run_sql(
                    con, "ingest: file already loaded",
                    "SELECT load_id, rows_read, rows_loaded, rows_rejected FROM loads WHERE source = ? AND sha256 = ?",
                    [plan.extract.name, plan.sha256],
                ).fetchall()
                if done:
                    log.info("%s (%s) already loaded as %s: skipped", plan.extract.name, plan.path.name, done[0][0])
                    results.append(LoadResult(plan.extract.name, plan.path.name, done[0][0], "unchanged", *done[0][1:]))
                    continue
                started.append(f"{plan.extract.name}:{plan.sha256[:16]}")
                try:
                    results.append(_load_file(con, plan, Path(tmp), progress))
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
    except BaseException:
        _forget_loads(con, started)
        raise
    finally:
        if own:
            con.close()
    return results
