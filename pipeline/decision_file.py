"""A decisions file as the panel returns it: the workbook's `decisions` sheet, or a CSV in the
same columns, or the synthetic world's `decisions/past_decisions.csv`; read and checked row by
row before anything is stored (`pipeline.decisions` stores it).

The columns are the contract of docs/decisions.md. A file is read into one text frame (a row per
sheet row, its number as the spreadsheet shows it: the header is row 1) and every check is a
Polars expression over the whole frame, each failure collected as a `Problem` naming the row,
the column and what is allowed, so the analyst sees them all at once. Checks that need the
warehouse (does the person exist? is the run known?) are made by `pipeline.decisions`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import polars as pl

from pipeline.errors import InputFileError

SHEET = "decisions"
ABOUT_SHEET = "about"
DECISION_VALUES = ("accept", "reject", "defer")
COHORT_TYPES = ("Fixed", "Flex", "Free")
# The ways a row may name its person, in the order they are tried for `named_by`; any identifier
# `iom explain` accepts.
IDENTIFIER_COLUMNS = ("person_key", "police_person_id", "pnc_id", "crn", "nomis_id")
PANEL_COLUMNS = ("decision", "cohort_type", "reason", "decided_by", "meeting_date", "review_date", "management_end")
OPTIONAL_COLUMNS = ("cohort_type", "reason", "management_end", "run_id")
REQUIRED_COLUMNS = ("decision", "decided_by", "meeting_date", "review_date")
DATE_COLUMNS = ("meeting_date", "review_date", "management_end")
TEXT_LIMITS = {"reason": 500, "decided_by": 100}
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
# The synthetic world's past decisions name the person by `person_id` and say which identifier it is.
SYNTHETIC_ID, SYNTHETIC_ID_TYPE = "person_id", "id_type"
# What a spreadsheet's safe-cell apostrophe (pipeline.safe_cells) may precede: strip it back.
_SAFE_APOSTROPHE = r"^'([=+\-@\t\r])"


@dataclass(frozen=True)
class Problem:
    """One failed check: the sheet row (None: the file as a whole), the column, what is wrong and allowed."""

    row: int | None
    column: str | None
    message: str


class DecisionFileError(InputFileError):
    """A decisions file with any problem: nothing from it is stored (exit 4)."""

    label = "decisions file error"
    SHOWN = 50

    def __init__(self, where: str, problems: list[Problem]):
        self.where, self.problems = where, problems
        lines = [f"{where}: {len(problems)} problem{'s' if len(problems) != 1 else ''}; nothing was imported"]
        for p in problems[: self.SHOWN]:
            place = ", ".join(x for x in (f"row {p.row}" if p.row is not None else "", p.column or "") if x)
            lines.append(f"  {place}: {p.message}" if place else f"  {p.message}")
        if len(problems) > self.SHOWN:
            lines.append(f"  ... and {len(problems) - self.SHOWN} more")
        super().__init__("\n".join(lines), hint="correct the file and import it again (see docs/decisions.md)")


@dataclass
class DecisionFile:
    path: Path
    sha256: str
    file_format: str  # "xlsx" or "csv"
    sheet: str | None  # the sheet read (None for a CSV)
    run_id: str | None  # the run the file names (the workbook's `about` sheet, or a run_id column)
    pseudonymised: bool
    rows: pl.DataFrame  # row_number, every column as text, `raw` (the row as read, JSON)
    columns: list[str] = field(default_factory=list)  # the header, normalised

    @property
    def where(self) -> str:
        return f"{self.path.name}, sheet {self.sheet}" if self.sheet else self.path.name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _header(value) -> str:
    return str(value or "").strip().lower().replace(" ", "_")


def _text(value) -> str | None:
    """A cell as text: dates as yyyy-mm-dd, whole numbers without a decimal point, blank as None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _read_xlsx(path: Path, sheet: str) -> tuple[list[str], list[list], str | None, bool]:
    import openpyxl  # only when a workbook is imported

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # a damaged or non-workbook file: openpyxl raises many kinds
        raise InputFileError(f"{path.name} cannot be read as an Excel workbook ({type(exc).__name__})",
                             hint="save it from Excel as .xlsx, or export the decisions sheet as CSV") from None
    try:
        if sheet not in book.sheetnames:
            raise DecisionFileError(path.name, [Problem(None, None, f"the workbook has no sheet {sheet!r}; "
                                                        f"its sheets are {', '.join(book.sheetnames)}")])
        rows = [list(r) for r in book[sheet].iter_rows(values_only=True)]
        run_id, pseudonymised = None, False
        if ABOUT_SHEET in book.sheetnames:
            for label, value, *_ in book[ABOUT_SHEET].iter_rows(values_only=True, max_col=2):
                if label == "run" and value:
                    run_id = str(value).strip()
                elif label == "pseudonymised" and value:
                    pseudonymised = str(value).startswith("yes")
    finally:
        book.close()
    if not rows:
        return [], [], run_id, pseudonymised
    return [_header(h) for h in rows[0]], rows[1:], run_id, pseudonymised


