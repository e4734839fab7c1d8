"""Small vectorised helpers: dates, digits, identifiers as strings, collision-free codes."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from pipeline.identifiers import PNC_CHECK_ALPHABET

EPOCH = date(1970, 1, 1)
OPEN = 2**30  # release day of a custody spell still open at the extract date
UPPER = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
PNC_LETTERS = np.array(list(PNC_CHECK_ALPHABET))
YEAR = 365.25


def day(d: date) -> int:
    return (d - EPOCH).days


def year_of(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def dates(name: str, days: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(name, np.asarray(days, dtype=np.int32)).cast(pl.Date)
    if valid is not None:
        s = pl.select(pl.when(pl.Series(valid)).then(s).alias(name)).to_series()
    return s


def ints(name: str, values: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(name, np.asarray(values, dtype=np.int64))
    if valid is not None:
        s = pl.select(pl.when(pl.Series(valid)).then(s).alias(name)).to_series()
    return s


def choose(values: tuple[str, ...] | list[str], idx: np.ndarray, name: str) -> pl.Series:
    """Strings by category index, stored as an Enum (cheap for millions of rows)."""
    cats = list(dict.fromkeys(values))
    return pl.Series(name, cats, dtype=pl.Enum(cats)).gather(np.asarray(idx, dtype=np.int64))


def digits(values: np.ndarray, width: int) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=np.int64)).cast(pl.String).str.zfill(width)


def letters(idx: np.ndarray, alphabet: np.ndarray = UPPER) -> pl.Series:
    return pl.Series(alphabet[np.asarray(idx, dtype=np.int64)], dtype=pl.String)


def where_str(mask: np.ndarray, then: pl.Series, otherwise: pl.Series | None = None) -> pl.Series:
    expr = pl.when(pl.Series(mask)).then(then)
    expr = expr.otherwise(otherwise) if otherwise is not None else expr
    return pl.select(expr.alias(then.name)).to_series()


def group_offsets(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def scramble(index: np.ndarray, space: int, multiplier: int, offset: int) -> np.ndarray:
    """A bijection of [0, space): distinct people get distinct codes, with no global state.

    An affine map modulo `space` with a multiplier coprime to it; it depends on the person's
    global index only, so the code is the same whatever block or chunk the person is made in.
    """
    assert np.gcd(multiplier, space) == 1
    return (np.asarray(index, dtype=np.int64) * multiplier + offset) % space


def nomis_strings(codes: np.ndarray) -> pl.Series:
    """Integers in [0, 26*10^4*26*26) to A1234BC style prison numbers."""
    codes = np.asarray(codes, dtype=np.int64)
    first = codes // (10_000 * 676)
    dig = (codes // 676) % 10_000
    rest = codes % 676
    return pl.select(pl.concat_str([
        pl.lit(letters(first)), pl.lit(digits(dig, 4)), pl.lit(letters(rest // 26)), pl.lit(letters(rest % 26)),
    ])).to_series()


def crn_strings(codes: np.ndarray) -> pl.Series:
    codes = np.asarray(codes, dtype=np.int64)
    return pl.select(pl.concat_str([pl.lit(letters(codes // 1_000_000)),
                                    pl.lit(digits(codes % 1_000_000, 6))])).to_series()


def pnc_strings(year4: np.ndarray, serial: np.ndarray, long_form: np.ndarray) -> pl.Series:
    yy = np.asarray(year4, dtype=np.int64) % 100
    letter = letters((yy * 10_000_000 + serial) % 23, PNC_LETTERS)
    df = pl.DataFrame({
        "y4": pl.Series(year4, dtype=pl.Int64).cast(pl.String),
        "yy": digits(yy, 2),
        "s7": digits(serial, 7),
        "s": pl.Series(serial, dtype=pl.Int64).cast(pl.String),
        "l": letter,
        "long": np.asarray(long_form, dtype=bool),
    })
    return df.select(
        pl.when(pl.col("long"))
        .then(pl.concat_str([pl.col("y4"), pl.lit("/"), pl.col("s7"), pl.col("l")]))
        .otherwise(pl.concat_str([pl.col("yy"), pl.lit("/"), pl.col("s"), pl.col("l")]))
    ).to_series()

