"""A FEBRL-style record-linkage benchmark: originals and their corrupted duplicates, names and
dates of birth only, written as a workspace the pipeline ingests like any other.

FEBRL's data set generator (Christen 2005; the FEBRL 3 and 4 benchmarks) makes original
records from frequency tables and derives duplicates from them, each with one or more
modifications: typographical errors (insert, delete, substitute a keyboard neighbour, transpose),
OCR errors, phonetic variants, name variations (nicknames), swapped fields and missing values;
for dates, a mistyped digit, day and month swapped, the year off by one or ten. This module does
the same with the project's own synthetic name pools (`synthetic.people`: no real names) and a
fixed seed. Nothing else is written: no sex, no area of its own, no identifier.

Two layouts, because a benchmark can reach the pipeline either way:
- `cross`: the originals are police nominals and the duplicates probation cases (two agencies);
- `within`: every record is a probation case (duplicates within one agency's extract).
Police nominals require an area: the cross layout fills one constant value, as a loader would.

The corruption works record by record in Python, as FEBRL's does: a benchmark is thousands of
records, made once, never on a hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

from synthetic.people import make_names

LAYOUTS = ("cross", "within")
BENCHMARK_AREA = "Benchmark"
EXTRACT_DATE = date(2026, 11, 1)

# Modifications of a duplicate and their relative frequency (FEBRL-like: names take most).
KINDS = {
    "typo": 0.26, "ocr": 0.07, "phonetic": 0.10, "nickname": 0.08, "swap_names": 0.05,
    "surname_missing": 0.02, "forename_missing": 0.03, "dob_missing": 0.05,
    "dob_digit": 0.13, "dob_day_month": 0.06, "dob_year_one": 0.07, "dob_year_ten": 0.04, "drop_middle": 0.04,
    # a modification of a field the benchmark does not keep (address, telephone, ...): the duplicate
    # stays exact on names and date. Weighted so that about 45% of duplicates are exact, as the
    # held-out benchmark's exact fallback found (issue 14).
    "other_field": 1.7,
}
# How many modifications a duplicate gets: 1 to 4 (FEBRL benchmarks allow up to 5 per record).
MODIFICATIONS_P = (0.40, 0.35, 0.17, 0.08)

_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_OCR = (("m", "rn"), ("rn", "m"), ("d", "cl"), ("cl", "d"), ("h", "li"), ("w", "vv"), ("l", "i"), ("i", "l"),
        ("e", "c"), ("o", "c"), ("n", "ri"), ("u", "v"))
_PHONETIC = (("ph", "f"), ("f", "ph"), ("ck", "k"), ("k", "ck"), ("y", "i"), ("i", "y"), ("ee", "ea"), ("ea", "ee"),
             ("th", "t"), ("ou", "ow"), ("ow", "ou"), ("c", "k"), ("s", "z"), ("z", "s"), ("er", "ar"),
             ("tt", "t"), ("ll", "l"), ("nn", "n"), ("rr", "r"), ("t", "tt"), ("l", "ll"), ("ie", "y"), ("ey", "y"),
             ("wor", "wer"), ("or", "our"), ("ham", "hum"), ("ton", "tun"), ("son", "sen"))


def _neighbours() -> dict[str, str]:
    out = {}
    for r, row in enumerate(_KEYBOARD):
        for c, ch in enumerate(row):
            near = [row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)]
            for other in (r - 1, r + 1):
                if 0 <= other < len(_KEYBOARD):
                    near += [_KEYBOARD[other][j] for j in (c - 1, c, c + 1) if 0 <= j < len(_KEYBOARD[other])]
            out[ch] = "".join(near)
    return out


_NEAR = _neighbours()


def _case_like(new: str, old: str) -> str:
    return new.upper() if old.isupper() else new


def typo(rng: np.random.Generator, word: str) -> str:
    """One keying error: insert, delete, substitute a keyboard neighbour, or transpose two letters.
    The first letter is kept most of the time, as in keyed data (errors cluster later in a word)."""
    if len(word) < 2:
        return word
    kind = rng.integers(0, 4)
    i = int(rng.integers(1, len(word))) if rng.random() < 0.85 else 0
    ch = word[i].lower()
    near = _NEAR.get(ch, "abcdefghijklmnopqrstuvwxyz")
    letter = _case_like(near[int(rng.integers(0, len(near)))], word[i])
    if kind == 0:
        return word[:i] + letter + word[i:]
    if kind == 1 and len(word) > 3:
        return word[:i] + word[i + 1:]
    if kind == 2 or i == len(word) - 1:
        return word[:i] + letter + word[i + 1:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _replace_one(rng: np.random.Generator, word: str, table) -> str:
    lower = word.lower()
    found = [(a, b, i) for a, b in table for i in range(len(lower)) if lower.startswith(a, i)]
    if not found:
        return typo(rng, word)
    a, b, i = found[int(rng.integers(0, len(found)))]
    new = word[:i] + _case_like(b, word[i:i + len(a)]) + word[i + len(a):]
    return new[0].upper() + new[1:] if word[0].isupper() else new


def ocr(rng: np.random.Generator, word: str) -> str:
    return _replace_one(rng, word, _OCR)


def phonetic(rng: np.random.Generator, word: str) -> str:
    return _replace_one(rng, word, _PHONETIC)


def _valid(d: date) -> bool:
    # an age of 10 to 100 on the extract date (the contract's rule): else the row is rejected, not linked
    return EXTRACT_DATE.year - 99 <= d.year <= EXTRACT_DATE.year - 11


def _dob_digit(rng: np.random.Generator, d: date) -> date:
    text = d.strftime("%Y%m%d")
    for _ in range(8):
        i = int(rng.choice([2, 3, 4, 5, 6, 7], p=[0.1, 0.3, 0.1, 0.2, 0.1, 0.2]))
        digit = str((int(text[i]) + int(rng.integers(1, 10))) % 10)
        new = text[:i] + digit + text[i + 1:]
        try:
            out = date(int(new[:4]), int(new[4:6]), int(new[6:]))
        except ValueError:
            continue
        if _valid(out):
            return out
    return d


def _dob_change(rng: np.random.Generator, kind: str, d: date) -> date:
    if kind == "dob_digit":
        return _dob_digit(rng, d)
    if kind == "dob_day_month":
        try:
            return date(d.year, d.day, d.month) if d.day <= 12 and d.day != d.month else _dob_digit(rng, d)
        except ValueError:
            return d
    step = 1 if kind == "dob_year_one" else 10
    year = d.year + (step if rng.random() < 0.5 else -step)
    try:
        out = date(year, d.month, d.day)
    except ValueError:  # 29 February
        out = date(year, d.month, 28)
    return out if _valid(out) else d


@dataclass(frozen=True)
class Benchmark:
    records: pl.DataFrame  # person_id, original, surname, forenames, date_of_birth, corruptions
    layout: str
    seed: int

    @property
    def true_pairs(self) -> int:
        sizes = self.records.group_by("person_id").len()["len"].to_numpy()
        return int((sizes * (sizes - 1) // 2).sum())


def make_benchmark(records: int, seed: int = 7, layout: str = "cross", duplicated_share: float | None = None,
                   max_duplicates: int | None = None) -> Benchmark:
    """About `records` records: originals and duplicates. `cross` (FEBRL 4): every original has
    one duplicate; `within` (FEBRL 3): 70% of originals have 1 to `max_duplicates` (default 4)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if records < 2:
        raise ValueError("records must be at least 2")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(14,)))
    share = duplicated_share if duplicated_share is not None else (1.0 if layout == "cross" else 0.7)
    most = max_duplicates if max_duplicates is not None else (1 if layout == "cross" else 4)
    weights = 1.0 / np.arange(1, most + 1) ** 1.5  # Zipf-like, as FEBRL draws the duplicates per original
    mean_dups = share * float((np.arange(1, most + 1) * weights).sum() / weights.sum())
    n_orig = max(1, int(round(records / (1 + mean_dups))))
    sex = np.where(rng.random(n_orig) < 0.5, 0, 1).astype(np.int8)  # only for the name pools
    names = make_names(rng, SimpleNamespace(n=n_orig, sex=sex))
    age_days = rng.integers(int(18 * 365.25), int(80 * 365.25), n_orig)
    dobs = [EXTRACT_DATE - timedelta(days=int(a)) for a in age_days]
    duplicated = rng.random(n_orig) < share
    n_dups = np.where(duplicated, rng.choice(np.arange(1, most + 1), size=n_orig, p=weights / weights.sum()), 0)

    surnames, firsts, forenames = names.surname.to_list(), names.first.to_list(), names.forenames.to_list()
    nicknames = names.nickname.to_list()
    kinds, kind_p = list(KINDS), np.array(list(KINDS.values()))
    kind_p = kind_p / kind_p.sum()
    rows = []
    for p in range(n_orig):
        rows.append((p, True, surnames[p], forenames[p], dobs[p], ""))
        for _ in range(int(n_dups[p])):
            sur, fore, dob = surnames[p], forenames[p], dobs[p]
            done = []
            for kind in rng.choice(kinds, size=int(rng.choice(len(MODIFICATIONS_P), p=MODIFICATIONS_P)) + 1,
                                   p=kind_p):
                on_surname = rng.random() < 0.5
                if kind in ("typo", "ocr", "phonetic"):
                    change = {"typo": typo, "ocr": ocr, "phonetic": phonetic}[kind]
                    if on_surname and sur:
                        sur = change(rng, sur)
                    elif fore:
                        first, _, rest = fore.partition(" ")
                        fore = (change(rng, first) + " " + rest).strip()
                    kind = f"{kind}_{'surname' if on_surname and sur else 'forename'}"
                elif kind == "nickname" and fore:
                    first, _, rest = fore.partition(" ")
                    fore = (nicknames[p] + " " + rest).strip() if first == firsts[p] else fore
                elif kind == "drop_middle":
                    fore = fore.partition(" ")[0]
                elif kind == "swap_names":
                    sur, fore = fore.partition(" ")[0], sur
                elif kind == "surname_missing":
                    sur = ""
                elif kind == "forename_missing":
                    fore = ""
                elif kind == "dob_missing":
                    dob = None
                elif kind.startswith("dob_") and dob is not None:
                    dob = _dob_change(rng, kind, dob)
                done.append(str(kind))
            if not sur and not fore:  # a record with neither name is no record: keep the forename
                fore = forenames[p]
            if rng.random() < 0.15:  # harmless: keyed in capitals
                sur, fore = sur.upper(), fore.upper()
            rows.append((p, False, sur, fore, dob, ",".join(done)))
    frame = pl.DataFrame(rows, schema={"person_id": pl.Int64, "original": pl.Boolean, "surname": pl.String,
                                       "forenames": pl.String, "date_of_birth": pl.Date, "corruptions": pl.String},
                         orient="row")
    return Benchmark(frame, layout, seed)