def _read_csv(path: Path) -> tuple[list[str], list[list]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")  # a CSV saved by Excel on Windows
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        return [], []
    return [_header(h) for h in rows[0]], rows[1:]


def read_decision_file(path: Path, sheet: str = SHEET) -> DecisionFile:
    """The file's rows as text, with the run it names; file-level problems raise at once."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"no decisions file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        header, body, run_id, pseudonymised = _read_xlsx(path, sheet)
        file_format, sheet_name = "xlsx", sheet
    elif suffix in (".csv", ".txt"):
        (header, body), run_id, pseudonymised = _read_csv(path), None, False
        file_format, sheet_name = "csv", None
    else:
        raise InputFileError(f"{path.name}: a decisions file is an .xlsx workbook or a .csv file")
    where = f"{path.name}, sheet {sheet_name}" if sheet_name else path.name
    problems = _header_problems(header)
    if problems:
        raise DecisionFileError(where, problems)
    named = [(i, h) for i, h in enumerate(header) if h]
    records = []
    for number, values in enumerate(body, start=2):
        cells = {h: _text(values[i]) if i < len(values) else None for i, h in named}
        if any(v is not None for v in cells.values()):  # a wholly empty row is no row
            records.append({"row_number": number, **cells,
                            "raw": json.dumps(cells, ensure_ascii=False, sort_keys=True)})
    schema = {"row_number": pl.Int64, **{h: pl.Utf8 for _, h in named}, "raw": pl.Utf8}
    frame = pl.DataFrame(records, schema=schema, orient="row") if records else pl.DataFrame(schema=schema)
    # Undo the safe-cell apostrophe the workbook put before a leading =, +, -, @, tab or CR.
    frame = frame.with_columns(pl.col(h).str.replace(_SAFE_APOSTROPHE, "$1") for _, h in named)
    if "run_id" in frame.columns and run_id is None:
        named_runs = frame.get_column("run_id").drop_nulls().unique().to_list()
        if len(named_runs) > 1:
            raise DecisionFileError(where, [Problem(None, "run_id", "the file names more than one run; "
                                                    "import one run's decisions per file")])
        run_id = named_runs[0] if named_runs else None
    return DecisionFile(path, file_sha256(path), file_format, sheet_name, run_id, pseudonymised,
                        _named_persons(frame), [h for _, h in named])


def _header_problems(header: list[str]) -> list[Problem]:
    names = [h for h in header if h]
    problems = [Problem(1, h, "the column appears more than once") for h in sorted({h for h in names if names.count(h) > 1})]
    for column in REQUIRED_COLUMNS:
        if column not in names:
            problems.append(Problem(1, column, "required column missing; the columns are "
                                    + ", ".join(IDENTIFIER_COLUMNS + PANEL_COLUMNS)))
    synthetic = SYNTHETIC_ID in names and SYNTHETIC_ID_TYPE in names
    if not synthetic and not any(c in names for c in IDENTIFIER_COLUMNS):
        problems.append(Problem(1, None, "no column names the person: use person_key or an identifier ("
                                + ", ".join(IDENTIFIER_COLUMNS[1:]) + "), or person_id with id_type"))
    return problems


def _named_persons(frame: pl.DataFrame) -> pl.DataFrame:
    """Every identifier column present (null where absent); `person_id` + `id_type` spread into them."""
    wanted = dict.fromkeys((*IDENTIFIER_COLUMNS, *PANEL_COLUMNS, *OPTIONAL_COLUMNS))
    missing = [pl.lit(None, dtype=pl.Utf8).alias(c) for c in wanted if c not in frame.columns]
    frame = frame.with_columns(missing)
    if SYNTHETIC_ID in frame.columns and SYNTHETIC_ID_TYPE in frame.columns:
        kind = pl.col(SYNTHETIC_ID_TYPE).str.strip_chars().str.to_lowercase()
        frame = frame.with_columns(
            pl.when(kind == c).then(pl.col(SYNTHETIC_ID)).otherwise(pl.col(c)).alias(c) for c in IDENTIFIER_COLUMNS)
    return frame


# --- the row checks: every one vectorised over the frame ------------------------------------------


def _parse_date(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.coalesce(text.str.to_date("%Y-%m-%d", strict=False), text.str.to_date("%d/%m/%Y", strict=False))


def normalised(frame: pl.DataFrame) -> pl.DataFrame:
    """Decision lower-cased, cohort type capitalised, dates parsed (null where not a date)."""
    return frame.with_columns(
        pl.col("decision").str.strip_chars().str.to_lowercase().alias("decision"),
        pl.col("cohort_type").str.strip_chars().str.to_titlecase().alias("cohort_type"),
        *[_parse_date(c).alias(f"{c}_parsed") for c in DATE_COLUMNS],
    )


def _problems(frame: pl.DataFrame, condition: pl.Expr, column: str | None, message: pl.Expr | str) -> pl.DataFrame:
    message = pl.lit(message) if isinstance(message, str) else message
    return frame.filter(condition.fill_null(False)).select(
        pl.col("row_number").alias("row"), pl.lit(column, dtype=pl.Utf8).alias("column"),
        message.cast(pl.Utf8).alias("message"))


def row_problems(frame: pl.DataFrame, today: date, columns: list[str]) -> pl.DataFrame:
    """Every failed check of the decided rows of a normalised frame: row, column, message."""
    decision = pl.col("decision")
    decided = decision.is_not_null()
    filled_panel = [c for c in PANEL_COLUMNS if c != "decision" and c in columns]
    checks = []
    if filled_panel:
        stray = pl.concat_str([pl.when(pl.col(c).is_not_null()).then(pl.lit(c)) for c in filled_panel],
                              separator=", ", ignore_nulls=True)
        checks.append(_problems(frame, ~decided & pl.any_horizontal(pl.col(c).is_not_null() for c in filled_panel),
                                "decision", pl.lit("empty, but ") + stray + pl.lit(
                                    " filled: choose accept, reject or defer, or clear the row's panel columns")))
    checks.append(_problems(frame, decided & ~decision.is_in(DECISION_VALUES), "decision",
                            pl.lit("'") + decision + pl.lit("' is not a decision; allowed: accept, reject, defer")))
    accept = decision == "accept"
    kind = pl.col("cohort_type")
    checks += [
        _problems(frame, accept & kind.is_null(), "cohort_type", "required for accept; allowed: Fixed, Flex, Free"),
        _problems(frame, accept & kind.is_not_null() & ~kind.is_in(COHORT_TYPES), "cohort_type",
                  pl.lit("'") + kind + pl.lit("' is not a cohort type; allowed: Fixed, Flex, Free")),
        _problems(frame, decided & ~accept & kind.is_not_null(), "cohort_type",
                  pl.lit("only for accept; leave it empty for ") + decision),
        _problems(frame, decided & ~pl.any_horizontal(pl.col(c).is_not_null() for c in IDENTIFIER_COLUMNS),
                  None, "the row names no person: fill person_key or one of "
                  + ", ".join(IDENTIFIER_COLUMNS[1:])),
    ]
    if SYNTHETIC_ID_TYPE in columns:
        id_type = pl.col(SYNTHETIC_ID_TYPE).str.strip_chars().str.to_lowercase()
        checks.append(_problems(frame, decided & ~id_type.is_in(IDENTIFIER_COLUMNS), SYNTHETIC_ID_TYPE,
                                pl.lit("'") + pl.col(SYNTHETIC_ID_TYPE).fill_null("")
                                + pl.lit("' is not an identifier type; allowed: " + ", ".join(IDENTIFIER_COLUMNS))))
    for column, limit in TEXT_LIMITS.items():
        checks.append(_problems(frame, decided & (pl.col(column).str.len_chars() > limit), column,
                                f"longer than {limit} characters"))
    checks.append(_problems(frame, decided & pl.col("decided_by").is_null(), "decided_by",
                            "required: who decided (name or role of the panel chair)"))
    for column in DATE_COLUMNS:
        value, parsed = pl.col(column), pl.col(f"{column}_parsed")
        if column != "management_end":
            checks.append(_problems(frame, decided & value.is_null(), column, "required: a date, yyyy-mm-dd"))
        checks += [
            _problems(frame, decided & value.is_not_null() & parsed.is_null(), column,
                      "not a date; use yyyy-mm-dd (or dd/mm/yyyy)"),
            _problems(frame, decided & ((parsed < EARLIEST) | (parsed > LATEST)), column,
                      f"outside {EARLIEST} to {LATEST}"),
        ]
    meeting, review, ended = pl.col("meeting_date_parsed"), pl.col("review_date_parsed"), pl.col("management_end_parsed")
    checks += [
        _problems(frame, decided & (meeting > today), "meeting_date",
                  f"after today ({today}): a decision is recorded after its meeting"),
        _problems(frame, decided & (review < meeting), "review_date",
                  pl.lit("before the meeting date (") + meeting.cast(pl.Utf8) + pl.lit("): on or after it")),
        _problems(frame, decided & (ended < meeting), "management_end",
                  pl.lit("before the meeting date (") + meeting.cast(pl.Utf8) + pl.lit("): on or after it")),
        _problems(frame, decided & ~accept & ended.is_not_null(), "management_end",
                  "only for accept (the day management of an accepted person ended)"),
    ]
    return pl.concat(checks).sort(["row", "column"], nulls_last=False)


def as_problems(frame: pl.DataFrame) -> list[Problem]:
    return [Problem(r, c, m) for r, c, m in frame.iter_rows()]
