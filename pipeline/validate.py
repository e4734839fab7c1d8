"""Row validation with pandera's polars backend; schemas derived from the extract contract.

Validation runs on the text of each extract (after column mapping and light normalisation) so
that a value that cannot be parsed is reported with what was in the file, not lost to a failed
cast. Every failure is collected (lazy validation) with a reason code; a row with any failure is
quarantined, the others are cast to their contract types.

Uniqueness of natural keys is checked across the whole file in the warehouse (see
`pipeline.ingest`), because a large extract is validated in batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from pipeline.contract import (
    EARLIEST_DATE,
    OFFENCE_CODE_PATTERN,
    SEX_WORDS,
    Column,
    Extract,
    Kind,
    RejectReason,
    offence_code_form,
)
from pipeline.errors import InputFileError
from pipeline.identifiers import pnc_check_ok_expr

ISO_FORMATS = ["%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
LINE = "_line"

@dataclass(frozen=True)
class ParseOptions:
    extract_date: date
    date_formats: tuple[str, ...]


PARSED = "__date__"  # prefix of the hidden columns holding each date column parsed once


def parsed_date(column: str) -> pl.Expr:
    return pl.col(PARSED + column)


def with_parsed_dates(frame: pl.DataFrame, extract: Extract, options: ParseOptions) -> pl.DataFrame:
    """Parse every date column once; the checks and the cast read these hidden columns.

    Each distinct text is parsed once and looked up for every row: a million rows hold a few
    thousand dates, and trying each format on every row took a third of the validation."""
    parsed = []
    for c in extract.columns:
        if c.kind is Kind.DATE:
            texts = frame.get_column(c.name).unique().drop_nulls()
            dates = pl.DataFrame({c.name: texts}).select(_date_expr(c.name, options.date_formats)).to_series()
            parsed.append(pl.col(c.name).replace_strict(texts, dates, default=None, return_dtype=pl.Date)
                          .alias(PARSED + c.name))
    return frame.with_columns(parsed)


def _date_expr(column: str, formats: tuple[str, ...]) -> pl.Expr:
    tried = list(dict.fromkeys([*formats, *ISO_FORMATS]))
    return pl.coalesce(
        [pl.col(column).str.strptime(pl.Date, fmt, strict=False, exact=True) for fmt in tried]
    )


def _number_expr(column: Column) -> pl.Expr:
    dtype = pl.Int64 if column.kind is Kind.INTEGER else pl.Float64
    return pl.col(column.name).cast(dtype, strict=False)


def typed_expr(column: Column, options: ParseOptions) -> pl.Expr:
    """Expression casting the text of a column to its contract type."""
    if column.kind is Kind.DATE:
        return parsed_date(column.name).alias(column.name)
    if column.kind in (Kind.INTEGER, Kind.DECIMAL):
        return _number_expr(column).alias(column.name)
    return pl.col(column.name)


def _check(reason: RejectReason, fn) -> pa.Check:
    """A vectorised pandera check whose name is our reason code. `fn(name) -> bool Expr`."""

    def run(data: PolarsData) -> pl.LazyFrame:
        # An empty value passes every check but `missing_required`, which pandera does itself.
        return data.lazyframe.select((pl.col(data.key).is_null() | fn(data.key)).fill_null(True))

    return pa.Check(run, name=reason.value)


def _column_checks(column: Column, extract: Extract, options: ParseOptions) -> list[pa.Check]:
    checks = [_check(RejectReason.TOO_LONG, lambda c, n=column.max_length: pl.col(c).str.len_chars() <= n)]
    if column.allowed:
        checks.append(_check(RejectReason.NOT_ALLOWED_VALUE, lambda c, a=column.allowed: pl.col(c).is_in(list(a))))
    if column.pattern:
        checks.append(_check(RejectReason.BAD_FORMAT, lambda c, p=column.pattern: pl.col(c).str.contains(p)))
    if column.identifier == "pnc":
        checks.append(
            _check(
                RejectReason.BAD_CHECK_LETTER,
                lambda c, p=column.pattern: pnc_check_ok_expr(c) | ~pl.col(c).str.contains(p),
            )
        )
    if column.kind is Kind.DATE:
        parsed = parsed_date
        checks.append(_check(RejectReason.UNPARSEABLE_DATE, lambda c: parsed(c).is_not_null()))
        checks.append(
            _check(RejectReason.DATE_TOO_EARLY, lambda c: parsed(c).is_null() | (parsed(c) >= EARLIEST_DATE))
        )
        if not column.may_be_future:
            checks.append(
                _check(RejectReason.FUTURE_DATE, lambda c: parsed(c).is_null() | (parsed(c) <= options.extract_date))
            )
        if column.is_date_of_birth:
            age_years = lambda c: (  # noqa: E731
                pl.lit(options.extract_date).dt.year() - parsed(c).dt.year()
                - (  # not yet had this year's birthday (month and day, so leap years do not shift it)
                    options.extract_date.month * 100 + options.extract_date.day
                    < parsed(c).dt.month().cast(pl.Int32) * 100 + parsed(c).dt.day().cast(pl.Int32)
                ).cast(pl.Int32)
            )
            checks.append(
                _check(RejectReason.AGE_OUT_OF_RANGE, lambda c: parsed(c).is_null() | age_years(c).is_between(10, 100))
            )
        for later, earlier in extract.ordered_dates:
            if later == column.name:
                checks.append(
                    _check(
                        RejectReason.DATE_ORDER,
                        lambda c, e=earlier: parsed(c).is_null()
                        | parsed_date(e).is_null()
                        | (parsed(c) >= parsed_date(e)),
                    )
                )
    if column.kind in (Kind.INTEGER, Kind.DECIMAL):
        checks.append(_check(RejectReason.NOT_A_NUMBER, lambda c, col=column: _number_expr(col).is_not_null()))
        lo = column.minimum if column.minimum is not None else float("-inf")
        hi = column.maximum if column.maximum is not None else float("inf")
        checks.append(
            _check(
                RejectReason.OUT_OF_RANGE,
                lambda c, col=column: _number_expr(col).is_null() | _number_expr(col).is_between(lo, hi),
            )
        )
    return checks


def build_schema(extract: Extract, options: ParseOptions) -> pa.DataFrameSchema:
    columns = {
        c.name: pa.Column(
            pl.Utf8,
            nullable=not c.required,
            checks=_column_checks(c, extract, options),
            required=True,
        )
        for c in extract.columns
    }
    return pa.DataFrameSchema(columns, name=extract.name, strict=False)


def normalise(frame: pl.DataFrame, extract: Extract, values: Mapping[str, Mapping[str, str]] | None = None
              ) -> pl.DataFrame:
    """Trim, empty to null, canonical case for codes and identifiers; a coded column's own words
    (`values`: column -> your value -> canonical value, matched ignoring case) to its canonical
    values, and sex in words (Male, Female, Not known) to its code. Changes no meaning."""
    exprs = []
    for c in extract.columns:
        own_words = (values or {}).get(c.name)
        coded = bool(own_words) or c.name == "sex" or bool(c.allowed) or c.pattern == OFFENCE_CODE_PATTERN
        if coded and c.name in frame.columns:
            # A coded column holds a few dozen values among millions of rows: each is put in its
            # canonical form once, then looked up.
            texts = frame.get_column(c.name).cast(pl.Utf8).unique().drop_nulls()
            forms = pl.DataFrame({c.name: texts}).select(_canonical_code(c, own_words).alias(c.name)).to_series()
            expr = pl.col(c.name).cast(pl.Utf8).replace_strict(texts, forms, default=None, return_dtype=pl.Utf8)
        else:
            expr = _trimmed(pl.col(c.name))
            if c.identifier:
                expr = expr.str.to_uppercase()
        exprs.append(expr.alias(c.name))
    return frame.with_columns(exprs)


def _trimmed(column: pl.Expr) -> pl.Expr:
    expr = column.cast(pl.Utf8).str.strip_chars()
    return pl.when(expr == "").then(None).otherwise(expr)


def _canonical_code(column: Column, own_words: Mapping[str, str] | None) -> pl.Expr:
    """The canonical form of a coded column's values: own words first, then the column's rule."""
    expr = _trimmed(pl.col(column.name))
    if own_words:
        lookup = {k.strip().upper(): v.strip() for k, v in own_words.items()}
        expr = expr.str.to_uppercase().replace_strict(lookup, default=expr, return_dtype=pl.Utf8)
    if column.name == "sex":
        expr = expr.str.to_uppercase()
        return expr.replace_strict(SEX_WORDS, default=expr, return_dtype=pl.Utf8)
    if column.pattern == OFFENCE_CODE_PATTERN:  # `contract.offence_code_form`: 028/01 from 28/1 or 028-01
        return expr.map_elements(lambda code: offence_code_form(code) or None, return_dtype=pl.Utf8)
    if column.allowed:
        return expr.str.to_lowercase().str.replace_all(r"[ \-]", "_")
    return expr


_REASON_FROM_PANDERA = {"not_nullable": RejectReason.MISSING_REQUIRED.value}


def validate_batch(
    frame: pl.DataFrame, extract: Extract, schema: pa.DataFrameSchema, options: ParseOptions,
    file_name: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate one batch (text columns plus `_line`).

    Returns (typed rows that passed, failures with _line, column, value, reason_code, message).
    A failure of a whole column (no row index: a wrong type, a check that cannot run) raises
    InputFileError naming the file and column: it is no row's fault, and no row may pass it by.
    """
    failures = _empty_failures()
    frame = with_parsed_dates(frame, extract, options)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        _raise_column_failures(cases.filter(pl.col("index").is_null()), extract, file_name)
        cases = cases.filter(pl.col("index").is_not_null())
        if cases.height:
            lines = frame.select(pl.col(LINE)).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))
            failures = (
                cases.select(
                    pl.col("index").cast(pl.Int64),
                    pl.col("column").alias("column_name"),
                    pl.col("failure_case").alias("value"),
                    pl.col("check").replace(_REASON_FROM_PANDERA).alias("reason_code"),
                )
                .join(lines, on="index", how="left")
                .select(LINE, "column_name", "value", "reason_code")
            )
            failures = with_messages(failures)
            earlier = dict(extract.ordered_dates)
            if earlier:  # name the date a date must follow
                failures = failures.with_columns(
                    pl.when(pl.col("reason_code") == RejectReason.DATE_ORDER.value)
                    .then(pl.col("message").str.replace(
                        "the date it must follow", pl.col("column_name").replace_strict(earlier, default="?"), literal=True))
                    .otherwise(pl.col("message")).alias("message")
                )
    bad_lines = failures.get_column(LINE).unique()
    good = frame.filter(~pl.col(LINE).is_in(bad_lines.implode()))
    typed = good.select(LINE, *[typed_expr(c, options) for c in extract.columns])
    return typed, failures


