"""Faults: rows made invalid on purpose, for validation to quarantine, counted by kind.

Chosen per logical block of people (from the block's own random stream), so the same seed
gives the same faults whatever the chunk size. Within a block at least one of each kind that
applies is injected when the block's extract has more than 200 rows and the rate is positive.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.identifiers import PNC_CHECK_ALPHABET
from synthetic.util import PNC_LETTERS, dates, letters

FAULT_KINDS_PER_EXTRACT = {
    "police_nominals": 7, "police_offences": 6, "probation_cases": 7, "probation_events": 5,
    "prison_custody": 7,
}


class Faults:
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
        return dates("d", days).dt.to_string(self.fmt).to_list()

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


def _fault_nominals(f: Faults, df: pl.DataFrame) -> None:
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
        wrong = letters((position + f.rng.integers(1, 23, idx.size)) % 23, PNC_LETTERS)
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
    f.set("sex", idx, f.pick_text(["9", "MF", "Unknwn", "0"], idx.size))


def _fault_offences(f: Faults) -> None:
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


def _fault_cases(f: Faults) -> None:
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


def _fault_events(f: Faults) -> None:
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


def _fault_custody(f: Faults) -> None:
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


FAULTERS = {
    "police_nominals": lambda f, df: _fault_nominals(f, df),
    "police_offences": lambda f, df: _fault_offences(f),
    "probation_cases": lambda f, df: _fault_cases(f),
    "probation_events": lambda f, df: _fault_events(f),
    "prison_custody": lambda f, df: _fault_custody(f),
}


def inject(name: str, df: pl.DataFrame, rng: np.random.Generator, rate: float, date_format: str,
           ext: int, totals: dict[str, int]) -> tuple[pl.DataFrame, np.ndarray]:
    """The block's rows of one extract with its faults applied, and which of the rows given were
    faulted (a boolean mask over `df`, duplicated rows included); counts added to `totals`."""
    f = Faults(rng, df.height, rate, FAULT_KINDS_PER_EXTRACT[name], date_format, ext)
    FAULTERS[name](f, df)
    for kind, count in f.counts.items():
        totals[kind] = totals.get(kind, 0) + count
    return f.apply(df), f.used.copy()
