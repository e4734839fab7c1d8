"""Synthetic police, probation and prison extracts for demos, tests and benchmarks.

`generate_extracts` writes the five extracts of the contract (`pipeline.contract`) in the shapes a
partnership really receives: force-specific column names, different encodings, delimiters and
date formats, a Parquet file, and a sprinkling of faulty rows for validation to quarantine.

Nobody in the output is real. Names are built from syllables, areas are fictional, identifiers
are drawn at random (PNC and CRO ids carry a correct check letter).

The content is shaped so that the later stages have something to find:

- an age-crime curve (most people 16-45 at the extract date, peak in the twenties);
- heavy-tailed offending (lognormal-Poisson counts, offending clustered in "active periods",
  the top tenth of people committing about half of all offences, a super-prolific tail with
  10+ offences in the last 12 months) over ten years of history;
- custody spells (sentenced short and long, remand, recall) tied to offending, with some
  people in custody at the extract date;
- probation supervision periods (licence after custody, community and suspended orders,
  post-sentence supervision) with an OGRS3-like score, RoSH, MAPPA and previous sanctions
  consistent with the person's police history, and enforcement events during supervision.

Everything is vectorised (numpy for the draws, polars for strings and writing) and
deterministic: each stage draws from its own child of `numpy.random.SeedSequence(seed)`, so
the same arguments give byte-identical files and a change to one stage does not shift the
others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.identifiers import PNC_CHECK_ALPHABET

log = logging.getLogger(__name__)

__all__ = [
    "AREAS",
    "EXTRACT_FORMATS",
    "FAULT_KINDS",
    "GeneratedData",
    "GeneratedExtract",
    "generate_extracts",
]


# ----------------------------------------------------------------------------------------------
# Public result types
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedExtract:
    name: str  # canonical extract name, e.g. "police_nominals"
    path: Path  # file written (absolute)
    format: str  # "csv" | "parquet"
    encoding: str  # "utf-8" | "utf-8-sig" | "cp1252"
    delimiter: str  # "," etc (ignored for parquet)
    date_formats: list[str]  # strptime formats used for dates in that file
    column_mapping: dict[str, str]  # the file's own column name -> canonical column name
    rows: int


@dataclass(frozen=True)
class GeneratedData:
    extracts: list[GeneratedExtract]
    extract_date: date
    seed: int
    people: int
    faults: dict[str, int]  # injected faults by kind


# ----------------------------------------------------------------------------------------------
# File formats: one entry per extract, file column name -> canonical name (in file order)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Format:
    file_name: str
    format: str
    encoding: str
    delimiter: str
    date_format: str
    columns: dict[str, str] = field(default_factory=dict)  # file column -> canonical column


EXTRACT_FORMATS: dict[str, _Format] = {
    "police_nominals": _Format(
        "police_nominals.csv", "csv", "utf-8", ",", "%d/%m/%Y",
        {
            "PersonID": "police_person_id",
            "PNC": "pnc_id",
            "CRO": "cro_number",
            "Surname": "surname",
            "Forenames": "forenames",
            "DOB": "date_of_birth",
            "Gender": "sex",
            "Ethnicity": "ethnicity",
            "Area": "area",
            "DateOfDeath": "deceased_date",
        },
    ),
    "police_offences": _Format(
        "police_offences.csv", "csv", "utf-8", ",", "%Y-%m-%d",
        {c: c for c in (
            "offence_id", "police_person_id", "offence_date", "recorded_date", "ho_offence_code",
            "offence_description", "outcome", "outcome_date", "area",
        )},
    ),
    "probation_cases": _Format(
        "probation_cases.csv", "csv", "cp1252", ";", "%d/%m/%Y",
        {
            "CRN": "crn",
            "PNC Number": "pnc_id",
            "NOMS Number": "nomis_id",
            "Family Name": "surname",
            "Given Names": "forenames",
            "Date of Birth": "date_of_birth",
            "Gender": "sex",
            "Supervision Type": "supervision_type",
            "Supervision Start": "supervision_start",
            "Supervision End": "supervision_end",
            "Assessment Date": "assessment_date",
            "OGRS3 2yr": "ogrs3_2yr",
            "RoSH": "rosh",
            "MAPPA Level": "mappa_level",
            "Previous Sanctions": "previous_sanctions",
            "First Sanction Date": "first_sanction_date",
            "PDU": "area",
        },
    ),
    "probation_events": _Format(
        "probation_events.parquet", "parquet", "utf-8", ",", "%Y-%m-%d",
        {"CaseRef": "crn", "EventDate": "event_date", "EventType": "event_type"},
    ),
    "prison_custody": _Format(
        "prison_custody.csv", "csv", "utf-8-sig", ",", "%Y-%m-%d",
        {
            "Spell ID": "spell_id",
            "Prison Number": "nomis_id",
            "PNC ID": "pnc_id",
            "Last Name": "surname",
            "First Names": "forenames",
            "Birth Date": "date_of_birth",
            "Sex": "sex",
            "Reception Date": "reception_date",
            "Release Date": "release_date",
            "Expected Release Date": "expected_release_date",
            "Sentence Length (days)": "sentence_days",
            "Custody Type": "custody_type",
            "Release Area": "release_area",
        },
    ),
}

FAULT_KINDS = (
    "unparseable_date",
    "future_date",
    "duplicate_id",
    "malformed_identifier",
    "missing_required",
    "out_of_range",
    "enum_violation",
    "unknown_offence_code",
)

# ----------------------------------------------------------------------------------------------
# Population constants
# ----------------------------------------------------------------------------------------------

AREAS = ("Northgate", "Eastbridge", "Southmoor", "Westfield", "Central")
_AREA_P = np.array([0.27, 0.23, 0.19, 0.20, 0.11])
_SEXES = ("M", "F", "X", "U")
_SEX_P = np.array([0.849, 0.147, 0.001, 0.003])
# 2011 census 18+1 ethnicity codes (monitoring only) and rough shares among nominals.
_ETHNICITY = {
    "W1": 0.690, "W2": 0.010, "W3": 0.008, "W9": 0.040,
    "M1": 0.020, "M2": 0.006, "M3": 0.006, "M9": 0.010,
    "A1": 0.020, "A2": 0.030, "A3": 0.010, "A4": 0.003, "A9": 0.010,
    "B1": 0.030, "B2": 0.020, "B9": 0.010,
    "O1": 0.005, "O9": 0.010,
    "NS": 0.061,
}
HISTORY_YEARS = 10

# Relative frequency of each reference offence code among recorded offences.
_OFFENCE_WEIGHTS = {
    "001/00": 0.02, "004/01": 0.03, "005/01": 0.4, "008/01": 6.0, "008/06": 1.0,
    "105/01": 10.0, "008/55": 4.0, "019/07": 0.1, "021/01": 0.1,
    "034/01": 2.8, "034/02": 0.5, "028/01": 6.5, "028/03": 0.2, "030/01": 3.0,
    "039/00": 2.5, "045/00": 4.5, "048/00": 3.0, "037/02": 0.6, "126/00": 1.4,
    "046/00": 16.0, "049/99": 6.0, "054/01": 2.0, "053/01": 2.0,
    "056/01": 0.2, "058/01": 4.0, "058/04": 4.0,
    "092/01": 3.0, "092/02": 5.0, "092/03": 2.0, "092/04": 0.4,
    "066/01": 4.0, "010/01": 1.5, "080/01": 2.5, "803/01": 1.5,
}
_DEFAULT_OFFENCE_WEIGHT = 0.3
# OGRS3 offence terms by `ogrs3_group` (violence is the reference group).
_OGRS3_OFFENCE = {
    "violence": 0.0, "domestic_burglary": -0.1239, "other_burglary": 0.2406, "robbery": -0.6348,
    "theft_from_person": 0.6612, "shoplifting": 0.6612, "theft_from_vehicle": 0.4272,
    "theft_of_vehicle": 0.3801, "aggravated_vehicle_taking": 0.3801, "vehicle_interference": 0.2622,
    "criminal_damage": 0.205, "drug_possession_supply": 0.0772, "drug_import_production": -0.7956,
    "handling": 0.3519, "absconding_bail": 0.7334, "fraud": 0.1599, "public_order": 0.1819,
    "drink_driving": -0.1214, "sexual_child": -0.6534,
}
_OGRS3_AGE_BOUNDS = np.array([12, 14, 16, 18, 21, 25, 30, 35, 40, 50])  # lower bounds from 10
_OGRS3_MALE = np.array([0.0, 0.08392, 0.07578, -0.0616, -0.6251, -1.0515, -1.1667, -1.326, -1.368,
                        -1.4997, -2.0253])
_OGRS3_FEMALE = np.array([0.785, 0.61385, 0.66952, -0.9592, -0.8975, -1.0285, -1.0528, -1.1291,
                          -1.4219, -1.5247, -2.4498])

_OUTCOMES = ("convicted", "charged", "summonsed", "cautioned", "community_resolution", "nfa", "other",
             "pending")
_RESOLVED_P = np.array([0.36, 0.08, 0.04, 0.08, 0.09, 0.30, 0.05])
_PENDING = 7
_SANCTIONS = (0, 3)  # convicted, cautioned
_CUSTODY_TYPES = ("sentenced", "remand", "recall")
_SUPERVISION = ("licence", "community_order", "suspended_sentence", "pss", "none")
_EVENT_TYPES = ("breach", "recall", "missed_appointment", "positive_drug_test", "other")
_ROSH = ("low", "medium", "high", "very_high")

# Offending model (tuned so that 1M people give about 10M offences).
_RATE_PER_YEAR = 1.05
_RATE_SIGMA = 1.2
_CURRENT_CUSTODY_SHARE = 0.03  # people deliberately placed in custody at the extract date
_PROBATION_SHARE = 0.30

# Name syllables. Surnames are at least 6 letters and forenames at least 4, so that a test can
# look for them in logs without matching ordinary words.
_SURNAME_HEADS = (
    "Ash", "Brack", "Carr", "Dalt", "Elms", "Fenn", "Garr", "Hask", "Ingr", "Jarv", "Kell", "Lind",
    "Marl", "Nett", "Orml", "Pell", "Quar", "Rath", "Sull", "Tarr", "Umbr", "Vick", "Wend", "Yarl",
    "Zell", "Brom", "Cresw", "Dunst", "Fotherg", "Haverl", "Kirkl", "Penh", "Rudg", "Stav", "Thwa",
    "Whitt", "Bex", "Corr", "Drax", "Gunn",
)
_SURNAME_TAILS = (
    "worth", "ridge", "combe", "dale", "field", "holme", "hurst", "ington", "lock", "mere", "stone",
    "thorpe", "wick", "wood", "ley", "ford", "ham", "ton", "croft", "shaw", "garth", "well", "ett",
    "ock", "berry", "cott",
)
_SURNAME_ACCENT_TAILS = ("ère", "ée", "ötter", "énard", "ëlle")
_FORENAME_HEADS = (
    "Al", "Bren", "Cal", "Dar", "Ed", "Fin", "Gar", "Hal", "Is", "Jas", "Kel", "Lor", "Mar", "Nal",
    "Or", "Per", "Ros", "Sil", "Tor", "Val", "Wil", "Yan", "Zar", "Ber", "Cor", "Dun", "Em", "Jor",
)
_MALE_TAILS = ("ian", "ric", "wyn", "ton", "ran", "den", "vin", "rick", "mond", "aldo", "ius", "eth")
_FEMALE_TAILS = ("ina", "ella", "wen", "issa", "anne", "ette", "lyn", "ora", "elia", "elle", "ira", "eva")
_ACCENT_HEADS = ("Zoë", "Noë", "Chloë", "Hél", "Rén", "Anaï", "Bé", "Jö")
_NOT_NAMES = {"Marina", "Person", "Calvin"}
_ACCENT_FOLD = {"ë": "e", "é": "e", "è": "e", "ï": "i", "ö": "o", "É": "E", "Ë": "E", "Ï": "I", "Ö": "O",
                "È": "E"}

_UPPER = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_PNC_LETTERS = np.array(list(PNC_CHECK_ALPHABET))

_STREAMS = (
    "people", "names", "offences", "identifiers", "custody", "probation", "events", "recalls",
    "prison_records", "faults_police_nominals", "faults_police_offences", "faults_probation_cases",
    "faults_probation_events", "faults_prison_custody",
)

_EPOCH = date(1970, 1, 1)
_OPEN = 2**30  # release sentinel for a spell still open


# ----------------------------------------------------------------------------------------------
# Small vectorised helpers
# ----------------------------------------------------------------------------------------------


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _year_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _dates(name: str, days: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(name, np.asarray(days, dtype=np.int32)).cast(pl.Date)
    if valid is not None:
        s = pl.select(pl.when(pl.Series(valid)).then(s).alias(name)).to_series()
    return s


def _ints(name: str, values: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(name, np.asarray(values, dtype=np.int64))
    if valid is not None:
        s = pl.select(pl.when(pl.Series(valid)).then(s).alias(name)).to_series()
    return s


def _choose(values: tuple[str, ...] | list[str], idx: np.ndarray, name: str) -> pl.Series:
    """Strings by category index, stored as an Enum (cheap for millions of rows)."""
    cats = list(dict.fromkeys(values))
    s = pl.Series(name, cats, dtype=pl.Enum(cats))
    return s.gather(np.asarray(idx, dtype=np.int64))


def _digits(values: np.ndarray, width: int) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=np.int64)).cast(pl.String).str.zfill(width)


def _letters(idx: np.ndarray, alphabet: np.ndarray = _UPPER) -> pl.Series:
    return pl.Series(alphabet[np.asarray(idx, dtype=np.int64)], dtype=pl.String)


def _group_offsets(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _pick_in_group(rng: np.random.Generator, owners: np.ndarray, offsets: np.ndarray,
                   counts: np.ndarray) -> np.ndarray:
    """For each owner (with counts > 0), a uniformly chosen index in its contiguous group."""
    u = rng.random(owners.size)
    return offsets[owners] + np.minimum((u * counts[owners]).astype(np.int64), counts[owners] - 1)


def _weighted_sample(rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray,
                     k: int) -> np.ndarray:
    """k candidates without replacement, probability proportional to weight (Efraimidis-Spirakis)."""
    k = min(k, candidates.size)
    if k <= 0:
        return candidates[:0]
    keys = np.log(rng.random(candidates.size)) / np.maximum(weights, 1e-12)
    top = np.argpartition(-keys, k - 1)[:k]
    return np.sort(candidates[top])


def _unique_codes(rng: np.random.Generator, space: int, k: int) -> np.ndarray:
    return rng.choice(space, size=k, replace=False).astype(np.int64)


def _nomis_strings(codes: np.ndarray) -> pl.Series:
    """Integers in [0, 26*10^4*26*26) to A1234BC style prison numbers."""
    first = codes // (10_000 * 676)
    digits = (codes // 676) % 10_000
    rest = codes % 676
    return pl.select(pl.concat_str([
        pl.lit(_letters(first)), pl.lit(_digits(digits, 4)), pl.lit(_letters(rest // 26)),
        pl.lit(_letters(rest % 26)),
    ])).to_series()


def _pnc_strings(year4: np.ndarray, serial: np.ndarray, long_form: np.ndarray) -> pl.Series:
    yy = year4 % 100
    letter = _letters((yy * 10_000_000 + serial) % 23, _PNC_LETTERS)
    df = pl.DataFrame({
        "y4": pl.Series(year4, dtype=pl.Int64).cast(pl.String),
        "yy": _digits(yy, 2),
        "s7": _digits(serial, 7),
        "s": pl.Series(serial, dtype=pl.Int64).cast(pl.String),
        "l": letter,
        "long": long_form,
    })
    return df.select(
        pl.when(pl.col("long"))
        .then(pl.concat_str([pl.col("y4"), pl.lit("/"), pl.col("s7"), pl.col("l")]))
        .otherwise(pl.concat_str([pl.col("yy"), pl.lit("/"), pl.col("s"), pl.col("l")]))
    ).to_series()


def _fold_accents(expr: pl.Expr) -> pl.Expr:
    for accented, plain in _ACCENT_FOLD.items():
        expr = expr.str.replace_all(accented, plain, literal=True)
    return expr


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


@dataclass
class _People:
    n: int
    sex: np.ndarray
    dob: np.ndarray
    age: np.ndarray
    area: np.ndarray
    ethnicity: np.ndarray
    dead: np.ndarray
    deceased: np.ndarray
    lo: np.ndarray  # first day offending can be recorded
    hi: np.ndarray  # last day (extract date or death)
    rate: np.ndarray  # offences per year of window


def _make_people(rng: np.random.Generator, n: int, ext: int, hist_start: int) -> _People:
    sex = rng.choice(4, size=n, p=_SEX_P).astype(np.int8)
    older = rng.random(n) < 0.07
    age = np.where(older, 33.0 + rng.gamma(1.6, 8.0, n), 12.5 + rng.gamma(3.0, 5.0, n))
    age = np.clip(age, 12.05, 85.0)
    dob = ext - np.round(age * 365.25).astype(np.int64)
    area = rng.choice(len(AREAS), size=n, p=_AREA_P).astype(np.int8)
    eth_p = np.array(list(_ETHNICITY.values()))
    ethnicity = rng.choice(len(eth_p), size=n, p=eth_p / eth_p.sum()).astype(np.int8)
    dead = rng.random(n) < 0.003
    lo_death = np.maximum(ext - 6 * 365, dob + int(12 * 365.25) + 1)
    deceased = lo_death + (rng.random(n) * np.maximum(ext - lo_death, 1)).astype(np.int64)
    deceased = np.minimum(deceased, ext - 1)
    hi = np.where(dead, deceased, ext)
    lo = np.maximum(hist_start, dob + int(10.5 * 365.25))
    lo = np.minimum(lo, hi - 1)
    # age-crime curve on the rate: highest in the late teens and twenties
    age_factor = np.interp(age, [12, 16, 19, 26, 35, 45, 60, 85], [0.8, 1.15, 1.3, 1.15, 0.85, 0.6, 0.35, 0.2])
    z = rng.standard_normal(n)
    rate = _RATE_PER_YEAR * np.exp(_RATE_SIGMA * z - _RATE_SIGMA**2 / 2) * age_factor
    return _People(n, sex, dob, age, area, ethnicity, dead, deceased, lo, hi, rate)


@dataclass
class _Names:
    surname: pl.Series
    forenames: pl.Series
    first: pl.Series
    has_middle: np.ndarray
    apostrophe: np.ndarray
    accent: np.ndarray  # accent in surname or forename
    forename_pool: pl.Series


def _pool(heads: tuple[str, ...], tails: tuple[str, ...], min_len: int) -> np.ndarray:
    combos = np.char.add(np.array(heads)[:, None], np.array(tails)[None, :]).ravel()
    keep = (np.char.str_len(combos) >= min_len) & ~np.isin(combos, list(_NOT_NAMES))
    return np.unique(combos[keep])


def _zipf_choice(rng: np.random.Generator, size_pool: int, n: int) -> np.ndarray:
    order = rng.permutation(size_pool)  # which names are common
    w = 1.0 / (np.arange(size_pool) + 8.0)
    return order[rng.choice(size_pool, size=n, p=w / w.sum())]


def _make_names(rng: np.random.Generator, people: _People) -> _Names:
    n = people.n
    surnames = _pool(_SURNAME_HEADS, _SURNAME_TAILS, 6)
    accent_surnames = _pool(_SURNAME_HEADS, _SURNAME_ACCENT_TAILS, 6)
    male = _pool(_FORENAME_HEADS, _MALE_TAILS, 4)
    female = _pool(_FORENAME_HEADS, _FEMALE_TAILS, 4)
    accent_fore = _pool(_ACCENT_HEADS, _MALE_TAILS + _FEMALE_TAILS, 4)

    sur = surnames[_zipf_choice(rng, surnames.size, n)]
    acc_sur = rng.random(n) < 0.01
    sur = np.where(acc_sur, accent_surnames[rng.integers(0, accent_surnames.size, n)], sur)
    apostrophe = (rng.random(n) < 0.02) & ~acc_sur
    prefix = np.where(rng.random(n) < 0.6, "O\u2019", "D\u2019")
    sur = np.where(apostrophe, np.char.add(prefix, sur), sur)

    female_like = (people.sex == 1) | ((people.sex >= 2) & (rng.random(n) < 0.5))
    first = np.where(female_like, female[_zipf_choice(rng, female.size, n)], male[_zipf_choice(rng, male.size, n)])
    acc_fore = rng.random(n) < 0.03
    first = np.where(acc_fore, accent_fore[rng.integers(0, accent_fore.size, n)], first)
    middle = np.where(female_like, female[rng.integers(0, female.size, n)], male[rng.integers(0, male.size, n)])
    has_middle = rng.random(n) < 0.45
    first_s = pl.Series("first", first, dtype=pl.String)
    forenames = pl.select(
        pl.when(pl.Series(has_middle))
        .then(pl.concat_str([first_s, pl.lit(" "), pl.Series(middle, dtype=pl.String)]))
        .otherwise(first_s)
        .alias("forenames")
    ).to_series()
    pool = pl.Series("pool", np.concatenate([male, female]), dtype=pl.String)
    return _Names(
        surname=pl.Series("surname", sur, dtype=pl.String), forenames=forenames, first=first_s,
        has_middle=has_middle, apostrophe=apostrophe, accent=acc_sur | acc_fore, forename_pool=pool,
    )


def _name_variants(rng: np.random.Generator, names: _Names, p_upper: float, p_middle: float,
                   p_typo: float, p_fold: float, p_no_apostrophe: float) -> tuple[pl.Series, pl.Series]:
    """Per-person spelling as another agency records it.

    0 same, 1 upper case, 2 apostrophe dropped, 3 extra middle name, 4 accents dropped (all of
    which a normaliser absorbs), 5 a genuine typo in the surname (which it does not).
    """
    n = names.surname.len()
    u = rng.random(n)
    v = np.zeros(n, dtype=np.int8)
    v[u < p_upper] = 1
    v[(u >= p_upper) & (u < p_upper + p_middle) & ~names.has_middle] = 3
    v[(u >= p_upper + p_middle) & (u < p_upper + p_middle + p_typo)] = 5
    w = rng.random(n)
    v[names.apostrophe & (w < p_no_apostrophe)] = 2
    v[names.accent & (w < p_fold)] = 4
    extra = names.forename_pool.gather(rng.integers(0, names.forename_pool.len(), n))
    df = pl.DataFrame({
        "s": names.surname, "f": names.forenames, "v": v, "extra": extra,
        "u": rng.random(n), "ch": _letters(rng.integers(0, 26, n)).str.to_lowercase(),
    })
    s, f, code = pl.col("s"), pl.col("f"), pl.col("v")
    k = (pl.col("u") * (s.str.len_chars() - 2)).floor().cast(pl.Int64) + 1
    typo = pl.concat_str([s.str.slice(0, k), pl.col("ch"), s.str.slice(k + 1)])
    out = df.select(
        pl.when(code == 1).then(s.str.to_uppercase())
        .when(code == 2).then(s.str.replace_all("\u2019", "", literal=True))
        .when(code == 4).then(_fold_accents(s))
        .when(code == 5).then(typo)
        .otherwise(s).alias("surname"),
        pl.when(code == 1).then(f.str.to_uppercase())
        .when(code == 3).then(pl.concat_str([f, pl.lit(" "), pl.col("extra")]))
        .when(code == 4).then(_fold_accents(f))
        .otherwise(f).alias("forenames"),
    )
    return out["surname"], out["forenames"]


@dataclass
class _Reference:
    codes: list[str]
    descriptions: list[str]
    weights: np.ndarray
    ogrs3_term: np.ndarray
    violent: np.ndarray


def _load_reference() -> _Reference:
    path = Path(__file__).resolve().parent.parent / "features" / "offence_reference.csv"
    ref = pl.read_csv(path, infer_schema=False)
    codes = ref["ho_offence_code"].to_list()
    w = np.array([_OFFENCE_WEIGHTS.get(c, _DEFAULT_OFFENCE_WEIGHT) for c in codes], dtype=np.float64)
    ogrs = np.array([_OGRS3_OFFENCE.get(g, 0.0) for g in ref["ogrs3_group"].to_list()])
    violent = (ref["violence"].str.to_lowercase() == "true").to_numpy()
    return _Reference(codes, ref["description"].to_list(), w / w.sum(), ogrs, violent)


@dataclass
class _Offences:
    person: np.ndarray  # sorted by person, then day
    day: np.ndarray
    recorded: np.ndarray
    outcome: np.ndarray
    outcome_day: np.ndarray  # -1 when pending
    code: np.ndarray
    area: np.ndarray
    count: np.ndarray  # per person
    start: np.ndarray  # per person offset into the arrays
    pref_code: np.ndarray  # per person


def _make_offences(rng: np.random.Generator, p: _People, ref: _Reference, ext: int, base: int) -> _Offences:
    n = p.n
    window = (p.hi - p.lo).astype(np.float64)
    count = rng.poisson(p.rate * window / 365.25).astype(np.int64)

    # active periods: up to three episodes per person, the first one possibly still running
    k = 3
    n_ep = 1 + (rng.random(n) < 0.55) + (rng.random(n) < 0.25)
    length = np.exp(rng.normal(np.log(300.0), 0.9, (n, k)))
    length = np.minimum(np.maximum(length, 30.0), window[:, None])
    start = p.lo[:, None] + (rng.random((n, k)) * (window[:, None] - length + 1)).astype(np.int64)
    young = np.interp(p.age, [12, 18, 25, 35, 50, 85], [0.45, 0.42, 0.33, 0.25, 0.15, 0.08])
    current = rng.random(n) < young * np.clip(0.6 + 0.25 * np.log1p(count), 0.5, 2.0) * 0.06
    start[:, 0] = np.where(current, p.hi - length[:, 0].astype(np.int64), start[:, 0])
    weights = rng.exponential(1.0, (n, k))
    weights[:, 0] *= np.where(current, 1.2, 1.0)
    weights[np.arange(k)[None, :] >= n_ep[:, None]] = 0.0
    cw = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    cw[np.arange(k)[None, :] >= (n_ep - 1)[:, None]] = 1.0
    cw = cw.astype(np.float32)

    total = int(count.sum())
    person = np.repeat(np.arange(n, dtype=np.int32), count)
    u = rng.random(total, dtype=np.float32)
    ep = (u > cw[person, 0]).astype(np.int8) + (u > cw[person, 1])
    del u
    day = start[person, ep] + (rng.random(total) * length[person, ep]).astype(np.int64)
    del ep
    day = np.clip(day, p.lo[person], p.hi[person]).astype(np.int32)
    order = np.argsort((person.astype(np.int64) << 16) | (day - base), kind="stable")
    day = day[order]
    del order

    pref = rng.choice(len(ref.codes), size=n, p=ref.weights).astype(np.int16)
    code = np.where(rng.random(total) < 0.35, pref[person],
                    rng.choice(len(ref.codes), size=total, p=ref.weights)).astype(np.int16)

    delay = np.where(rng.random(total) < 0.85, rng.geometric(0.55, total) - 1, rng.integers(0, 31, total))
    recorded = np.minimum(day + np.minimum(delay, 30), np.minimum(ext, p.hi[person] + 30)).astype(np.int32)
    recorded = np.maximum(recorded, day)
    del delay
    outcome = rng.choice(len(_RESOLVED_P), size=total, p=_RESOLVED_P).astype(np.int8)
    lag = np.minimum(np.round(rng.lognormal(np.log(35.0), 1.1, total)), 1500).astype(np.int32)
    outcome_day = recorded + lag
    del lag
    pending = (outcome_day > ext) | (rng.random(total) < 0.015)
    outcome[pending] = _PENDING
    outcome_day[pending] = -1
    area = np.where(rng.random(total) < 0.85, p.area[person],
                    rng.choice(len(AREAS), size=total, p=_AREA_P)).astype(np.int8)
    return _Offences(person, day, recorded, outcome, outcome_day, code, area, count,
                     _group_offsets(count), pref)


@dataclass
class _Identifiers:
    has_pnc: np.ndarray
    pnc_police: pl.Series  # null where no PNC
    pnc_other: pl.Series  # same id in the other (long/short) form
    cro: pl.Series


def _make_identifiers(rng: np.random.Generator, p: _People, o: _Offences, ext: int) -> _Identifiers:
    n = p.n
    has_pnc = rng.random(n) < 0.90
    first_off = np.full(n, ext, dtype=np.int64)
    offending = o.count > 0
    first_off[offending] = o.day[o.start[offending]]
    first_arrest = p.dob + (rng.uniform(12.0, 25.0, n) * 365.25).astype(np.int64)
    pnc_day = np.clip(np.minimum(first_off, first_arrest), p.dob + int(10 * 365.25), ext)
    year4 = _year_of(pnc_day)
    serial = _unique_codes(rng, 10_000_000, n)
    long_form = rng.random(n) < 0.65
    valid = pl.Series(has_pnc)
    police = _pnc_strings(year4, serial, long_form)
    other = _pnc_strings(year4, serial, ~long_form)
    police = pl.select(pl.when(valid).then(police).alias("pnc")).to_series()
    other = pl.select(pl.when(valid).then(other).alias("pnc")).to_series()

    # CRO numbers for about 45% of people with a PNC id; one in ten in the SF form
    has_cro = has_pnc & (rng.random(n) < 0.45)
    sf = rng.random(n) < 0.10
    cro_serial = np.where(sf, rng.integers(100_000, 1_000_000, n), rng.integers(1, 1_000_000, n))
    yy = year4 % 100
    check = _letters((yy * 1_000_000 + cro_serial) % 23, _PNC_LETTERS)
    df = pl.DataFrame({"s6": _digits(cro_serial, 6), "yy": _digits(yy, 2), "c": check, "sf": sf, "has": has_cro})
    cro = df.select(
        pl.when(~pl.col("has")).then(None)
        .when(pl.col("sf")).then(pl.concat_str([pl.lit("SF"), pl.col("yy"), pl.lit("/"), pl.col("s6"), pl.col("c")]))
        .otherwise(pl.concat_str([pl.col("s6"), pl.lit("/"), pl.col("yy"), pl.col("c")]))
        .alias("cro")
    ).to_series()
    return _Identifiers(has_pnc, police, other, cro)


@dataclass
class _Spells:
    person: np.ndarray
    reception: np.ndarray
    release: np.ndarray  # _OPEN while in custody
    expected: np.ndarray  # -1 when none
    sentence: np.ndarray  # -1 when none
    ctype: np.ndarray

    def take(self, idx: np.ndarray) -> _Spells:
        return _Spells(*(getattr(self, f)[idx] for f in ("person", "reception", "release", "expected",
                                                            "sentence", "ctype")))

    @staticmethod
    def concat(parts: list[_Spells]) -> _Spells:
        return _Spells(*(np.concatenate([getattr(s, f) for s in parts]) for f in (
            "person", "reception", "release", "expected", "sentence", "ctype")))


def _sentences(rng: np.random.Generator, m: int) -> np.ndarray:
    short = rng.random(m) < 0.5
    short_days = np.clip(np.round(rng.lognormal(np.log(100.0), 0.7, m)), 7, 364)
    long_days = np.clip(np.round(365 + rng.lognormal(np.log(450.0), 0.9, m)), 365, 7300)
    return np.where(short, short_days, long_days).astype(np.int64)


def _settle(sp: _Spells, p: _People, ext: int, base: int) -> _Spells:
    """Order each person's spells, push overlapping ones past the previous release, close spells
    at death, open those running past the extract date, and drop what still overlaps."""
    order = np.argsort((sp.person.astype(np.int64) << 32) | (sp.reception - base), kind="stable")
    sp = sp.take(order)
    group = sp.person.astype(np.int64) << 32
    shifted = np.zeros(sp.person.size, dtype=bool)
    planned_open = sp.release == _OPEN  # placed in custody at the extract date on purpose
    for _ in range(4):
        prior = np.maximum.accumulate(group | np.minimum(sp.release - base, 2**31 - 1))
        prior = np.concatenate([[-1], prior[:-1]])
        overlap = (group | (sp.reception - base)) <= prior
        if not overlap.any():
            break
        gap = 7 + (np.arange(sp.person.size) * 37) % 120
        shift = np.where(overlap, (prior & (2**32 - 1)) + base + gap - sp.reception, 0)
        shifted |= shift > 0
        sp.reception = sp.reception + shift
        sp.release = np.where(planned_open, _OPEN, sp.release + shift)
        sp.expected = np.where(planned_open | (sp.expected < 0), sp.expected, sp.expected + shift)
    # a spell pushed back by an earlier one is kept only if it has ended by the extract date
    limit = np.where(p.dead[sp.person], p.deceased[sp.person], ext)
    sp = sp.take(np.flatnonzero((sp.reception <= limit) & ~(shifted & ~planned_open & (sp.release > ext))))
    dead = p.dead[sp.person]
    sp.release = np.where(dead, np.minimum(sp.release, p.deceased[sp.person]), sp.release)
    sp.release = np.where(sp.release > ext, _OPEN, sp.release)
    group = sp.person.astype(np.int64) << 32
    prior = np.maximum.accumulate(group | np.minimum(sp.release - base, 2**31 - 1))
    prior = np.concatenate([[-1], prior[:-1]])
    return sp.take(np.flatnonzero((group | (sp.reception - base)) > prior))


def _make_custody(rng: np.random.Generator, p: _People, o: _Offences, ext: int, base: int) -> _Spells:
    # spells that follow offending, heavy-tailed through the offence count
    lam = 0.06 * o.count.astype(np.float64) ** 1.25
    n_sp = np.minimum(rng.poisson(lam), 40) * (o.count > 0)
    owner = np.repeat(np.arange(p.n), n_sp)
    m = owner.size
    anchor = o.day[_pick_in_group(rng, owner, o.start, o.count)].astype(np.int64)
    remand = rng.random(m) < 0.35
    delay = np.where(remand, rng.integers(0, 3, m), np.round(rng.lognormal(np.log(50.0), 0.6, m)).astype(np.int64))
    reception = np.minimum(anchor + delay, ext)
    sentence = _sentences(rng, m)
    half = (sentence + 1) // 2
    hdc = np.where((sentence < 365) & (rng.random(m) < 0.35), (rng.random(m) * half * 0.4).astype(np.int64), 0)
    remand_days = np.clip(np.round(rng.lognormal(np.log(35.0), 0.9, m)), 1, 500).astype(np.int64)
    natural = _Spells(
        person=owner, reception=reception,
        release=np.where(remand, reception + remand_days, reception + half - hdc),
        expected=np.where(remand, reception + remand_days, reception + half),
        sentence=np.where(remand, -1, sentence),
        ctype=np.where(remand, 1, 0).astype(np.int8),
    )

    # people in custody at the extract date, drawn towards the recently and heavily offending
    last = np.zeros(p.n, dtype=np.int64)
    offending = o.count > 0
    last[offending] = o.day[o.start[offending] + o.count[offending] - 1]
    eligible = np.flatnonzero((o.count > 0) & (last >= ext - 730) & ~p.dead)
    chosen = _weighted_sample(rng, eligible, p.rate[eligible], int(round(_CURRENT_CUSTODY_SHARE * p.n)))
    c = chosen.size
    reception = np.minimum(last[chosen] + rng.integers(0, 45, c), ext - 1)
    remand = rng.random(c) < 0.25
    soon = rng.random(c) < 0.3
    expected = ext + np.where(remand, rng.integers(7, 150, c),
                              np.where(soon, rng.integers(1, 91, c), rng.integers(91, 900, c)))
    current = _Spells(
        person=chosen, reception=reception, release=np.full(c, _OPEN, dtype=np.int64), expected=expected,
        sentence=np.where(remand, -1, np.maximum(2 * (expected - reception), 14)),
        ctype=np.where(remand, 1, 0).astype(np.int8),
    )
    return _settle(_Spells.concat([natural, current]), p, ext, base)


@dataclass
class _Periods:
    person: np.ndarray
    stype: np.ndarray
    start: np.ndarray
    end: np.ndarray  # -1 when none
    sentence: np.ndarray  # of the custody spell behind a licence, -1 otherwise

    def take(self, idx: np.ndarray) -> _Periods:
        return _Periods(self.person[idx], self.stype[idx], self.start[idx], self.end[idx], self.sentence[idx])


def _make_probation(rng: np.random.Generator, p: _People, o: _Offences, sp: _Spells, ext: int,
                    base: int) -> _Periods:
    n = p.n
    released = np.flatnonzero((sp.ctype == 0) & (sp.release != _OPEN))  # sorted by person
    rel_count = np.bincount(sp.person[released], minlength=n)
    rel_start = _group_offsets(rel_count)
    open_person = np.zeros(n, dtype=bool)
    open_person[sp.person[sp.release == _OPEN]] = True
    after_custody = rel_count > 0
    base_p = np.where(after_custody, 0.55, np.where(open_person, 0.4, 0.0))
    other = (o.count > 0) & ~after_custody & ~open_person
    w_other = np.minimum(0.03 + 0.025 * o.count, 0.9) * other
    need = _PROBATION_SHARE * n - base_p.sum()
    scale = max(need, 0.0) / max(w_other.sum(), 1e-9)
    prob = base_p + np.minimum(w_other * scale, 0.95)
    selected = np.flatnonzero(rng.random(n) < prob)

    k = 1 + rng.binomial(2, np.clip(0.12 + 0.012 * o.count[selected], 0, 0.6))
    owner = np.repeat(selected, k)
    m = owner.size
    position = np.arange(m) - np.repeat(_group_offsets(k), k)
    custody_anchor = after_custody[owner] & (rng.random(m) < np.where(position == 0, 0.75, 0.45))

    # periods after a custody spell: licence to sentence end, or post-sentence supervision
    if released.size:
        pick = _pick_in_group(rng, owner, rel_start, np.maximum(rel_count, 1))
        spell = released[np.where(custody_anchor, np.minimum(pick, released.size - 1), 0)]
        rel_day = sp.release[spell]
        spell_sentence = sp.sentence[spell]
        sentence_end = sp.reception[spell] + spell_sentence
    else:
        custody_anchor[:] = False
        rel_day = sentence_end = np.zeros(m, dtype=np.int64)
        spell_sentence = np.full(m, -1, dtype=np.int64)
    pss = (spell_sentence < 730) & (rng.random(m) < 0.25)
    lic_start = np.where(pss, np.maximum(sentence_end, rel_day), rel_day)
    lic_end = np.where(pss, lic_start + 365, np.maximum(sentence_end, rel_day + 14))

    # community periods after an offence
    anchor = o.day[_pick_in_group(rng, owner, o.start, np.maximum(o.count, 1))].astype(np.int64)
    com_start = anchor + rng.integers(21, 200, m)
    com_type = rng.choice(3, size=m, p=[0.55, 0.33, 0.12])  # community_order, suspended, none
    com_end = np.where(com_type == 0, com_start + rng.integers(180, 1096, m),
                       np.where(com_type == 1, com_start + rng.integers(365, 731, m), -1))

    periods = _Periods(
        person=owner,
        stype=np.where(custody_anchor, np.where(pss, 3, 0), np.array([1, 2, 4])[com_type]).astype(np.int8),
        start=np.where(custody_anchor, lic_start, com_start),
        end=np.where(custody_anchor, lic_end, com_end),
        sentence=np.where(custody_anchor, spell_sentence, -1),
    )
    alive_at = np.where(p.dead[periods.person], p.deceased[periods.person], ext)
    periods = periods.take(np.flatnonzero(periods.start <= alive_at))
    died = p.dead[periods.person]
    periods.end = np.where(died & (periods.end >= 0), np.minimum(periods.end, p.deceased[periods.person]),
                           periods.end)
    key = (periods.person.astype(np.int64) << 20) | (periods.start - base + 1000)
    order = np.argsort(key, kind="stable")
    periods = periods.take(order)
    key = key[order]
    first = np.concatenate([[True], key[1:] != key[:-1]]) if key.size else np.zeros(0, dtype=bool)
    return periods.take(np.flatnonzero(first))


def _make_cases(rng: np.random.Generator, p: _People, o: _Offences, ids: _Identifiers, names: _Names,
                nomis: pl.Series, has_nomis: np.ndarray, per: _Periods, ref: _Reference, ext: int,
                base: int) -> tuple[pl.DataFrame, pl.Series]:
    n = p.n
    in_probation = np.zeros(n, dtype=bool)
    in_probation[per.person] = True
    probation_people = np.flatnonzero(in_probation)
    crn_codes = _unique_codes(rng, 26 * 1_000_000, probation_people.size)
    crn_people = pl.select(pl.concat_str([pl.lit(_letters(crn_codes // 1_000_000)),
                                          pl.lit(_digits(crn_codes % 1_000_000, 6))])).to_series()
    crn_idx = np.zeros(n, dtype=np.int64)
    crn_idx[probation_people] = np.arange(probation_people.size)
    crn_all = crn_people.gather(crn_idx)  # meaningful only for people on probation

    # per-person fields as probation holds them
    carry_pnc = ids.has_pnc & (rng.random(n) < 0.78)
    other_form = rng.random(n) < 0.2
    pnc = pl.select(
        pl.when(pl.Series(~carry_pnc)).then(None)
        .when(pl.Series(other_form)).then(ids.pnc_other).otherwise(ids.pnc_police)
    ).to_series()
    carry_nomis = has_nomis & (rng.random(n) < 0.85)
    nomis_held = pl.select(pl.when(pl.Series(carry_nomis)).then(nomis)).to_series()
    surname, forenames = _name_variants(rng, names, 0.08, 0.03, 0.01, 0.5, 0.3)
    area = np.where(rng.random(n) < 0.92, p.area, rng.choice(len(AREAS), size=n, p=_AREA_P))

    m = per.person.size
    who = per.person
    assess = np.minimum(per.start + rng.integers(-14, 29, m), ext)
    assess = np.maximum(assess, p.dob[who] + 3653)

    # sanctions (convictions and cautions) from the police history, by outcome date
    is_sanction = np.isin(o.outcome, _SANCTIONS)
    s_person = o.person[is_sanction].astype(np.int64)
    s_day = o.outcome_day[is_sanction].astype(np.int64)
    s_key = np.sort((s_person << 20) | (s_day - base + 1000))
    lower = np.searchsorted(s_key, who.astype(np.int64) << 20, side="left")
    upper = np.searchsorted(s_key, (who.astype(np.int64) << 20) | np.clip(per.start - base + 1000, 0, 2**20 - 1),
                            side="left")
    previous = upper - lower
    if s_key.size:
        earliest = (s_key[np.minimum(lower, s_key.size - 1)] & (2**20 - 1)) + base - 1000
    else:
        earliest = per.start
    # with no earlier sanction, the first is the one that led to this period
    first_day = np.where(previous > 0, earliest, per.start - rng.integers(0, 60, m))

    # OGRS3-like two-year score from age, sex, sanctions and usual offence
    age = (assess - p.dob[who]) / 365.25
    age_first = np.minimum((first_day - p.dob[who]) / 365.25, age)
    band = np.searchsorted(_OGRS3_AGE_BOUNDS, age, side="right")
    female = p.sex[who] == 1
    age_term = np.where(female, _OGRS3_FEMALE[band], _OGRS3_MALE[band])
    copas = np.log((1.0 + previous) / (10.0 + age - age_first))
    status = np.where(previous == 0, 0.12614, 0.46306)
    score = 2.1217 + age_term + 1.25112 * copas + status + ref.ogrs3_term[o.pref_code[who]]
    score = score + rng.normal(0.0, 0.15, m)
    ogrs_tenths = np.round(1000.0 / (1.0 + np.exp(-score))).astype(np.int64)
    ogrs_known = rng.random(m) >= 0.15

    violent = ref.violent[o.pref_code[who]]
    u = rng.random(m)
    rosh = np.where(violent, np.searchsorted([0.30, 0.75, 0.95], u, side="right"),
                    np.searchsorted([0.55, 0.92, 0.99], u, side="right"))
    u = rng.random(m)
    mappa_cut = np.array([[0.955, 0.99, 0.998], [0.93, 0.98, 0.995], [0.80, 0.94, 0.99], [0.60, 0.85, 0.95]])
    mappa = (u[:, None] >= mappa_cut[rosh]).sum(axis=1)

    df = pl.DataFrame({
        "crn": crn_all.gather(who),
        "pnc_id": pnc.gather(who),
        "nomis_id": nomis_held.gather(who),
        "surname": surname.gather(who),
        "forenames": forenames.gather(who),
        "date_of_birth": _dates("date_of_birth", p.dob[who]),
        "sex": _choose(_SEXES, p.sex[who], "sex"),
        "supervision_type": _choose(_SUPERVISION, per.stype, "supervision_type"),
        "supervision_start": _dates("supervision_start", per.start),
        "supervision_end": _dates("supervision_end", per.end, per.end >= 0),
        "assessment_date": _dates("assessment_date", assess),
        "ogrs3_2yr": pl.select(pl.when(pl.Series(ogrs_known)).then(pl.concat_str([
            _digits(ogrs_tenths // 10, 1), pl.lit("."), _digits(ogrs_tenths % 10, 1)]))).to_series(),
        "rosh": _choose(_ROSH, rosh, "rosh"),
        "mappa_level": _ints("mappa_level", mappa),
        "previous_sanctions": _ints("previous_sanctions", previous),
        "first_sanction_date": _dates("first_sanction_date", first_day),
        "area": _choose(AREAS, area[who], "area"),
    })
    return df, crn_all


def _make_events(rng: np.random.Generator, p: _People, per: _Periods, ext: int) -> tuple[np.ndarray, ...]:
    m = per.person.size
    end = np.where(per.end >= 0, per.end, per.start)
    limit = np.where(p.dead[per.person], p.deceased[per.person], ext)
    active = np.maximum(np.minimum(end, limit) - per.start, 0)
    intensity = np.clip(0.9 * np.sqrt(p.rate[per.person] / _RATE_PER_YEAR), 0.1, 6.0)
    count = np.where(per.stype == 4, 0, rng.poisson(intensity * active / 365.25))
    count = np.minimum(count, 60)
    idx = np.repeat(np.arange(m), count)
    e = idx.size
    day = per.start[idx] + (rng.random(e) * active[idx]).astype(np.int64)
    licence = per.stype[idx] == 0
    u = rng.random(e)
    etype = np.where(licence, np.searchsorted(np.cumsum([0.14, 0.08, 0.46, 0.20])[:4], u, side="right"),
                     np.searchsorted(np.cumsum([0.18, 0.0, 0.50, 0.20])[:4], u, side="right"))
    return idx, day, etype.astype(np.int8)


def _recall_spells(rng: np.random.Generator, per: _Periods, ev_period: np.ndarray, ev_day: np.ndarray,
                   ev_type: np.ndarray, has_nomis: np.ndarray, ext: int) -> _Spells:
    recall = np.flatnonzero((ev_type == 1) & has_nomis[per.person[ev_period]])
    r = recall.size
    reception = np.minimum(ev_day[recall] + rng.integers(0, 4, r), ext)
    fixed = rng.random(r) < 0.55
    days = np.where(fixed, 28, np.clip(np.round(rng.lognormal(np.log(120.0), 0.6, r)), 29, 1500)).astype(np.int64)
    sentence = per.sentence[ev_period[recall]]
    return _Spells(
        person=per.person[ev_period[recall]], reception=reception, release=reception + days,
        expected=reception + days, sentence=np.where(sentence > 0, sentence, -1),
        ctype=np.full(r, 2, dtype=np.int8),
    )


# ----------------------------------------------------------------------------------------------
# Fault injection
# ----------------------------------------------------------------------------------------------


class _Faults:
    """Chooses distinct rows for each kind of fault and applies the edits in one pass."""

    def __init__(self, rng: np.random.Generator, n_rows: int, rate: float, kinds: int, fmt: str, ext: int):
        self.rng = rng
        self.n = n_rows
        self.fmt = fmt
        self.ext = ext
        if rate <= 0 or n_rows == 0:
            self.per_kind = 0
        else:
            self.per_kind = max(1 if n_rows > 200 else 0, int(round(n_rows * rate / kinds)))
        self.used = np.zeros(n_rows, dtype=bool)
        self.counts: dict[str, int] = {}
        self.edits: dict[str, list[tuple[np.ndarray, list[str | None]]]] = {}
        self.duplicates = np.zeros(0, dtype=np.int64)

    def rows(self, kind: str, eligible: np.ndarray | None = None) -> np.ndarray:
        mask = ~self.used if eligible is None else (~self.used & eligible)
        candidates = np.flatnonzero(mask)
        k = min(self.per_kind, candidates.size)
        idx = np.sort(self.rng.choice(candidates, size=k, replace=False)) if k else candidates[:0]
        self.used[idx] = True
        self.counts[kind] = self.counts.get(kind, 0) + int(k)
        return idx

    def split(self, idx: np.ndarray, parts: int) -> list[np.ndarray]:
        which = self.rng.integers(0, parts, idx.size)
        return [idx[which == i] for i in range(parts)]

    def set(self, column: str, idx: np.ndarray, values: list[str | None] | str | None) -> None:
        if idx.size == 0:
            return
        if values is None or isinstance(values, str):
            values = [values] * idx.size
        self.edits.setdefault(column, []).append((idx, list(values)))

    def pick_text(self, choices: list[str], k: int) -> list[str]:
        return [choices[i] for i in self.rng.integers(0, len(choices), k)]

    def date_text(self, days: np.ndarray) -> list[str]:
        return _dates("d", days).dt.to_string(self.fmt).to_list()

    def unparseable(self, k: int) -> list[str]:
        if self.fmt == "%d/%m/%Y":
            bad = ["31/02/2023", "not known", "30/02/2019", "00/00/0000", "12/13/2020"]
        else:
            bad = ["2023-13-45", "2022-02-30", "not known", "2021-02-29", "0000-00-00"]
        return self.pick_text(bad, k)

    def future(self, k: int) -> list[str]:
        return self.date_text(self.ext + self.rng.integers(1, 400, k))

    def duplicate(self, kind: str = "duplicate_id") -> None:
        self.duplicates = self.rows(kind)

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        columns = {}
        for column, edits in self.edits.items():
            s = df.get_column(column)
            if s.dtype == pl.Date:
                s = s.dt.to_string(self.fmt)
            elif s.dtype != pl.String:
                s = s.cast(pl.String)
            else:
                s = s.clone()
            idx = np.concatenate([e[0] for e in edits])
            values = [v for e in edits for v in e[1]]
            s = s.scatter(idx, pl.Series(values, dtype=pl.String))
            columns[column] = s
        if columns:
            df = df.with_columns(**columns)
        if self.duplicates.size:
            # each repeated row right after its original, by stitching zero-copy slices together
            copies = df[self.duplicates]
            pieces, previous = [], 0
            for i, row in enumerate(self.duplicates.tolist()):
                pieces.append(df.slice(previous, row + 1 - previous))
                pieces.append(copies.slice(i, 1))
                previous = row + 1
            pieces.append(df.slice(previous))
            df = pl.concat(pieces, rechunk=False)
        return df


def _fault_nominals(f: _Faults, df: pl.DataFrame) -> None:
    a, b = f.split(f.rows("unparseable_date"), 2)
    f.set("date_of_birth", a, f.unparseable(a.size))
    f.set("deceased_date", b, f.unparseable(b.size))
    idx = f.rows("future_date")
    f.set("date_of_birth", idx, f.future(idx.size))
    f.duplicate()
    idx = f.rows("malformed_identifier", df["pnc_id"].is_not_null().to_numpy())
    if idx.size:
        # the same id with its check letter moved along the alphabet: well formed, wrong check
        pnc = df["pnc_id"].gather(idx)
        position = pnc.str.slice(-1).replace_strict({c: i for i, c in enumerate(PNC_CHECK_ALPHABET)}).to_numpy()
        wrong = _letters((position + f.rng.integers(1, 23, idx.size)) % 23, _PNC_LETTERS)
        f.set("pnc_id", idx, pl.select(pl.concat_str([pl.lit(pnc.str.head(-1)), pl.lit(wrong)])).to_series().to_list())
    a, b = f.split(f.rows("missing_required"), 2)
    f.set("surname", a, None)
    f.set("forenames", b, None)
    idx = f.rows("out_of_range")
    old = f.rng.random(idx.size) < 0.5
    days = np.where(old, f.ext - (f.rng.uniform(101, 115, idx.size) * 365.25).astype(np.int64),
                    f.ext - (f.rng.uniform(1, 9.5, idx.size) * 365.25).astype(np.int64))
    f.set("date_of_birth", idx, f.date_text(days))
    idx = f.rows("enum_violation")
    f.set("sex", idx, f.pick_text(["Male", "Female", "male", "9"], idx.size))


def _fault_offences(f: _Faults) -> None:
    idx = f.rows("unparseable_date")
    f.set("offence_date", idx, f.unparseable(idx.size))
    idx = f.rows("future_date")
    f.set("offence_date", idx, f.future(idx.size))
    f.duplicate()
    a, b = f.split(f.rows("missing_required"), 2)
    f.set("ho_offence_code", a, None)
    f.set("offence_date", b, None)
    idx = f.rows("enum_violation")
    f.set("outcome", idx, f.pick_text(["unknown-ish", "Charged & bailed", "NFA?"], idx.size))
    idx = f.rows("unknown_offence_code")
    f.set("ho_offence_code", idx, f.pick_text(["999/99", "998/01", "901/99"], idx.size))
    f.set("offence_description", idx, None)


def _fault_cases(f: _Faults) -> None:
    a, b = f.split(f.rows("unparseable_date"), 2)
    f.set("supervision_start", a, f.unparseable(a.size))
    f.set("date_of_birth", b, f.unparseable(b.size))
    idx = f.rows("future_date")
    f.set("date_of_birth", idx, f.future(idx.size))
    f.duplicate()
    idx = f.rows("malformed_identifier")
    f.set("crn", idx, [f"X{v:05d}" for v in f.rng.integers(0, 100_000, idx.size)])
    idx = f.rows("missing_required")
    f.set("crn", idx, None)
    a, b = f.split(f.rows("out_of_range"), 2)
    f.set("ogrs3_2yr", a, f.pick_text(["104.5", "250.0", "-3.0"], a.size))
    f.set("mappa_level", b, "5")
    a, b = f.split(f.rows("enum_violation"), 2)
    f.set("rosh", a, f.pick_text(["v high", "Medium", "unknown"], a.size))
    f.set("supervision_type", b, f.pick_text(["parole", "CO"], b.size))


def _fault_events(f: _Faults) -> None:
    idx = f.rows("unparseable_date")
    f.set("event_date", idx, f.unparseable(idx.size))
    idx = f.rows("future_date")
    f.set("event_date", idx, f.future(idx.size))
    idx = f.rows("malformed_identifier")
    f.set("crn", idx, [f"X{v:05d}" for v in f.rng.integers(0, 100_000, idx.size)])
    a, b = f.split(f.rows("missing_required"), 2)
    f.set("event_date", a, None)
    f.set("event_type", b, None)
    idx = f.rows("enum_violation")
    f.set("event_type", idx, f.pick_text(["home visit", "Breach", "unknown"], idx.size))


def _fault_custody(f: _Faults) -> None:
    a, b = f.split(f.rows("unparseable_date"), 2)
    f.set("reception_date", a, f.unparseable(a.size))
    f.set("release_date", b, f.unparseable(b.size))
    idx = f.rows("future_date")
    f.set("reception_date", idx, f.future(idx.size))
    f.duplicate()
    idx = f.rows("malformed_identifier")
    f.set("nomis_id", idx, [f"{v:05d}AB" for v in f.rng.integers(0, 100_000, idx.size)])
    a, b = f.split(f.rows("missing_required"), 2)
    f.set("nomis_id", a, None)
    f.set("reception_date", b, None)
    idx = f.rows("out_of_range")
    f.set("sentence_days", idx, f.pick_text(["-30", "50000"], idx.size))
    idx = f.rows("enum_violation")
    f.set("custody_type", idx, f.pick_text(["Remanded", "unknown", "SENT"], idx.size))


_FAULT_KINDS_PER_EXTRACT = {
    "police_nominals": 7, "police_offences": 6, "probation_cases": 7, "probation_events": 5,
    "prison_custody": 7,
}


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

_CHUNK_ROWS = 250_000


def _write(name: str, df: pl.DataFrame, out_dir: Path) -> GeneratedExtract:
    fmt = EXTRACT_FORMATS[name]
    path = (out_dir / fmt.file_name).resolve()
    to_file = {canonical: own for own, canonical in fmt.columns.items()}
    df = df.select([pl.col(c).alias(to_file[c]) for c in fmt.columns.values()])
    if fmt.format == "parquet":
        df = df.select(
            [pl.col(c).dt.to_string(fmt.date_format) if df.schema[c] == pl.Date else pl.col(c).cast(pl.String)
             for c in df.columns]
        )
        df.write_parquet(path, compression="zstd", statistics=False)
    elif fmt.encoding == "cp1252":
        with open(path, "wb") as fh:
            for offset in range(0, max(df.height, 1), _CHUNK_ROWS):
                text = df.slice(offset, _CHUNK_ROWS).write_csv(
                    None, include_header=offset == 0, separator=fmt.delimiter, date_format=fmt.date_format
                )
                fh.write(text.encode("cp1252"))
    else:
        df.write_csv(path, include_bom=fmt.encoding == "utf-8-sig", separator=fmt.delimiter,
                     date_format=fmt.date_format)
    log.info("wrote %s: %d rows to %s", name, df.height, path.name)
    return GeneratedExtract(
        name=name, path=path, format=fmt.format, encoding=fmt.encoding, delimiter=fmt.delimiter,
        date_formats=[fmt.date_format], column_mapping=dict(fmt.columns), rows=df.height,
    )


def _finish(name: str, df: pl.DataFrame, faults: _Faults, out_dir: Path, totals: dict[str, int]) -> GeneratedExtract:
    df = faults.apply(df)
    for kind, count in faults.counts.items():
        totals[kind] = totals.get(kind, 0) + count
    log.info("%s: injected faults %s", name, {k: v for k, v in faults.counts.items() if v})
    return _write(name, df, out_dir)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def generate_extracts(out_dir: Path, people: int, seed: int, extract_date: date,
                      fault_rate: float = 0.002, progress: Callable[[str], None] | None = None) -> GeneratedData:
    """Write the five synthetic extracts into `out_dir` and describe them.

    Same arguments, same bytes. `fault_rate` is the share of rows per extract given a fault,
    spread evenly over the kinds that apply to that extract (at least one of each kind when the
    extract has more than 200 rows and the rate is positive; none at all when it is 0).
    """
    if people < 1:
        raise ValueError("people must be at least 1")
    if not 0 <= fault_rate < 0.5:
        raise ValueError("fault_rate must be in [0, 0.5)")

    def stage(name: str) -> None:
        log.debug("generate: %s", name)
        if progress is not None:
            progress(name)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    streams = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS))),
                       strict=True))
    ext = _day(extract_date)
    hist_start = _day(extract_date.replace(year=extract_date.year - HISTORY_YEARS)
                      if not (extract_date.month == 2 and extract_date.day == 29)
                      else extract_date - timedelta(days=int(HISTORY_YEARS * 365.25)))
    base = hist_start - 1
    totals: dict[str, int] = {}
    written: list[GeneratedExtract] = []
    ref = _load_reference()

    stage("people")
    p = _make_people(streams["people"], people, ext, hist_start)
    names = _make_names(streams["names"], p)

    stage("offences")
    o = _make_offences(streams["offences"], p, ref, ext, base)

    stage("identifiers")
    ids = _make_identifiers(streams["identifiers"], p, o, ext)

    stage("police extracts")
    width = max(7, len(str(people)))
    person_ids = pl.concat_str([pl.lit("N"), _digits(np.arange(1, people + 1), width)]).alias("police_person_id")
    person_ids = pl.select(person_ids).to_series()
    nominals = pl.DataFrame({
        "police_person_id": person_ids,
        "pnc_id": ids.pnc_police,
        "cro_number": ids.cro,
        "surname": names.surname,
        "forenames": names.forenames,
        "date_of_birth": _dates("date_of_birth", p.dob),
        "sex": _choose(_SEXES, p.sex, "sex"),
        "ethnicity": _choose(list(_ETHNICITY), p.ethnicity, "ethnicity"),
        "area": _choose(AREAS, p.area, "area"),
        "deceased_date": _dates("deceased_date", p.deceased, p.dead),
    })
    f = _Faults(streams["faults_police_nominals"], nominals.height, fault_rate,
                _FAULT_KINDS_PER_EXTRACT["police_nominals"], EXTRACT_FORMATS["police_nominals"].date_format, ext)
    _fault_nominals(f, nominals)
    written.append(_finish("police_nominals", nominals, f, out_dir, totals))
    del nominals

    total = o.day.size
    order = np.argsort((o.recorded.astype(np.int64) - base) << 34 | np.arange(total, dtype=np.int64), kind="stable")
    code_cats = list(ref.codes)
    offences = pl.DataFrame({
        "offence_id": pl.select(pl.concat_str([pl.lit("CR"), _digits(np.arange(1, total + 1), 10)])).to_series(),
        "police_person_id": person_ids.gather(o.person[order]),
        "offence_date": _dates("offence_date", o.day[order]),
        "recorded_date": _dates("recorded_date", o.recorded[order]),
        "ho_offence_code": _choose(code_cats, o.code[order], "ho_offence_code"),
        "offence_description": _choose(ref.descriptions, o.code[order], "offence_description"),
        "outcome": _choose(_OUTCOMES, o.outcome[order], "outcome"),
        "outcome_date": _dates("outcome_date", o.outcome_day[order], o.outcome_day[order] >= 0),
        "area": _choose(AREAS, o.area[order], "area"),
    })
    del order
    f = _Faults(streams["faults_police_offences"], offences.height, fault_rate,
                _FAULT_KINDS_PER_EXTRACT["police_offences"], EXTRACT_FORMATS["police_offences"].date_format, ext)
    _fault_offences(f)
    written.append(_finish("police_offences", offences, f, out_dir, totals))
    del offences
    o.recorded = o.area = np.zeros(0, dtype=np.int8)  # no longer needed

    stage("custody")
    sp = _make_custody(streams["custody"], p, o, ext, base)
    has_nomis = np.zeros(people, dtype=bool)
    has_nomis[sp.person] = True
    nomis_people = np.flatnonzero(has_nomis)
    nomis_codes = _unique_codes(streams["custody"], 26 * 10_000 * 676, nomis_people.size)
    nomis_idx = np.zeros(people, dtype=np.int64)
    nomis_idx[nomis_people] = np.arange(nomis_people.size)
    nomis = _nomis_strings(nomis_codes).gather(nomis_idx) if nomis_people.size else \
        pl.Series([None] * people, dtype=pl.String)

    stage("probation")
    per = _make_probation(streams["probation"], p, o, sp, ext, base)
    cases, crn_all = _make_cases(streams["probation"], p, o, ids, names, nomis, has_nomis, per, ref, ext, base)
    f = _Faults(streams["faults_probation_cases"], cases.height, fault_rate,
                _FAULT_KINDS_PER_EXTRACT["probation_cases"], EXTRACT_FORMATS["probation_cases"].date_format, ext)
    _fault_cases(f)
    written.append(_finish("probation_cases", cases, f, out_dir, totals))
    del cases

    stage("events")
    ev_period, ev_day, ev_type = _make_events(streams["events"], p, per, ext)
    order = np.argsort(((ev_day - base).astype(np.int64) << 32) | ev_period, kind="stable")
    events = pl.DataFrame({
        "crn": crn_all.gather(per.person[ev_period[order]]),
        "event_date": _dates("event_date", ev_day[order]),
        "event_type": _choose(_EVENT_TYPES, ev_type[order], "event_type"),
    })
    f = _Faults(streams["faults_probation_events"], events.height, fault_rate,
                _FAULT_KINDS_PER_EXTRACT["probation_events"], EXTRACT_FORMATS["probation_events"].date_format, ext)
    _fault_events(f)
    written.append(_finish("probation_events", events, f, out_dir, totals))
    del events

    stage("prison extract")
    recalls = _recall_spells(streams["recalls"], per, ev_period, ev_day, ev_type, has_nomis, ext)
    sp = _settle(_Spells.concat([sp, recalls]), p, ext, base)
    rng = streams["prison_records"]
    carry_pnc = ids.has_pnc & (rng.random(people) < 0.83)
    other_form = rng.random(people) < 0.25
    pnc = pl.select(
        pl.when(pl.Series(~carry_pnc)).then(None)
        .when(pl.Series(other_form)).then(ids.pnc_other).otherwise(ids.pnc_police)
    ).to_series()
    surname, forenames = _name_variants(rng, names, 0.18, 0.07, 0.03, 0.5, 0.5)
    release_area = np.where(rng.random(people) < 0.9, p.area, rng.choice(len(AREAS), size=people, p=_AREA_P))
    order = np.argsort(((sp.reception - base).astype(np.int64) << 32) | sp.person, kind="stable")
    sp = sp.take(order)
    who = sp.person
    open_spell = sp.release == _OPEN
    custody = pl.DataFrame({
        "spell_id": pl.select(pl.concat_str([pl.lit("S"), _digits(np.arange(1, who.size + 1), 8)])).to_series(),
        "nomis_id": nomis.gather(who),
        "pnc_id": pnc.gather(who),
        "surname": surname.gather(who),
        "forenames": forenames.gather(who),
        "date_of_birth": _dates("date_of_birth", p.dob[who]),
        "sex": _choose(_SEXES, p.sex[who], "sex"),
        "reception_date": _dates("reception_date", sp.reception),
        "release_date": _dates("release_date", np.where(open_spell, 0, sp.release), ~open_spell),
        "expected_release_date": _dates("expected_release_date", np.maximum(sp.expected, 0), sp.expected >= 0),
        "sentence_days": _ints("sentence_days", sp.sentence, sp.sentence >= 0),
        "custody_type": _choose(_CUSTODY_TYPES, sp.ctype, "custody_type"),
        "release_area": _choose(AREAS, release_area[who], "release_area"),
    })
    f = _Faults(streams["faults_prison_custody"], custody.height, fault_rate,
                _FAULT_KINDS_PER_EXTRACT["prison_custody"], EXTRACT_FORMATS["prison_custody"].date_format, ext)
    _fault_custody(f)
    written.append(_finish("prison_custody", custody, f, out_dir, totals))

    faults = {kind: totals.get(kind, 0) for kind in FAULT_KINDS}
    log.info(
        "generated %d people: %d offences, %d custody spells (%d open), %d probation periods, %d events; faults %s",
        people, total, who.size, int(open_spell.sum()), per.person.size, ev_day.size, faults,
    )
    order = ["police_nominals", "police_offences", "probation_cases", "probation_events", "prison_custody"]
    written.sort(key=lambda e: order.index(e.name))
    return GeneratedData(extracts=written, extract_date=extract_date, seed=seed, people=people, faults=faults)