def _raise_column_failures(cases: pl.DataFrame, extract: Extract, file_name: str | None) -> None:
    if not cases.height:
        return
    first = cases.row(0, named=True)
    # The failure case of a column-level failure is a type name or an exception text, never a row's value.
    detail = str(first["failure_case"]).splitlines()[0][:160] if first["failure_case"] is not None else ""
    others = f" (and {cases.height - 1} more column-level failures)" if cases.height > 1 else ""
    raise InputFileError(
        f"{extract.name}: {file_name or 'a batch'}: column {first['column'] or '?'} failed check "
        f"{first['check']} as a whole column: {detail}{others}; nothing was loaded",
        hint="this is not a fault of one row: report it with the file's column types (it should not happen "
        "with text extracts)",
    )


def with_messages(failures: pl.DataFrame) -> pl.DataFrame:
    """Add a plain-English message per failure, built set-based from the templates."""
    templates = {reason.value: reason.template for reason in RejectReason}
    template = pl.col("reason_code").replace_strict(templates, default="{column}: {value}", return_dtype=pl.Utf8)
    message = template.str.replace(
        "{column}", pl.col("column_name").fill_null("row"), literal=True
    ).str.replace("{value}", pl.col("value").fill_null("").str.slice(0, 80), literal=True)
    return failures.with_columns(message.alias("message"))


def _empty_failures() -> pl.DataFrame:
    return pl.DataFrame(
        schema={LINE: pl.Int64, "column_name": pl.Utf8, "value": pl.Utf8, "reason_code": pl.Utf8, "message": pl.Utf8}
    )
