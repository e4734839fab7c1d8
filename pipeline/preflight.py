"""Preflight: every configured extract file is checked before anything is written.

For each file: it exists and is readable, is not empty, looks like text when it should be CSV
(not a workbook, a zip, UTF-16), decodes in the configured encoding (the line of the first bad
byte named), has a header line and every required column (with a hint: another delimiter, a
title row above the header, a byte-order mark). The file's sha256 is computed in the same pass.
A failure raises InputFileError naming the file and what to set, and the ingest stops before it
has loaded anything (`pipeline.ingest`).
"""

from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config, ExtractConfig
from pipeline.contract import EXTRACTS, Extract
from pipeline.errors import InputFileError

SCAN_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass
class PlannedFile:
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
                        raise decode_error(
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
            raise decode_error(
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


def decode_error(name: str, path: Path, encoding: str, detail: str) -> InputFileError:
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


def utf8_copy(name: str, path: Path, encoding: str, mixed_newlines: bool, workdir: Path) -> Path:
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
        raise decode_error(name, path, encoding, f"undecodable byte at offset {offset + exc.start}") from None
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
        raise decode_error(name, path, settings.encoding, f"in the header: {exc.reason}") from None
    except csv.Error as exc:
        raise InputFileError(f"{name}: {path}: the header line cannot be parsed: {exc}") from None
    if not header or all(not h.strip() for h in header):
        raise InputFileError(
            f"{name}: {path} has no header line (line {settings.header_row} is empty)",
            hint=f"the first line must name the columns; set [extracts.{name}].header_row if a title sits above it",
        )
    return [h.strip() for h in header]


def xlsx_frame(name: str, path: Path, settings: ExtractConfig) -> pl.DataFrame:
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


def _plan(config: Config, name: str, path: Path) -> PlannedFile:
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


def _plan_file(config: Config, name: str, path: Path) -> PlannedFile:
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
        header = [str(c) for c in xlsx_frame(name, path, settings).columns]

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
    return PlannedFile(extract, settings, path, sha256, mixed_newlines, fmt, header, rename, ignored, absent)


def plan_ingest(config: Config) -> list[PlannedFile]:
    """Preflight every configured file; raise InputFileError before anything is written."""
    if not config.extracts:
        raise InputFileError(
            f"{config.path}: no [extracts.*] sections", hint="run `iom init DIR` for a template"
        )
    files = [(name, path) for name in EXTRACTS if name in config.extracts  # a fixed order: nominals first
             for path in resolve_files(config, name)]
    # Two files are scanned at once (hashing releases the GIL); results, and the first error, in order.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda file: _plan(config, *file), files))
