"""`pack.xlsx`: the panel's workbook (XlsxWriter).

Sheets: `ranked` (the proposed, frozen header, autofilter, component columns and reasons),
`movement`, `release watch`, `data quality`, `due for review`, `decisions` (prefilled with the
proposed people and then those whose decision is due for review,
drop-down validation for the panel's columns) and `about` (the run, and what each decisions
column means). Every text cell goes through `pipeline.safe_cells.neutralise` and is written
with `write_string`, so no value from the data is ever a formula. The decisions columns are
the contract of `iom decisions import`; see docs/panel-pack.md.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from pipeline.decision_file import COHORT_TYPES, DECISION_VALUES, SHEET
from pipeline.safe_cells import neutralise
from reporting.tables import IDENTIFIERS, ReportData

DECISIONS_SHEET = SHEET
# (column, what it holds); the first ten are prefilled from the run, the rest are the panel's.
DECISION_COLUMNS: list[tuple[str, str]] = [
    ("person_key", "the person key of the run (a pseudonym in a pseudonymised pack)"),
    ("police_person_id", "police nominal id"),
    ("pnc_id", "PNC id"),
    ("crn", "probation case reference number"),
    ("nomis_id", "prison (NOMIS) number"),
    ("name", "forenames and surname (a pseudonym in a pseudonymised pack)"),
    ("area", "the area the person is proposed in"),
    ("rank", "rank in the run"),
    ("score", "rule score in the run"),
    ("proposed_cohort_type", "the type the rules propose: Fixed or Flex"),
    ("decision", "the panel's decision: accept, reject or defer"),
    ("cohort_type", "the type the panel assigns: Fixed, Flex or Free"),
    ("reason", "why, in a sentence (up to 500 characters)"),
    ("decided_by", "who decided (name or role of the panel chair)"),
    ("meeting_date", "the date of the panel meeting"),
    ("review_date", "when the decision is due for review; on or after the meeting date"),
    ("management_end", "for an accepted person whose management has ended: the day it ended (else empty)"),
]
DECISIONS = DECISION_VALUES
PREFILLED = 10
DATE_INPUTS = ("meeting_date", "review_date", "management_end")


class _Writer:
    def __init__(self, book: xlsxwriter.Workbook):
        self.book = book
        self.header = book.add_format({"bold": True, "bg_color": "#DCE6F1", "border": 1, "text_wrap": True,
                                       "valign": "top"})
        self.date = book.add_format({"num_format": "yyyy-mm-dd"})
        self.wrap = book.add_format({"text_wrap": True, "valign": "top"})
        self.input = book.add_format({"bg_color": "#FFF9E5", "border": 1, "border_color": "#BFBFBF"})
        self.input_date = book.add_format({"bg_color": "#FFF9E5", "border": 1, "border_color": "#BFBFBF",
                                           "num_format": "yyyy-mm-dd"})

    def cell(self, sheet, row: int, col: int, value, fmt=None) -> None:
        if value is None:
            sheet.write_blank(row, col, None, fmt)
        elif isinstance(value, bool):
            sheet.write_string(row, col, "yes" if value else "no", fmt)
        elif isinstance(value, int | float):
            sheet.write_number(row, col, value, fmt)
        elif isinstance(value, datetime | date):
            sheet.write_datetime(row, col, datetime(value.year, value.month, value.day)
                                 if not isinstance(value, datetime) else value, fmt or self.date)
        else:
            sheet.write_string(row, col, neutralise(str(value)), fmt)

    def table(self, name: str, frame: pl.DataFrame, widths: dict[str, int] | None = None,
              wrap: tuple[str, ...] = ()) -> None:
        sheet = self.book.add_worksheet(name)
        for col, column in enumerate(frame.columns):
            sheet.write_string(0, col, column, self.header)
            sheet.set_column(col, col, (widths or {}).get(column, max(10, min(len(column) + 2, 24))),
                             self.wrap if column in wrap else None)
        for r, values in enumerate(frame.iter_rows(), start=1):
            for c, value in enumerate(values):
                self.cell(sheet, r, c, value)
        sheet.freeze_panes(1, 0)
        if frame.width:
            sheet.autofilter(0, 0, max(frame.height, 1), frame.width - 1)
        return sheet


def _name_expr() -> pl.Expr:
    return pl.concat_str([pl.col("forenames").fill_null(""), pl.col("surname").fill_null("")], separator=" ") \
        .str.strip_chars().alias("name")


def _ranked(data: ReportData) -> pl.DataFrame:
    m = data.members
    points = [pl.col(f"points_{c}").alias(c) for c in data.components]
    extra = [pl.col(data.probability_column).alias("model_probability"),
             *[c for c in ("model_band", "model_rank") if c in m.columns]] if data.probability_column else []
    return m.select(
        "rank", "area_rank", "person_key", _name_expr(), "area", "score",
        pl.col("priority"), pl.col("super_prolific"), "cohort_type", "selection_note",
        *[c for c in IDENTIFIERS if c in m.columns], *[c for c in ("age", "offences_12m") if c in m.columns],
        *extra, *points, "reasons",
    )


def _decisions_frame(data: ReportData) -> pl.DataFrame:
    """The proposed, in rank order, then those due for review who are not proposed (to decide again)."""
    m = data.members
    proposed = m.select(
        "person_key", *[pl.col(c) if c in m.columns else pl.lit(None, dtype=pl.Utf8).alias(c) for c in IDENTIFIERS],
        _name_expr(), "area", "rank", "score", pl.col("cohort_type").alias("proposed_cohort_type"),
    )
    due = data.due_for_review
    if not due.height:
        return proposed
    others = due.join(m.select("person_key"), on="person_key", how="anti").select(
        "person_key", *[pl.col(c) if c in due.columns else pl.lit(None, dtype=pl.Utf8).alias(c) for c in IDENTIFIERS],
        _name_expr(), "area", pl.lit(None, dtype=proposed.schema["rank"]).alias("rank"),
        pl.lit(None, dtype=proposed.schema["score"]).alias("score"),
        pl.lit(None, dtype=pl.Utf8).alias("proposed_cohort_type"))
    return pl.concat([proposed, others.cast(proposed.schema)])


def _data_quality(data: ReportData) -> pl.DataFrame:
    rows = [("rejected rows", r["source"], r["reason_code"], r["rows"]) for r in data.rejects.iter_rows(named=True)]
    rows += [("unlinked records", s["source"], "not linked to another agency", s["unlinked"]) for s in data.link]
    rows += [("unknown offence code", "police_offences", r["code"], r["count"])
             for r in data.unknown_codes.iter_rows(named=True)]
    return pl.DataFrame(rows, schema={"check": pl.Utf8, "source": pl.Utf8, "detail": pl.Utf8, "count": pl.Int64},
                        orient="row")


def _due(data: ReportData) -> pl.DataFrame:
    """The panel's decisions due for review at the run's as-of date (also prefilled in `decisions`)."""
    due = data.due_for_review
    columns = ["person_key", "name", "area", "decision", "cohort_type", "meeting_date", "review_date", "decided_by",
               "reason"]
    if not due.height:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.Utf8))
    return due.select("person_key", _name_expr(), *[c for c in columns[2:] if c in due.columns])


def _decisions_sheet(w: _Writer, data: ReportData) -> None:
    sheet = w.book.add_worksheet(DECISIONS_SHEET)
    frame = _decisions_frame(data)
    for col, (name, note) in enumerate(DECISION_COLUMNS):
        sheet.write_string(0, col, name, w.header)
        sheet.write_comment(0, col, note)
        sheet.set_column(col, col, 14 if col < PREFILLED else 16)
    sheet.set_column(5, 5, 24)
    sheet.set_column(12, 12, 40)
    last = max(frame.height, 1)
    for r, values in enumerate(frame.iter_rows(), start=1):
        for c, value in enumerate(values):
            w.cell(sheet, r, c, value)
        for c in range(PREFILLED, len(DECISION_COLUMNS)):
            fmt = w.input_date if DECISION_COLUMNS[c][0] in DATE_INPUTS else w.input
            sheet.write_blank(r, c, None, fmt)
    col = {name: i for i, (name, _) in enumerate(DECISION_COLUMNS)}
    sheet.data_validation(1, col["decision"], last, col["decision"], {
        "validate": "list", "source": list(DECISIONS), "error_title": "decision",
        "error_message": "Choose accept, reject or defer.", "input_title": "decision",
        "input_message": "accept, reject or defer"})
    sheet.data_validation(1, col["cohort_type"], last, col["cohort_type"], {
        "validate": "list", "source": list(COHORT_TYPES), "error_title": "cohort type",
        "error_message": "Choose Fixed, Flex or Free.", "input_title": "cohort type",
        "input_message": "Fixed, Flex or Free"})
    for name, limit in (("reason", 500), ("decided_by", 100)):
        sheet.data_validation(1, col[name], last, col[name], {
            "validate": "length", "criteria": "<=", "value": limit, "error_title": name.replace("_", " "),
            "error_message": f"At most {limit} characters."})
    sheet.data_validation(1, col["meeting_date"], last, col["meeting_date"], {
        "validate": "date", "criteria": "between", "minimum": date(2000, 1, 1), "maximum": date(2099, 12, 31),
        "error_title": "meeting date", "error_message": "Enter a date (yyyy-mm-dd).",
        "input_title": "meeting date", "input_message": "a date, yyyy-mm-dd"})
    # On or after the same row's meeting date (a relative reference: Excel shifts it row by row).
    meeting = f"{xl_col_to_name(col['meeting_date'])}2"
    sheet.data_validation(1, col["review_date"], last, col["review_date"], {
        "validate": "date", "criteria": ">=", "value": f"={meeting}",
        "error_title": "review date", "error_message": "Enter a date on or after the meeting date (yyyy-mm-dd).",
        "input_title": "review date", "input_message": "a date on or after the meeting date"})
    sheet.data_validation(1, col["management_end"], last, col["management_end"], {
        "validate": "date", "criteria": ">=", "value": f"={meeting}",
        "error_title": "management end", "error_message": "Enter a date on or after the meeting date (yyyy-mm-dd).",
        "input_title": "management end", "input_message": "only when management of an accepted person ended"})
    sheet.freeze_panes(1, 1)
    sheet.autofilter(0, 0, last, len(DECISION_COLUMNS) - 1)


def _about(w: _Writer, data: ReportData, pseudonymised: bool) -> None:
    sheet = w.book.add_worksheet("about")
    sheet.set_column(0, 0, 24)
    sheet.set_column(1, 1, 90)
    run = data.run
    lines = [
        ("run", run["run_id"]), ("as of", run["as_of"]), ("rule set", f"{run['rules_name']} {run['rules_version']}"),
        ("rule set sha256", run["rules_sha256"]), ("code version", run["code_version"]),
        ("pseudonymised", "yes: names and identifiers are pseudonyms" if pseudonymised else "no"),
        ("", ""), ("decisions sheet", "fill one row per person the panel decides on; the columns are:"),
        *DECISION_COLUMNS,
    ]
    for r, (label, value) in enumerate(lines):
        w.cell(sheet, r, 0, label, w.header if label else None)
        w.cell(sheet, r, 1, value)


def write_workbook(data: ReportData, path: Path, pseudonymised: bool = False) -> Path:
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False,
                                           "strings_to_numbers": False})
    # The as-of date as the creation time: the same inputs give the same workbook, byte for byte.
    as_of = data.run["as_of"]
    book.set_properties({"title": f"IOM panel workbook, run {data.run['run_id']}",
                         "created": datetime(as_of.year, as_of.month, as_of.day)})
    try:
        w = _Writer(book)
        w.table("ranked", _ranked(data), widths={"reasons": 70, "name": 22, "selection_note": 24}, wrap=("reasons",))
        moves = data.movement.select("cohort", "status", "person_key", _name_expr(), "area", "score", "rank", "reason",
                                     *IDENTIFIERS) if data.movement.height else pl.DataFrame(
            schema={"cohort": pl.Utf8, "status": pl.Utf8, "person_key": pl.Utf8, "reason": pl.Utf8})
        w.table("movement", moves, widths={"reason": 50, "name": 22})
        watch = data.release_watch
        if "surname" in watch.columns:
            watch = watch.select("person_key", _name_expr(), *[c for c in watch.columns
                                                               if c not in ("person_key", "surname", "forenames")])
        w.table("release watch", watch, widths={"reasons_if_released": 70}, wrap=("reasons_if_released",))
        w.table("data quality", _data_quality(data), widths={"detail": 40})
        w.table("due for review", _due(data), widths={"name": 22, "reason": 50}, wrap=("reason",))
        if data.disagreement is not None:
            d = data.disagreement
            w.table("model disagreement", d.select("kind", "person_key", _name_expr(), *[
                c for c in d.columns if c not in ("kind", "person_key", "surname", "forenames")]), widths={"kind": 22, "name": 22})
        _decisions_sheet(w, data)
        _about(w, data, pseudonymised)
    finally:
        book.close()
    return path
