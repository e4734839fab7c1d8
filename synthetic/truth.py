"""The truth beside the extracts (never read by the pipeline) and the past panel decisions.

truth/people.parquet       one row per synthetic person: the ids each agency gave them and what
                           they really did (offences committed, in all areas, recorded or not)
truth/offending_by_year.parquet  one row per person and calendar year with any offending
truth/sanctions.parquet    every sanction (conviction, caution) in the window, all areas: the PNC
truth/identities.parquet   one row per agency record identity: which person, which corruptions
truth/world.json           the parameters of the world, including the true treatment effect
decisions/past_decisions.csv  the simulated panel's decisions, in the documented import columns
docs/synthetic-data.md describes every column.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.contract import SEX_CODES
from synthetic.careers import DISPOSALS, Career, Reference
from synthetic.formats import AREAS, IdentityNoise, PastDecisions
from synthetic.identity import CORRUPTIONS, Copy
from synthetic.people import People
from synthetic.util import YEAR, choose, dates, digits, where_str
from synthetic.writers import CsvWriter, ParquetWriter

DECISION_COLUMNS = ["person_id", "id_type", "decision", "cohort_type", "reason", "decided_by", "meeting_date",
                    "review_date", "management_end"]
_REJECT_REASONS = ("managed under MAPPA instead", "insufficient current intelligence", "moving out of the area",
                   "already supported by another scheme")


class TruthWriters:
    def __init__(self, truth_dir: Path, decisions: bool) -> None:
        self.truth_dir = Path(truth_dir)
        root = self.truth_dir.parent
        self.people = ParquetWriter(self.truth_dir / "people.parquet", _PEOPLE_COLUMNS, text=False)
        self.by_year = ParquetWriter(self.truth_dir / "offending_by_year.parquet",
                                     ["person_id", "year", "offences", "in_area", "detected", "on_police_file"], text=False)
        self.sanctions = ParquetWriter(self.truth_dir / "sanctions.parquet",
                                       ["person_id", "offence_date", "sanction_date", "ho_offence_code", "disposal",
                                        "in_force_area"], text=False)
        self.identities = ParquetWriter(self.truth_dir / "identities.parquet",
                                        ["source", "record_id", "person_id", "corruptions"], text=False)
        self.decisions_path = (Path(root) / "decisions" / "past_decisions.csv").resolve() if decisions else None
        self.decisions = CsvWriter(self.decisions_path, columns=DECISION_COLUMNS) if decisions else None

    def close(self) -> None:
        for w in (self.people, self.by_year, self.sanctions, self.identities, self.decisions):
            if w is not None:
                w.close()


_PEOPLE_COLUMNS = [
    "person_id", "police_person_id", "pnc_id", "crn", "nomis_id", "sex", "date_of_birth", "area", "in_police_index",
    "moved_in_date", "persistent", "propensity", "offences_before_window", "sanctions_before_window",
    "offences_in_window", "offences_in_window_in_area", "offences_recorded_locally", "offences_last_12_months",
    "sanctions_in_window", "managed_days", "offences_while_managed",
]


def person_ids(index: np.ndarray) -> pl.Series:
    return pl.select(pl.concat_str([pl.lit("T"), digits(index + 1, 8)])).to_series()


def write_truth(w: TruthWriters, p: People, ids, c: Career, ref: Reference, on_file: np.ndarray, has_crn: np.ndarray,
                has_nomis: np.ndarray, probation: Copy, prison: Copy, ext: int, pnc_true: pl.Series) -> None:
    n = p.n
    tid = person_ids(p.index)
    count = lambda mask: np.bincount(c.person[mask], minlength=n)  # noqa: E731
    every = np.ones(c.person.size, dtype=bool)
    sanctioned = (c.sanction_day >= 0) & (c.sanction_day <= ext)
    w.people.write(pl.DataFrame({
        "person_id": tid,
        "police_person_id": where_str(p.in_index, ids.police_id),
        "pnc_id": where_str(ids.has_pnc, pnc_true),
        "crn": where_str(has_crn, ids.crn),
        "nomis_id": where_str(has_nomis, ids.nomis),
        "sex": choose(SEX_CODES, p.sex, "sex").cast(pl.String),
        "date_of_birth": dates("date_of_birth", p.dob),
        "area": choose(AREAS, p.area, "area").cast(pl.String),
        "in_police_index": p.in_index,
        "moved_in_date": dates("moved_in_date", p.moved_in, p.moved_in > p.dob),
        "persistent": p.persistent,
        "propensity": np.round(p.theta, 4),
        "offences_before_window": c.pre_offences.astype(np.int64),
        "sanctions_before_window": c.pre_sanctions.astype(np.int64),
        "offences_in_window": count(every),
        "offences_in_window_in_area": count(c.local),
        "offences_recorded_locally": count(on_file),
        "offences_last_12_months": count(c.day > ext - 365),
        "sanctions_in_window": count(sanctioned),
        "managed_days": c.managed_days,
        "offences_while_managed": c.offences_managed,
    }))
    # [one row per person and year]: counted with one sort of packed keys rather than a group-by
    year = c.day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    y0 = int(year.min()) if year.size else 0
    key = c.person.astype(np.int64) * 64 + (year - y0)
    keys, inverse, offences = np.unique(key, return_inverse=True, return_counts=True)
    tally = lambda mask: np.bincount(inverse[mask], minlength=keys.size)  # noqa: E731
    w.by_year.write(pl.DataFrame({
        "person_id": tid.gather(keys // 64), "year": keys % 64 + y0, "offences": offences.astype(np.int64),
        "in_area": tally(c.local), "detected": tally(c.detected), "on_police_file": tally(on_file),
    }))
    s = np.flatnonzero(sanctioned)
    order = s[np.lexsort((c.sanction_day[s], c.person[s]))]
    w.sanctions.write(pl.DataFrame({
        "person_id": tid.gather(c.person[order]),
        "offence_date": dates("offence_date", c.day[order]),
        "sanction_date": dates("sanction_date", c.sanction_day[order]),
        "ho_offence_code": choose(ref.codes, c.code[order], "ho_offence_code").cast(pl.String),
        "disposal": choose(DISPOSALS, c.disposal[order], "disposal").cast(pl.String),
        "in_force_area": c.local[order],
    }))
    frames = [pl.DataFrame({"source": "police_nominals", "record_id": ids.police_id, "person_id": tid,
                            "corruptions": ""}).filter(pl.Series(p.in_index))]
    for source, mask, rid, copy in (("probation_cases", has_crn, ids.crn, probation),
                                    ("prison_custody", has_nomis, ids.nomis, prison)):
        flags = pl.DataFrame({k: v for k, v in copy.flags.items() if k in CORRUPTIONS and
                              (source == "probation_cases" or k != "nomis_missing")})
        text = flags.select(pl.concat_str([pl.when(pl.col(k)).then(pl.lit(k)) for k in flags.columns],
                                          separator=",", ignore_nulls=True).alias("c"))["c"]
        frames.append(pl.DataFrame({"source": source, "record_id": rid, "person_id": tid, "corruptions": text})
                      .filter(pl.Series(mask)))
    w.identities.write(pl.concat(frames))


def decision_frame(rng: np.random.Generator, p: People, ids, c: Career, ext: int,
                   skip: np.ndarray | None = None) -> pl.DataFrame:
    """The panel's decisions in the import columns, leaving out the people marked in `skip` (one
    flag a person: their police nominal was faulted and is quarantined at ingest, so a decision
    naming them would be refused). The rows kept are the same whatever `skip`."""
    who = c.dc_person
    k = who.size
    use_pnc = ids.pnc_police.is_not_null().to_numpy()[who] & (rng.random(k) < 0.3)
    person_id = pl.select(pl.when(pl.Series(use_pnc)).then(ids.pnc_police.gather(who))
                          .otherwise(ids.police_id.gather(who)).alias("person_id")).to_series()
    decision = np.array(["accept", "reject", "defer"])[c.dc_decision]
    cohort = np.where(c.dc_decision == 0, np.array(["Fixed", "Flex", "Free"])[c.dc_cohort], "")
    score = c.dc_score.astype(str)
    reason = np.where(c.dc_decision == 0, np.char.add(score, " offences recorded in the previous 12 months"),
                      np.where(c.dc_decision == 1, np.array(_REJECT_REASONS)[rng.integers(0, len(_REJECT_REASONS), k)],
                               "awaiting information from probation"))
    ended = (c.dc_end >= 0) & (c.dc_end <= ext)
    order = np.lexsort((who, c.dc_meeting))
    if skip is not None:
        order = order[~skip[who[order]]]
    return pl.DataFrame({
        "person_id": person_id,
        "id_type": np.where(use_pnc, "pnc_id", "police_person_id"),
        "decision": decision,
        "cohort_type": pl.Series(cohort, dtype=pl.String).replace("", None),
        "reason": reason,
        "decided_by": np.char.add("IOM panel, ", np.array(AREAS)[p.area[who]]),
        "meeting_date": dates("meeting_date", c.dc_meeting),
        "review_date": dates("review_date", c.dc_review),
        "management_end": dates("management_end", np.where(ended, c.dc_end, 0), ended),
    })[order]


def write_world(path: Path, *, seed: int, people: int, extract_date: date, window_start: date, block_people: int,
                decisions: PastDecisions | None, probation_noise: IdentityNoise, prison_noise: IdentityNoise,
                fault_rate: float, counts: dict) -> None:
    world = {
        "seed": seed, "people": people, "extract_date": extract_date.isoformat(),
        "window_start": window_start.isoformat(), "block_people": block_people, "fault_rate": fault_rate,
        "treatment_effect": decisions.treatment_effect if decisions else None,
        "treatment": ("offending rate multiplied by 1 - treatment_effect on every day a person is managed"
                      if decisions else "no scheme simulated"),
        "past_decisions": asdict(decisions) if decisions else None,
        "identity_noise": {"probation_cases": asdict(probation_noise), "prison_custody": asdict(prison_noise)},
        "year_length_days": YEAR,
        "counts": counts,
    }
    path.write_text(json.dumps(world, indent=2, sort_keys=True) + "\n", encoding="utf-8")
