"""People: who they are (sex, birth, area, names) and the latent make-up of their offending.

The latent part follows the developmental and life-course literature rather than any rule set:
a propensity per person (heavy-tailed: lognormal, with a small life-course-persistent group,
Moffitt 1993), an onset age, and an individual age-crime curve (rising to a peak in the late
teens or early twenties and declining after it, Farrington 1986; desistance the norm, Sampson
& Laub 2003). docs/synthetic-data.md gives every parameter with its source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.contract import SEX_CODES
from synthetic.formats import AREAS
from synthetic.util import YEAR

AREA_P = np.array([0.27, 0.23, 0.19, 0.20, 0.11])
_SEX_P = {"M": 0.849, "F": 0.147, "X": 0.001, "U": 0.003}
SEX_P = np.array([_SEX_P[s] for s in SEX_CODES])
FEMALE = SEX_CODES.index("F")
# 2011 census 18+1 ethnicity codes (monitoring only) and rough shares among nominals. Drawn
# independently of everything else: the world gives ethnicity no part in offending.
ETHNICITY = {
    "W1": 0.690, "W2": 0.010, "W3": 0.008, "W9": 0.040,
    "M1": 0.020, "M2": 0.006, "M3": 0.006, "M9": 0.010,
    "A1": 0.020, "A2": 0.030, "A3": 0.010, "A4": 0.003, "A9": 0.010,
    "B1": 0.030, "B2": 0.020, "B9": 0.010,
    "O1": 0.005, "O9": 0.010,
    "NS": 0.061,
}

# Offending make-up (annual rate of offences committed, recorded or not, at the person's peak).
PROPENSITY_MEDIAN = 2.5
PROPENSITY_SIGMA = 1.3
PERSISTENT_SHARE = 0.06  # life-course persistent (Moffitt): higher rate, earlier onset, slower decline
PERSISTENT_FACTOR = 3.0
OCCASIONAL_SHARE = 0.45  # in the index for one or two offences in a lifetime (most people known to the police)
OCCASIONAL_FACTOR = 0.08
NOT_IN_POLICE_INDEX = 0.03  # known to probation or prison only: their offending was elsewhere
MOVED_IN_SHARE = 0.15  # came to the force area during their career; earlier offending is elsewhere


@dataclass
class People:
    n: int
    index: np.ndarray  # global person number (0-based)
    sex: np.ndarray
    dob: np.ndarray
    area: np.ndarray
    ethnicity: np.ndarray
    dead: np.ndarray
    deceased: np.ndarray  # day of death (meaningful where dead)
    in_index: np.ndarray  # in the force's nominal index
    moved_in: np.ndarray  # first day in the force area
    away_share: np.ndarray  # share of offences committed in other force areas once resident
    theta: np.ndarray  # peak annual offending rate
    persistent: np.ndarray
    onset: np.ndarray  # age offending starts
    peak: np.ndarray  # age of the peak
    spread: np.ndarray  # width of the curve in log-age (larger: slower decline)


def make_people(rng: np.random.Generator, index: np.ndarray, ext: int) -> People:
    n = index.size
    sex = rng.choice(len(SEX_CODES), size=n, p=SEX_P).astype(np.int8)
    older = rng.random(n) < 0.25
    age = np.where(older, 28.0 + rng.gamma(2.0, 8.0, n), 12.5 + rng.gamma(3.0, 5.0, n))
    age = np.clip(age, 12.05, 85.0)
    dob = ext - np.round(age * YEAR).astype(np.int64)
    area = rng.choice(len(AREAS), size=n, p=AREA_P).astype(np.int8)
    eth_p = np.array(list(ETHNICITY.values()))
    ethnicity = rng.choice(len(eth_p), size=n, p=eth_p / eth_p.sum()).astype(np.int8)
    dead = rng.random(n) < 0.003
    lo_death = np.maximum(ext - 6 * 365, dob + int(12 * YEAR) + 1)
    deceased = np.minimum(lo_death + (rng.random(n) * np.maximum(ext - lo_death, 1)).astype(np.int64), ext - 1)
    in_index = rng.random(n) >= NOT_IN_POLICE_INDEX
    moved = rng.random(n) < MOVED_IN_SHARE
    adult_life = np.maximum(ext - (dob + int(14 * YEAR)), 1)
    moved_in = np.where(moved, dob + int(14 * YEAR) + (rng.random(n) * adult_life).astype(np.int64), dob)
    away_share = np.where(rng.random(n) < 0.1, rng.uniform(0.2, 0.5, n), rng.uniform(0.02, 0.12, n))

    persistent = rng.random(n) < PERSISTENT_SHARE
    # sex: women offend at about a fifth of men's rate (a consistent finding across offence types)
    theta = PROPENSITY_MEDIAN * np.exp(PROPENSITY_SIGMA * rng.standard_normal(n))
    occasional = ~persistent & (rng.random(n) < OCCASIONAL_SHARE)
    theta *= np.where(persistent, PERSISTENT_FACTOR, np.where(occasional, OCCASIONAL_FACTOR, 1.0))
    theta *= np.where(sex == FEMALE, 0.45, 1.0)
    onset = np.where(persistent, 10.0 + rng.gamma(1.5, 1.5, n), 11.0 + rng.gamma(2.5, 2.0, n))
    peak = np.where(persistent, rng.normal(22.0, 3.0, n), rng.normal(18.5, 2.0, n))
    peak = np.clip(np.maximum(peak, onset + 1.0), 14.0, 35.0)
    spread = np.where(persistent, rng.uniform(0.5, 0.65, n), rng.uniform(0.35, 0.5, n))
    return People(n, index, sex, dob, area, ethnicity, dead, deceased, in_index, moved_in, away_share,
                  theta, persistent, onset, peak, spread)


def age_curve_integral(people: People, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """Integral of the age curve over ages [a1, a2] (years), in closed form.

    With u = ln a the curve is exp(-(u - mu)^2 / 2s^2), so the integral of it da = e^u du is
    peak * s * sqrt(2 pi) * e^(s^2/2) * [Phi((ln a - mu - s^2) / s)] between the limits.
    """
    from scipy.special import ndtr

    s = people.spread
    mu = np.log(people.peak)
    lo = np.maximum(a1, people.onset)
    hi = np.maximum(a2, lo)
    z = lambda a: (np.log(a) - mu - s * s) / s  # noqa: E731
    return people.peak * s * np.sqrt(2 * np.pi) * np.exp(s * s / 2) * (ndtr(z(hi)) - ndtr(z(lo)))


def first_event_age(rng: np.random.Generator, people: People, a1: np.ndarray, a2: np.ndarray,
                    k: np.ndarray) -> np.ndarray:
    """Age of the first of k events spread over [a1, a2] by the age curve (k >= 1)."""
    from scipy.special import ndtr, ndtri

    s = people.spread
    mu = np.log(people.peak)
    lo = np.maximum(a1, people.onset)
    hi = np.maximum(a2, lo)
    f1 = ndtr((np.log(lo) - mu - s * s) / s)
    f2 = ndtr((np.log(hi) - mu - s * s) / s)
    u = 1.0 - rng.random(people.n) ** (1.0 / np.maximum(k, 1))  # the minimum of k uniforms
    f = np.clip(f1 + u * (f2 - f1), 1e-12, 1 - 1e-12)
    return np.clip(np.exp(mu + s * s + s * ndtri(f)), lo, hi)


# ----------------------------------------------------------------------------------------------
# Names. Surnames are at least 6 letters and forenames at least 4, so that a test can look for
# them in logs without matching ordinary words.
# ----------------------------------------------------------------------------------------------

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


@dataclass
class Names:
    surname: pl.Series
    forenames: pl.Series  # first forename, and a middle one for some
    first: pl.Series
    nickname: pl.Series  # the short form of the first forename
    middle: pl.Series  # "" where none
    has_middle: np.ndarray
    double_barrelled: np.ndarray
    apostrophe: np.ndarray
    accent: np.ndarray
    forename_pool: pl.Series
    surname_pool: pl.Series

    def take(self, idx: np.ndarray) -> Names:
        """The names of some people (the pools stay whole)."""
        return Names(*(v.gather(idx) if isinstance(v, pl.Series) else v[idx] for v in (
            self.surname, self.forenames, self.first, self.nickname, self.middle, self.has_middle,
            self.double_barrelled, self.apostrophe, self.accent)), self.forename_pool, self.surname_pool)


def _pool(heads: tuple[str, ...], tails: tuple[str, ...], min_len: int) -> tuple[np.ndarray, np.ndarray]:
    h = np.repeat(np.array(heads), len(tails))
    combos = np.char.add(h, np.tile(np.array(tails), len(heads)))
    keep = (np.char.str_len(combos) >= min_len) & ~np.isin(combos, list(_NOT_NAMES))
    combos, h = combos[keep], h[keep]
    combos, first = np.unique(combos, return_index=True)
    return combos, h[first]


def _zipf_choice(rng: np.random.Generator, size_pool: int, n: int) -> np.ndarray:
    order = np.random.default_rng(size_pool).permutation(size_pool)  # which names are common: fixed
    w = 1.0 / (np.arange(size_pool) + 8.0)
    return order[rng.choice(size_pool, size=n, p=w / w.sum())]


def _nick(heads: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Short forms as forenames take them (Ed -> Eddy, Cal -> Callie); at least 4 letters."""
    last = np.array([h[-1] for h in heads]) if heads.size else heads
    doubled = np.char.add(heads, last)
    short = np.char.add(doubled, np.where(female, "ie", "y"))
    return np.where(np.char.str_len(heads) >= 4, heads, short)


