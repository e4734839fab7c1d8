"""A corpus of bad extract files, written on demand into a test's tmp folder.

Each writer takes the path to write (usually `<workspace>/extracts/<name>.csv`, replacing the
header-only file `write_workspace` put there) and returns it. Nothing binary is committed: the
Excel and Parquet files are built here, in memory, from a few rows.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter
from builders import example_row

from pipeline.contract import EXTRACTS

OFFENCE_COLUMNS = EXTRACTS["police_offences"].column_names
NOMINAL_COLUMNS = EXTRACTS["police_nominals"].column_names
EVENT_COLUMNS = EXTRACTS["probation_events"].column_names


def offence(i: int, **overrides: str) -> dict[str, str]:
    return example_row("police_offences", **{"offence_id": f"CR{i:06d}", **overrides})


def csv_text(columns: list[str], rows: list[dict], delimiter: str = ",", newline: str = "\n") -> str:
    """Rows as CSV text, quoted where needed (so embedded quotes and newlines round-trip)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=delimiter, lineterminator=newline,
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return path


# --- CSV text damage --------------------------------------------------------------------------


def truncated_mid_field(path: Path) -> Path:
    """Two good rows, then the export stopped in the middle of the third row's fourth field."""
    text = csv_text(OFFENCE_COLUMNS, [offence(1), offence(2)])
    cut = "CR000003,N0001234,2026-09-03,2026-0"
    return _write(path, text + cut)


def truncated_mid_quote(path: Path) -> Path:
    """Two good rows, then the third row stops inside a quoted description (no closing quote)."""
    text = csv_text(OFFENCE_COLUMNS, [offence(1), offence(2)])
    cut = 'CR000003,N0001234,2026-09-03,2026-09-04,028/01,"Burglary - resid'
    return _write(path, text + cut)


def semicolon_separated(path: Path) -> Path:
    """A semicolon file (as a continental Excel writes it), to be read with the default comma."""
    return _write(path, csv_text(OFFENCE_COLUMNS, [offence(1), offence(2)], delimiter=";"))


def utf8_with_bom(path: Path) -> Path:
    """UTF-8 with a byte-order mark ("CSV UTF-8" from Excel): the BOM must not spoil the first column."""
    return _write(path, b"\xef\xbb\xbf" + csv_text(OFFENCE_COLUMNS, [offence(1), offence(2)]).encode("utf-8"))


CP1252_SURNAME = "O\u2019Brien"  # right single quotation mark: byte 0x92 in cp1252
CP1252_FORENAMES = "Zo\u00eb"  # e with diaeresis: byte 0xEB in cp1252


def cp1252_names(path: Path) -> Path:
    """police_nominals exported by Windows Excel as cp1252, with "Zoë O’Brien" on line 3."""
    rows = [
        example_row("police_nominals", police_person_id="N0000001"),
        example_row("police_nominals", police_person_id="N0000002", surname=CP1252_SURNAME,
                    forenames=CP1252_FORENAMES),
    ]
    return _write(path, csv_text(NOMINAL_COLUMNS, rows, newline="\r\n"), encoding="cp1252")


MIXED_DATES = {  # line -> offence_date; configured date_formats = ["%d/%m/%Y"]
    2: "03/09/2026",  # configured format
    3: "2026-09-03",  # ISO is always accepted
    4: "09-03-2026",  # US style with dashes: not configured
    5: "3 Sep 2026",  # words: not configured
    6: "31/02/2026",  # configured format but no such day
}


def mixed_dates(path: Path) -> Path:
    rows = [offence(line, offence_date=value, recorded_date="", outcome_date="")
            for line, value in MIXED_DATES.items()]
    return _write(path, csv_text(OFFENCE_COLUMNS, rows))


EMBEDDED = {  # offence number -> description; a newline inside a cell is LF, as Excel writes Alt+Enter
    1: "first line\nsecond line",
    2: 'He said "not me", then left',
    3: 'both:\n"quoted", on two lines,\n\nand a blank line',
    4: "",
}


def embedded_newlines_and_quotes(path: Path) -> Path:
    rows = [offence(i, offence_description=value) for i, value in EMBEDDED.items()]
    return _write(path, csv_text(OFFENCE_COLUMNS, rows))


