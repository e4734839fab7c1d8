"""Identity corruption: a probation or prison copy of a person as real extracts hold it.

Harmless variation that a normaliser absorbs (case, accents, apostrophes, an extra middle
name) and genuine corruption at the rates of `IdentityNoise`: typos, nicknames, surname
variants, swapped names, transposed or mistyped or missing dates of birth, missing or mistyped
PNC ids. Which corruption each record received is written to the truth folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from synthetic.formats import IdentityNoise
from synthetic.people import Names
from synthetic.util import EPOCH, letters, pnc_strings

CORRUPTIONS = ("name_typo", "nickname", "surname_variant", "swapped_names", "dob_transposed", "dob_digit",
               "dob_missing", "pnc_missing", "pnc_mistyped", "nomis_missing")
_ACCENT_FOLD = {"ë": "e", "é": "e", "è": "e", "ï": "i", "ö": "o", "É": "E", "Ë": "E", "Ï": "I", "Ö": "O", "È": "E"}


@dataclass
class Copy:
    surname: pl.Series
    forenames: pl.Series
    dob: np.ndarray
    dob_known: np.ndarray
    pnc: pl.Series  # null where not held
    nomis_held: np.ndarray
    flags: dict[str, np.ndarray]


def _fold(expr: pl.Expr) -> pl.Expr:
    for accented, plain in _ACCENT_FOLD.items():
        expr = expr.str.replace_all(accented, plain, literal=True)
    return expr


def _dob_variants(rng: np.random.Generator, dob: np.ndarray, transpose: np.ndarray,
                  digit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = dob.astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    mo = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dd = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    can_swap = (dd <= 12) & (dd != mo)
    transpose = transpose & can_swap
    # a wrong digit: the units digit of the day (kept a real day) or of the year
    day_digit = rng.random(dob.size) < 0.5
    new_dd = np.where(day_digit, (dd // 10) * 10 + (dd % 10 + rng.integers(1, 10, dob.size)) % 10, dd)
    new_dd = np.where((new_dd < 1) | (new_dd > 28), dd, new_dd)
    new_y = np.where(day_digit, y, (y // 10) * 10 + (y % 10 + rng.integers(1, 10, dob.size)) % 10)
    digit = digit & ((new_dd != dd) | (new_y != y))
    out_y = np.where(digit, new_y, y)
    out_m = np.where(transpose, dd, mo)
    out_d = np.where(transpose, mo, np.where(digit, new_dd, dd))
    out_d = np.where(digit & (out_d > 28), 28, out_d)  # a changed year keeps a real day (no 29 February)
    months = ((out_y - 1970) * 12 + out_m - 1).astype("datetime64[M]")
    days = (months.astype("datetime64[D]") - np.datetime64(EPOCH)).astype(np.int64) + out_d - 1
    return days, transpose, digit


def copy_of(rng: np.random.Generator, who: np.ndarray, names: Names, dob: np.ndarray, pnc_year: np.ndarray,
            pnc_serial: np.ndarray, has_pnc: np.ndarray, has_nomis: np.ndarray, noise: IdentityNoise,
            benign: float) -> Copy:
    """One agency's copy of the people `who` it holds, as arrays over all the block's people
    (others get nulls and no flags): made for those people only, which is most of its cost."""
    n = dob.size
    part = corrupt(rng, names.take(who), dob[who], pnc_year[who], pnc_serial[who], has_pnc[who], has_nomis[who],
                   noise, benign)

    def spread(series: pl.Series) -> pl.Series:
        return pl.repeat(None, n, dtype=pl.String, eager=True).alias(series.name).scatter(who, series)

    full_dob = dob.copy()
    full_dob[who] = part.dob
    known = np.ones(n, dtype=bool)
    known[who] = part.dob_known
    nomis = np.zeros(n, dtype=bool)
    nomis[who] = part.nomis_held
    flags = {}
    for kind, values in part.flags.items():
        flags[kind] = np.zeros(n, dtype=bool)
        flags[kind][who] = values
    return Copy(spread(part.surname), spread(part.forenames), full_dob, known, spread(part.pnc), nomis, flags)


def corrupt(rng: np.random.Generator, names: Names, dob: np.ndarray, pnc_year: np.ndarray, pnc_serial: np.ndarray,
            has_pnc: np.ndarray, has_nomis: np.ndarray, noise: IdentityNoise, benign: float) -> Copy:
    """One agency's copy of each person (the same copy on every row of that agency)."""
    n = dob.size
    flag = {k: rng.random(n) < getattr(noise, k) for k in CORRUPTIONS}
    flag["pnc_missing"] &= has_pnc
    flag["pnc_mistyped"] &= has_pnc & ~flag["pnc_missing"]
    flag["nomis_missing"] &= has_nomis
    flag["dob_digit"] &= ~flag["dob_missing"]
    flag["dob_transposed"] &= ~flag["dob_missing"] & ~flag["dob_digit"]

    # names: benign variation first (upper case, accents folded, apostrophe dropped, extra middle name)
    u = rng.random(n)
    upper = u < benign
    fold = names.accent & (rng.random(n) < 0.5)
    no_apostrophe = names.apostrophe & (rng.random(n) < 0.4)
    extra_middle = (~names.has_middle) & (u >= benign) & (u < benign * 1.4)
    half = rng.random(n) < 0.5
    df = pl.DataFrame({
        "s": names.surname, "first": names.first, "middle": names.middle, "nick": names.nickname,
        "extra": names.forename_pool.gather(rng.integers(0, names.forename_pool.len(), n)),
        "other": names.surname_pool.gather(rng.integers(0, names.surname_pool.len(), n)),
        "u": rng.random(n), "op": rng.integers(0, 4, n), "ch": letters(rng.integers(0, 26, n)).str.to_lowercase(),
        "upper": upper, "fold": fold, "noap": no_apostrophe, "xmid": extra_middle, "half": half,
        "double": names.double_barrelled,
        **{k: flag[k] for k in ("name_typo", "nickname", "surname_variant", "swapped_names")},
    })
    # one step at a time, each materialised: nested whens over the same column would grow the
    # expression tree with every step
    s = pl.col("s")
    df = df.with_columns(s=pl.when(pl.col("noap")).then(s.str.replace_all("\u2019", "", literal=True)).otherwise(s))
    df = df.with_columns(s=pl.when(pl.col("fold")).then(_fold(s)).otherwise(s),
                         first=pl.when(pl.col("fold")).then(_fold(pl.col("first"))).otherwise(pl.col("first")))
    variant = (pl.when(pl.col("double") & pl.col("half")).then(s.str.split("-").list.first())
               .when(pl.col("double")).then(s.str.replace("-", " ", literal=True))
               .otherwise(pl.concat_str([s, pl.lit("-"), pl.col("other")])))
    df = df.with_columns(s=pl.when(pl.col("surname_variant")).then(variant).otherwise(s))
    k = (pl.col("u") * (s.str.len_chars() - 2)).floor().cast(pl.Int64) + 1
    op = pl.col("op")
    typo = (pl.when(op == 0).then(pl.concat_str([s.str.slice(0, k), pl.col("ch"), s.str.slice(k + 1)]))
            .when(op == 1).then(pl.concat_str([s.str.slice(0, k), s.str.slice(k + 1)]))
            .when(op == 2).then(pl.concat_str([s.str.slice(0, k + 1), s.str.slice(k)]))
            .otherwise(pl.concat_str([s.str.slice(0, k), s.str.slice(k + 1, 1), s.str.slice(k, 1), s.str.slice(k + 2)])))
    df = df.with_columns(s=pl.when(pl.col("name_typo")).then(typo).otherwise(s))
    first = pl.when(pl.col("nickname")).then(pl.col("nick")).otherwise(pl.col("first"))
    middle = pl.when(pl.col("xmid")).then(pl.col("extra")).otherwise(pl.col("middle"))
    df = df.with_columns(f=pl.when(middle == "").then(first).otherwise(pl.concat_str([first, pl.lit(" "), middle])))
    df = df.with_columns(
        sur=pl.when(pl.col("swapped_names")).then(pl.col("first")).otherwise(s),
        fore=pl.when(pl.col("swapped_names")).then(s).otherwise(pl.col("f")),
    )
    out = df.select(
        pl.when(pl.col("upper")).then(pl.col("sur").str.to_uppercase()).otherwise(pl.col("sur")).alias("surname"),
        pl.when(pl.col("upper")).then(pl.col("fore").str.to_uppercase()).otherwise(pl.col("fore")).alias("forenames"),
    )

    days, transposed, digit = _dob_variants(rng, dob, flag["dob_transposed"], flag["dob_digit"])
    flag["dob_transposed"], flag["dob_digit"] = transposed, digit

    # PNC: held in either form; a mistyped one has a digit of the serial changed and a
    # check letter that fits it, so it passes validation and points at nobody (or somebody else)
    position = 10 ** rng.integers(0, 7, n)
    old_digit = (pnc_serial // position) % 10
    new_serial = pnc_serial + ((old_digit + rng.integers(1, 10, n)) % 10 - old_digit) * position
    serial = np.where(flag["pnc_mistyped"], new_serial, pnc_serial)
    long_form = rng.random(n) < 0.6
    held = has_pnc & ~flag["pnc_missing"]
    pnc = pl.select(pl.when(pl.Series(held)).then(pnc_strings(pnc_year, serial, long_form)).alias("pnc_id")).to_series()
    return Copy(out["surname"], out["forenames"], days, ~flag["dob_missing"], pnc, has_nomis & ~flag["nomis_missing"],
                flag)