def _crn(i: np.ndarray) -> pl.Series:
    letter = pl.Series(np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))[(i // 1_000_000) % 26])
    return letter + pl.Series([f"{v:06d}" for v in (i % 1_000_000)])


def write_benchmark_workspace(root: Path, bench: Benchmark, extra_config: str = "") -> Path:
    """The benchmark as five canonical CSV extracts (three empty or header-only), an iom.toml and
    `truth/identities.parquet` (the pipeline never reads it; `iom links evaluate` does). Returns
    the config path. `extra_config` holds lines for the [linking] table (e.g. `pair_budget = 20`)."""
    from pipeline.config import render_config  # the pipeline's own template: the same config a user gets
    from pipeline.contract import EXTRACTS

    root = Path(root)
    (root / "extracts").mkdir(parents=True, exist_ok=True)
    (root / "truth").mkdir(parents=True, exist_ok=True)
    frame = bench.records.with_row_index("i")
    police = frame.filter(pl.col("original")) if bench.layout == "cross" else frame.clear()
    probation = frame.filter(~pl.col("original")) if bench.layout == "cross" else frame
    police = police.with_columns(police_person_id=pl.format("B{}", pl.col("i").cast(pl.String).str.zfill(7)),
                                 area=pl.lit(BENCHMARK_AREA))
    probation = probation.with_columns(crn=_crn(probation["i"].to_numpy()) if probation.height else pl.lit(""))
    tables = {"police_nominals": police, "probation_cases": probation}
    specs = []
    for name, extract in EXTRACTS.items():
        table = tables.get(name)
        columns = extract.column_names
        out = (table.select([pl.col(c) if c in table.columns else pl.lit(None, pl.String).alias(c) for c in columns])
               if table is not None else pl.DataFrame({c: [] for c in columns}, schema=dict.fromkeys(columns, pl.String)))
        out.write_csv(root / "extracts" / f"{name}.csv")
        specs.append({"name": name, "file": f"extracts/{name}.csv", "extract_date": EXTRACT_DATE})
    truth = pl.concat([
        police.select(pl.lit("police_nominals").alias("source"), pl.col("police_person_id").alias("record_id"),
                      pl.col("person_id").cast(pl.String), "corruptions"),
        probation.select(pl.lit("probation_cases").alias("source"), pl.col("crn").alias("record_id"),
                         pl.col("person_id").cast(pl.String), "corruptions")])
    truth.write_parquet(root / "truth" / "identities.parquet")
    text = render_config(specs)
    for line in filter(None, (x.strip() for x in extra_config.splitlines())):
        key = line.split("=", 1)[0].strip()
        text = text.replace(f"\n{key} = ", f"\n# {key} = ", 1)  # the template's own line, if any
        text = text.replace("[linking]\n", f"[linking]\n{line}\n", 1)
    config = root / "iom.toml"
    config.write_text(text, encoding="utf-8")
    return config