def very_long_field(path: Path, length: int = 10_000) -> Path:
    """A 10,000-character description (the contract allows 200) between two good rows."""
    rows = [offence(1), offence(2, offence_description="x" * length), offence(3)]
    return _write(path, csv_text(OFFENCE_COLUMNS, rows))


def empty_file(path: Path) -> Path:
    return _write(path, b"")


def header_only(path: Path) -> Path:
    return _write(path, csv_text(OFFENCE_COLUMNS, []))


def repeated_header(path: Path) -> Path:
    """Two exports concatenated: the header line appears again on line 4."""
    first = csv_text(OFFENCE_COLUMNS, [offence(1), offence(2)])
    second = csv_text(OFFENCE_COLUMNS, [offence(3)])
    return _write(path, first + second)


def extra_columns(path: Path) -> Path:
    columns = [*OFFENCE_COLUMNS[:3], "Officer Notes", *OFFENCE_COLUMNS[3:], "Exported By"]
    rows = [{**offence(i), "Officer Notes": "n/a", "Exported By": "system"} for i in (1, 2)]
    return _write(path, csv_text(columns, rows))


OPTIONAL_LEFT_OUT = ["recorded_date", "outcome", "outcome_date", "area"]


def missing_optional_columns(path: Path) -> Path:
    columns = [c for c in OFFENCE_COLUMNS if c not in OPTIONAL_LEFT_OUT]
    return _write(path, csv_text(columns, [offence(1), offence(2)]))


def missing_required_column(path: Path, column: str = "ho_offence_code") -> Path:
    columns = [c for c in OFFENCE_COLUMNS if c != column]
    return _write(path, csv_text(columns, [offence(1)]))


def binary_garbage(path: Path, size: int = 4096) -> Path:
    """Deterministic pseudo-random bytes (a damaged transfer) with a .csv name."""
    state = 2463534242
    out = bytearray()
    for _ in range(size):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out.append(state & 0xFF)
    return _write(path, bytes(out))


def workbook_named_csv(path: Path) -> Path:
    """An Excel workbook saved with a .csv name."""
    return _write(path, events_workbook(title=None))


# --- Excel and Parquet ---------------------------------------------------------------------------

EVENT_ROWS = [
    ["X123456", "2026-08-14", "breach"],
    ["X123457", "not a date", "recall"],
    ["X123458", "2026-08-20", "missed appointment"],
]


def events_workbook(title: str | None = "Probation events - OFFICIAL SENSITIVE") -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("Events")
    row = 0
    if title:
        sheet.write(0, 0, title)
        row = 1
    sheet.write_row(row, 0, EVENT_COLUMNS)
    for offset, values in enumerate(EVENT_ROWS, start=1):
        sheet.write_row(row + offset, 0, values)
    book.close()
    return buffer.getvalue()


def excel_with_title_row(path: Path) -> Path:
    """probation_events as .xlsx with a title in row 1 and the column names in row 2."""
    return _write(path, events_workbook())


def parquet_wrong_types(path: Path) -> Path:
    """police_nominals where the exporting tool guessed types: ids as integers, date of birth as
    an integer yyyymmdd, sex as a float, deceased date as a timestamp, ethnicity as a list."""
    table = pa.table(
        {
            "police_person_id": pa.array([1001, 1002, 1003], pa.int64()),
            "pnc_id": pa.array([None, None, None], pa.string()),
            "surname": ["Ashworth", "Begum", "Clarke"],
            "forenames": ["Daniel", "Amina", "Lee"],
            "date_of_birth": pa.array([19910417, 19850230, 20000101], pa.int32()),
            "sex": pa.array([None, 1.0, None], pa.float64()),
            "ethnicity": pa.array([["W1"], None, ["A1", "A2"]], pa.list_(pa.string())),
            "area": ["Northgate", "Northgate", "Southvale"],
            "deceased_date": pa.array([None, None, 0], pa.timestamp("us")),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


# --- the file system -------------------------------------------------------------------------------


def directory_instead_of_file(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def unreadable_file(path: Path) -> Path:
    """A good file with mode 000 (root can still read it: see the test)."""
    header_only(path)
    os.chmod(path, 0)
    return path
