"""Criminal-justice identifiers: formats, the PNC check letter, normal forms for linking.

Scalar helpers serve the generator and tests; the `*_expr` functions are Polars expressions so
that validation and linking stay set-based.
"""

from __future__ import annotations

import re

import polars as pl

from pipeline.contract import CRN_PATTERN, NOMIS_PATTERN, PNC_PATTERN

# A person key as `pipeline.link` makes it: P and 12 upper-case hex digits, so text order and
# the order of the hex number agree.
PERSON_KEY_PATTERN = r"^P[0-9A-F]{12}$"

# The PNC check letter alphabet leaves out I, O and S, which read as digits.
PNC_CHECK_ALPHABET = "ZABCDEFGHJKLMNPQRTUVWXY"
_PNC_RE = re.compile(PNC_PATTERN)


def pnc_check_letter(year_2digit: int, serial: int) -> str:
    """Check letter for a PNC id: the two-digit year followed by the 7-digit serial, mod 23."""
    return PNC_CHECK_ALPHABET[(year_2digit * 10_000_000 + serial) % 23]


def pnc_is_valid(pnc: str) -> bool:
    m = _PNC_RE.match(pnc)
    if not m:
        return False
    year, serial, letter = m.groups()
    return pnc_check_letter(int(year), int(serial)) == letter


def pnc_normal_form(pnc: str) -> str | None:
    """Short and long forms of the same PNC id give the same normal form (YY/NNNNNNNC)."""
    m = _PNC_RE.match(pnc.strip().upper())
    if not m:
        return None
    year, serial, letter = m.groups()
    return f"{year}/{int(serial):07d}{letter}"


def pnc_check_ok_expr(column: str) -> pl.Expr:
    """True where the value is a well-formed PNC id with the right check letter (null stays null)."""
    parts = pl.col(column).str.extract_groups(PNC_PATTERN)
    year = parts.struct.field("1").cast(pl.Int64, strict=False)
    serial = parts.struct.field("2").cast(pl.Int64, strict=False)
    letter = parts.struct.field("3")
    index = ((year * 10_000_000 + serial) % 23).cast(pl.Int64)
    expected = pl.lit(PNC_CHECK_ALPHABET).str.slice(index, 1)
    return letter == expected


def crn_is_valid(crn: str) -> bool:
    return re.match(CRN_PATTERN, crn) is not None


def nomis_is_valid(nomis: str) -> bool:
    return re.match(NOMIS_PATTERN, nomis) is not None


def pnc_normal_sql(column: str) -> str:
    """DuckDB expression giving the PNC normal form, for linking in SQL (column already quoted)."""
    return (
        f"regexp_extract({column}, '{PNC_PATTERN}', 1) || '/' || "
        f"lpad(regexp_extract({column}, '{PNC_PATTERN}', 2), 7, '0') || "
        f"regexp_extract({column}, '{PNC_PATTERN}', 3)"
    )


def name_normal_sql(column: str) -> str:
    """DuckDB expression: upper-case letters only, accents folded, so 'O\u2019Brien' meets 'OBRIEN'."""
    return f"regexp_replace(upper(strip_accents({column})), '[^A-Z]', '', 'g')"