def make_names(rng: np.random.Generator, people: People) -> Names:
    n = people.n
    surnames, _ = _pool(_SURNAME_HEADS, _SURNAME_TAILS, 6)
    accent_surnames, _ = _pool(_SURNAME_HEADS, _SURNAME_ACCENT_TAILS, 6)
    male, male_h = _pool(_FORENAME_HEADS, _MALE_TAILS, 4)
    female, female_h = _pool(_FORENAME_HEADS, _FEMALE_TAILS, 4)
    accent_fore, accent_h = _pool(_ACCENT_HEADS, _MALE_TAILS + _FEMALE_TAILS, 4)

    sur = surnames[_zipf_choice(rng, surnames.size, n)]
    acc_sur = rng.random(n) < 0.01
    sur = np.where(acc_sur, accent_surnames[rng.integers(0, accent_surnames.size, n)], sur)
    double = (rng.random(n) < 0.04) & ~acc_sur
    sur = np.where(double, np.char.add(np.char.add(sur, "-"), surnames[rng.integers(0, surnames.size, n)]), sur)
    apostrophe = (rng.random(n) < 0.02) & ~acc_sur & ~double
    prefix = np.where(rng.random(n) < 0.6, "O\u2019", "D\u2019")
    sur = np.where(apostrophe, np.char.add(prefix, sur), sur)

    female_like = (people.sex == FEMALE) | ((people.sex >= 2) & (rng.random(n) < 0.5))
    fi, mi = _zipf_choice(rng, female.size, n), _zipf_choice(rng, male.size, n)
    first = np.where(female_like, female[fi], male[mi])
    head = np.where(female_like, female_h[fi], male_h[mi])
    acc_fore = rng.random(n) < 0.03
    ai = rng.integers(0, accent_fore.size, n)
    first = np.where(acc_fore, accent_fore[ai], first)
    head = np.where(acc_fore, accent_h[ai], head)
    middle = np.where(female_like, female[rng.integers(0, female.size, n)], male[rng.integers(0, male.size, n)])
    has_middle = rng.random(n) < 0.45
    first_s = pl.Series("first", first, dtype=pl.String)
    middle_s = pl.Series("middle", np.where(has_middle, middle, ""), dtype=pl.String)
    forenames = pl.select(
        pl.when(pl.Series(has_middle)).then(pl.concat_str([first_s, pl.lit(" "), middle_s]))
        .otherwise(first_s).alias("forenames")
    ).to_series()
    return Names(
        surname=pl.Series("surname", sur, dtype=pl.String), forenames=forenames, first=first_s,
        nickname=pl.Series("nickname", _nick(head, female_like), dtype=pl.String), middle=middle_s,
        has_middle=has_middle, double_barrelled=double, apostrophe=apostrophe, accent=acc_sur | acc_fore,
        forename_pool=pl.Series("pool", np.concatenate([male, female]), dtype=pl.String),
        surname_pool=pl.Series("spool", surnames, dtype=pl.String),
    )
