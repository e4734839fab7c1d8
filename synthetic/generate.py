"""Entry point: write a synthetic world (five extracts, the truth, past decisions) a block at a time.

People are made in logical blocks of `block_people`; each block draws from its own random
streams, children of `SeedSequence(seed, spawn_key=(block,))`, and is written as soon as it
is made. The output therefore depends on the seed, the block size and the arguments, never on
how many blocks are held together (`chunk_people`), and memory stays that of one chunk.
Identifiers that must be unique over the whole world (PNC, CRN, NOMIS, police ids) come from
bijections of the person's global number, so no block needs to know another's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from synthetic import agencies
from synthetic.agencies import Ids
from synthetic.careers import load_reference, simulate
from synthetic.faults import inject
from synthetic.formats import (
    EXTRACT_FORMATS,
    FAULT_KINDS,
    PRISON_NOISE,
    PROBATION_NOISE,
    GeneratedData,
    IdentityNoise,
    PastDecisions,
)
from synthetic.identity import CORRUPTIONS, copy_of
from synthetic.people import make_names, make_people
from synthetic.truth import TruthWriters, decision_frame, write_truth, write_world
from synthetic.util import (
    PNC_LETTERS,
    YEAR,
    crn_strings,
    day,
    digits,
    letters,
    nomis_strings,
    pnc_strings,
    scramble,
    year_of,
)
from synthetic.writers import ExtractWriter

log = logging.getLogger(__name__)

HISTORY_YEARS = 10
BLOCK_PEOPLE = 50_000
MAX_PEOPLE = 20_000_000  # the PNC serial space (10^7 a year) used twice, by year parity
_STREAMS = ("people", "names", "careers", "ids", "police", "probation_copy", "prison_copy", "probation", "prison",
            "decisions", "panel", *(f"faults_{name}" for name in EXTRACT_FORMATS))
_ORDER = list(EXTRACT_FORMATS)


def _window_start(extract_date: date) -> date:
    if extract_date.month == 2 and extract_date.day == 29:
        return extract_date - timedelta(days=int(HISTORY_YEARS * YEAR))
    return extract_date.replace(year=extract_date.year - HISTORY_YEARS)


def _ids(rng: np.random.Generator, p, c, people_total: int, ext: int) -> tuple[Ids, pl.Series]:
    n = p.n
    width = max(7, len(str(people_total)))
    police_id = pl.select(pl.concat_str([pl.lit("N"), digits(p.index + 1, width)])).to_series()
    # a PNC id from the first arrest: everyone with a sanction or a detected offence, some others
    first_detected = np.full(n, ext + 1, dtype=np.int64)
    np.minimum.at(first_detected, c.person[c.detected & (c.day <= ext)], c.day[c.detected & (c.day <= ext)])
    has_pnc = (first_detected <= ext) | (c.pre_sanctions > 0) | (rng.random(n) < 0.4)
    other = p.dob + (rng.uniform(12.0, 25.0, n) * YEAR).astype(np.int64)
    record_day = np.where(c.pre_sanctions > 0, c.pre_first, np.where(first_detected <= ext, first_detected, other))
    record_day = np.clip(record_day, p.dob + int(10 * YEAR), ext)
    year4 = year_of(record_day)
    serial = scramble(p.index % 10_000_000, 10_000_000, 3_141_593, 1_234_567)
    if people_total > 10_000_000:
        # the serial space is used twice: the second use only in odd years, the first in even ones
        wrong = (year4 % 2) != (p.index // 10_000_000) % 2
        year4 = np.where(wrong, year4 - 1, year4)
    police_holds = has_pnc & (rng.random(n) < 0.97)
    pnc_police = pl.select(pl.when(pl.Series(police_holds)).then(
        pnc_strings(year4, serial, rng.random(n) < 0.65)).alias("pnc_id")).to_series()
    pnc_true = pnc_strings(year4, serial, np.ones(n, dtype=bool))
    has_cro = police_holds & (rng.random(n) < 0.45)
    sf = rng.random(n) < 0.10
    cro_serial = np.where(sf, rng.integers(100_000, 1_000_000, n), rng.integers(1, 1_000_000, n))
    yy = year4 % 100
    check = letters((yy * 1_000_000 + cro_serial) % 23, PNC_LETTERS)
    df = pl.DataFrame({"s6": digits(cro_serial, 6), "yy": digits(yy, 2), "c": check, "sf": sf, "has": has_cro})
    cro = df.select(
        pl.when(~pl.col("has")).then(None)
        .when(pl.col("sf")).then(pl.concat_str([pl.lit("SF"), pl.col("yy"), pl.lit("/"), pl.col("s6"), pl.col("c")]))
        .otherwise(pl.concat_str([pl.col("s6"), pl.lit("/"), pl.col("yy"), pl.col("c")])).alias("cro")
    ).to_series()
    crn = crn_strings(scramble(p.index, 26_000_000, 7_777_777, 424_242))
    nomis = nomis_strings(scramble(p.index, 26 * 10_000 * 676, 12_345_679, 9_876_543))
    return Ids(police_id, has_pnc, year4, serial, pnc_police, cro, crn, nomis), pnc_true


def generate_extracts(out_dir: Path, people: int, seed: int, extract_date: date, fault_rate: float = 0.002,
                      progress: Callable[[str], None] | None = None, *, past_decisions: PastDecisions | None = None,
                      identity_noise: float = 1.0, probation_noise: IdentityNoise | None = None,
                      prison_noise: IdentityNoise | None = None, truth_dir: Path | None = None,
                      block_people: int = BLOCK_PEOPLE, chunk_people: int | None = None) -> GeneratedData:
    """Write the five synthetic extracts into `out_dir`, the truth and past decisions beside it.

    Same arguments, same bytes, whatever `chunk_people` (how many people are held in memory at
    once, rounded to whole blocks). `fault_rate` is the share of rows per extract given a fault,
    spread evenly over the kinds that apply to that extract. `identity_noise` scales every rate of
    identity corruption (0: clean copies) of `probation_noise` and `prison_noise` (default: the
    documented rates, `synthetic.formats.PROBATION_NOISE` and `PRISON_NOISE`). `past_decisions` simulates an IOM scheme (None: none).
    The truth goes to `truth_dir` (default: `out_dir`'s parent / "truth"), the decisions to
    `truth_dir`'s parent / "decisions".
    """
    if people < 1:
        raise ValueError("people must be at least 1")
    if people > MAX_PEOPLE:
        raise ValueError(f"people must be at most {MAX_PEOPLE:,}")
    if not 0 <= fault_rate < 0.5:
        raise ValueError("fault_rate must be in [0, 0.5)")
    if not 0 <= identity_noise <= 5:
        raise ValueError("identity_noise must be between 0 and 5")
    if past_decisions is not None and not 0 <= past_decisions.treatment_effect < 1:
        raise ValueError("treatment_effect must be in [0, 1)")
    if block_people < 1:
        raise ValueError("block_people must be at least 1")

    def stage(name: str) -> None:
        log.debug("generate: %s", name)
        if progress is not None:
            progress(name)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir = Path(truth_dir) if truth_dir is not None else out_dir.resolve().parent / "truth"
    ext = day(extract_date)
    window = _window_start(extract_date)
    window_start = day(window)
    ref = load_reference()
    probation_noise = (probation_noise or PROBATION_NOISE).scaled(identity_noise)
    prison_noise = (prison_noise or PRISON_NOISE).scaled(identity_noise)
    writers = {name: ExtractWriter(name, out_dir) for name in _ORDER}
    truth = TruthWriters(truth_dir, past_decisions is not None)
    totals: dict[str, int] = {}
    corruptions: dict[str, int] = {}
    counters = {"offences": 0, "spells": 0}
    blocks = (people + block_people - 1) // block_people
    per_chunk = max(1, (chunk_people or block_people) // block_people)
    buffered: list[dict[str, pl.DataFrame]] = []

    def flush() -> None:
        for frames in buffered:
            for name in _ORDER:
                writers[name].write(frames[name])
        buffered.clear()

    for b in range(blocks):
        first = b == 0
        lo, hi = b * block_people, min(people, (b + 1) * block_people)
        rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in
                                   np.random.SeedSequence(seed, spawn_key=(b,)).spawn(len(_STREAMS))), strict=True))
        if first:
            stage("people")
        p = make_people(rngs["people"], np.arange(lo, hi, dtype=np.int64), ext)
        names = make_names(rngs["names"], p)
        if first:
            stage("offences")
        c = simulate(rngs["careers"], p, ref, ext, window_start, past_decisions, rngs["panel"])
        ids, pnc_true = _ids(rngs["ids"], p, c, people, ext)

        if first:
            stage("police extracts")
        nominals, offences, on_file = agencies.police_frames(rngs["police"], p, names, ids, c, ref, ext,
                                                             counters["offences"])
        counters["offences"] += offences.height

        if first:
            stage("custody")
        spells = agencies.custody_spells(p, c, ext)
        has_nomis = np.zeros(p.n, dtype=bool)
        has_nomis[spells["person"]] = True
        if first:
            stage("probation")
        per = agencies.supervision_periods(p, c, spells, ext)
        has_crn = np.zeros(p.n, dtype=bool)
        has_crn[per.person] = True
        probation_copy = copy_of(rngs["probation_copy"], np.flatnonzero(has_crn), names, p.dob, ids.pnc_year,
                                 ids.pnc_serial, ids.has_pnc, has_nomis, probation_noise, benign=0.08)
        prison_copy = copy_of(rngs["prison_copy"], np.flatnonzero(has_nomis), names, p.dob, ids.pnc_year,
                              ids.pnc_serial, ids.has_pnc, np.zeros(p.n, dtype=bool), prison_noise, benign=0.18)
        for source, copy, mask in (("probation_cases", probation_copy, has_crn),
                                   ("prison_custody", prison_copy, has_nomis)):
            for kind in CORRUPTIONS:
                if kind == "nomis_missing" and source == "prison_custody":
                    continue
                key = f"{source}.{kind}"
                corruptions[key] = corruptions.get(key, 0) + int((copy.flags[kind] & mask).sum())
        cases, events = agencies.probation_frames(rngs["probation"], p, ids, probation_copy, c, per, ref, ext)
        if first:
            stage("prison extract")
        custody = agencies.prison_frame(rngs["prison"], p, ids, prison_copy, spells, counters["spells"])
        counters["spells"] += custody.height

        frames = {"police_nominals": nominals, "police_offences": offences, "probation_cases": cases,
                  "probation_events": events, "prison_custody": custody}
        faulted = {}
        for name in _ORDER:
            fmt = EXTRACT_FORMATS[name]
            frames[name], faulted[name] = inject(name, frames[name], rngs[f"faults_{name}"], fault_rate,
                                                 fmt.date_format, ext, totals)
        # [one person]: their police nominal was faulted, so validation quarantines it and no
        # decision can name them (the nominals are the people in the police index, in order)
        nominal_faulted = np.zeros(p.n, dtype=bool)
        nominal_faulted[np.flatnonzero(p.in_index)[faulted["police_nominals"]]] = True
        if first:
            stage("truth")
        write_truth(truth, p, ids, c, ref, on_file, has_crn, has_nomis, probation_copy, prison_copy, ext, pnc_true)
        if truth.decisions is not None:
            truth.decisions.write(decision_frame(rngs["decisions"], p, ids, c, ext, nominal_faulted))
        buffered.append(frames)
        if len(buffered) >= per_chunk:
            flush()
        if not first:
            stage(f"block {b + 1} of {blocks}")
    flush()

    written = [writers[name].close() for name in _ORDER]
    truth.close()
    faults = {kind: totals.get(kind, 0) for kind in FAULT_KINDS}
    counts = {e.name: e.rows for e in written}
    write_world(truth.truth_dir / "world.json", seed=seed, people=people, extract_date=extract_date,
                window_start=window, block_people=block_people, decisions=past_decisions,
                probation_noise=probation_noise, prison_noise=prison_noise, fault_rate=fault_rate,
                counts={"rows": counts, "faults": faults, "corruptions": corruptions})
    log.info("generated %d people: %s; faults %s", people, counts, faults)
    return GeneratedData(extracts=written, extract_date=extract_date, seed=seed, people=people, faults=faults,
                         truth_dir=truth.truth_dir.resolve(), decisions_path=truth.decisions_path,
                         corruptions=corruptions)
