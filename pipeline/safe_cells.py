"""One formula-injection rule for every CSV output and every XLSX text cell.

Spreadsheets evaluate a cell whose text starts with `=`, `+`, `-` or `@` as a formula (and a
leading tab or carriage return can hide such a character from a reviewer). A value from the data
(a name, a reason, an offence description) must never run as one, in Excel, LibreOffice or
Google Sheets, whether the panel opens our CSV or our workbook.

The rule (`neutralise`): a text value starting with `=`, `+`, `-`, `@`, a tab or a carriage
return gets a leading apostrophe, so it is shown as text and never evaluated. The one exception
is a plain negative number (`-12`, `-3.5`), which a spreadsheet would read as that number and
nothing else. A name that legitimately starts with `-` (`-Smith`, or a hyphen left by a
system) is therefore written `'-Smith`: a spreadsheet would otherwise read it as the formula
`-Smith` (a #NAME? error at best) and there is no safe way to tell a harmless `-` from
`-cmd|'/c calc'!A0` by looking at it. The apostrophe is visible in a text editor and in Python,
which is the price of one rule that holds everywhere; it is documented in docs/panel-pack.md.
"""

from __future__ import annotations

import re

import polars as pl

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEGATIVE_NUMBER = re.compile(r"-\d+(?:\.\d+)?")
# The same rule as a regex for Polars, which has no look-ahead: a trigger first ...
_TRIGGER_RE = r"^[=+\-@\t\r]"
# ... unless the whole value is a negative number.
_NEGATIVE_RE = r"^-\d+(?:\.\d+)?$"


def is_formula_like(value: str) -> bool:
    return value.startswith(TRIGGERS) and not _NEGATIVE_NUMBER.fullmatch(value)


def neutralise(value):
    """The value, with a leading apostrophe if a spreadsheet would evaluate it; non-text as is."""
    if isinstance(value, str) and is_formula_like(value):
        return "'" + value
    return value


def neutralise_expr(column: str) -> pl.Expr:
    """`neutralise` as a Polars expression over a text column (set-based, for large CSVs)."""
    col = pl.col(column)
    guard = col.str.contains(_TRIGGER_RE) & ~col.str.contains(_NEGATIVE_RE)
    return pl.when(guard).then(pl.lit("'") + col).otherwise(col).alias(column)


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column neutralised; other columns untouched."""
    text = [name for name, dtype in frame.schema.items() if dtype in (pl.Utf8, pl.String)]
    return frame.with_columns([neutralise_expr(name) for name in text]) if text else frame


def write_safe_csv(frame: pl.DataFrame, path) -> None:
    """The one way the project writes a CSV output."""
    safe_frame(frame).write_csv(path)
