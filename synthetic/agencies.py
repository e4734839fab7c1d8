"""Each agency's records of a block of people, consistent with their careers.

- police: the nominal index (the reference copy of each identity) and the offences committed in
  the force area and attributed to the person, with the outcome as the force's system shows it
  (court results are not always fed back: some convictions still show as charged);
- probation: a case per supervision period (licence and post-sentence supervision after custody,
  community and suspended orders after a conviction), with previous sanctions, first sanction
  date and OGRS3 as the PNC knows them at the assessment (all areas, the whole career), and
  enforcement events;
- prison: custody spells (remand, sentenced, recall) from the sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.ogrs3 import ogrs3_percent_expr
from pipeline.contract import (
    CUSTODY_TYPES,
    OUTCOMES,
    PROBATION_EVENT_TYPES,
    ROSH_LEVELS,
    SEX_CODES,
    SUPERVISION_TYPES,
)
from synthetic.careers import (
    CAUTIONED,
    CONVICTED,
    LICENCE,
    PSS,
    SENTENCED,
    Career,
    Reference,
)
from synthetic.formats import AREAS
from synthetic.identity import Copy
from synthetic.people import AREA_P, ETHNICITY, People
from synthetic.util import OPEN, YEAR, choose, dates, digits, ints, where_str

_OUT = {name: OUTCOMES.index(name) for name in OUTCOMES}
_DISPOSAL_TO_OUTCOME = np.array([_OUT["convicted"], _OUT["cautioned"], _OUT["community_resolution"], _OUT["nfa"],
                                 _OUT["other"]])
_EVENT = {name: PROBATION_EVENT_TYPES.index(name) for name in PROBATION_EVENT_TYPES}


@dataclass
class Ids:
    police_id: pl.Series
    has_pnc: np.ndarray
    pnc_year: np.ndarray
    pnc_serial: np.ndarray
    pnc_police: pl.Series  # as the police hold it (null where the nominal has none)
    cro: pl.Series
    crn: pl.Series
    nomis: pl.Series


def police_frames(rng: np.random.Generator, p: People, names, ids: Ids, c: Career, ref: Reference, ext: int,
                  offence_base: int) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    keep = p.in_index
    nominals = pl.DataFrame({
        "police_person_id": ids.police_id,
        "pnc_id": ids.pnc_police,
        "cro_number": ids.cro,
        "surname": names.surname,
        "forenames": names.forenames,
        "date_of_birth": dates("date_of_birth", p.dob),
        "sex": choose(SEX_CODES, p.sex, "sex"),
        "ethnicity": choose(list(ETHNICITY), p.ethnicity, "ethnicity"),
        "area": choose(AREAS, p.area, "area"),
        "deceased_date": dates("deceased_date", p.deceased, p.dead),
    }).filter(pl.Series(keep))

    k = c.person.size
    delay = np.where(rng.random(k) < 0.85, rng.geometric(0.55, k) - 1, rng.integers(0, 31, k))
    recorded = c.day + np.minimum(delay, 30)
    on_file = c.detected & c.local & (recorded <= ext)
    idx = np.flatnonzero(on_file)
    person, day, rec, code = c.person[idx], c.day[idx], recorded[idx], c.code[idx]
    m = idx.size
    outcome = _DISPOSAL_TO_OUTCOME[c.disposal[idx]]
    convicted = c.disposal[idx] == CONVICTED
    stale = convicted & (rng.random(m) < 0.2)  # court result not fed back to the force's system
    outcome = np.where(stale, np.where(rng.random(m) < 0.7, _OUT["charged"], _OUT["summonsed"]), outcome)
    sanctioned = convicted | (c.disposal[idx] == CAUTIONED)
    quick = rec + np.minimum(np.round(rng.lognormal(np.log(35.0), 1.1, m)), 1500).astype(np.int64)
    outcome_day = np.where(sanctioned, np.maximum(c.sanction_day[idx], rec), quick)
    pending = (outcome_day > ext) | (rng.random(m) < 0.015)
    outcome = np.where(pending, _OUT["pending"], outcome)
    area = np.where(rng.random(m) < 0.85, p.area[person], rng.choice(len(AREAS), size=m, p=AREA_P))
    order = np.lexsort((person, rec))
    person, day, rec, code, outcome, outcome_day, pending, area = (
        a[order] for a in (person, day, rec, code, outcome, outcome_day, pending, area))
    offences = pl.DataFrame({
        "offence_id": pl.select(pl.concat_str([pl.lit("CR"), digits(np.arange(offence_base + 1, offence_base + m + 1), 10)])).to_series(),
        "police_person_id": ids.police_id.gather(person),
        "offence_date": dates("offence_date", day),
        "recorded_date": dates("recorded_date", rec),
        "ho_offence_code": choose(ref.codes, code, "ho_offence_code"),
        "offence_description": choose(ref.descriptions, code, "offence_description"),
        "outcome": choose(OUTCOMES, outcome, "outcome"),
        "outcome_date": dates("outcome_date", np.where(pending, 0, outcome_day), ~pending),
        "area": choose(AREAS, area, "area"),
    })
    return nominals, offences, on_file


@dataclass
class Periods:
    person: np.ndarray
    stype: np.ndarray
    start: np.ndarray
    end: np.ndarray
    code: np.ndarray
    conviction: np.ndarray
    follow_start: np.ndarray  # start of follow-up: release for licences, the sentence for orders


def supervision_periods(p: People, c: Career, spells: dict[str, np.ndarray], ext: int) -> Periods:
    sent = np.flatnonzero((spells["type"] == SENTENCED) & (spells["release"] != OPEN))
    rel = spells["release"][sent]
    sentence_end = spells["reception"][sent] + spells["sentence"][sent]
    lic_end = np.maximum(sentence_end, rel + 14)
    pss = (spells["sentence"][sent] < 730) & (rel + 365 > lic_end)
    parts = [
        (spells["person"][sent], np.full(sent.size, LICENCE), rel, lic_end, spells["code"][sent],
         spells["conviction"][sent], rel),
        (spells["person"][sent][pss], np.full(int(pss.sum()), PSS), lic_end[pss], (rel + 365)[pss],
         spells["code"][sent][pss], spells["conviction"][sent][pss], lic_end[pss]),
        (c.co_person, c.co_type, c.co_start, c.co_end, c.co_code, c.co_start, c.co_start),
    ]
    cols = [np.concatenate([part[i] for part in parts]).astype(np.int64) for i in range(7)]
    per = Periods(*cols)
    limit = np.where(p.dead[per.person], p.deceased[per.person], ext)
    keep = per.start <= limit
    per = Periods(*(a[keep] for a in per.__dict__.values()))
    per.end = np.where(p.dead[per.person], np.minimum(per.end, p.deceased[per.person]), per.end)
    key = per.person * (1 << 20) + (per.start - per.start.min() if per.start.size else per.start)
    order = np.argsort(key, kind="stable")
    per = Periods(*(a[order] for a in per.__dict__.values()))
    key = key[order]
    first = np.concatenate([[True], key[1:] != key[:-1]]) if key.size else np.zeros(0, dtype=bool)
    return Periods(*(a[first] for a in per.__dict__.values()))


def pnc_history(p: People, c: Career, who: np.ndarray, before: np.ndarray, ext: int) -> tuple[np.ndarray, np.ndarray]:
    """Sanctions the PNC holds for each (person, day): the count before the day and the first one's day.

    All areas and the whole career: the sanctions before the window and those in it with a
    sanction date on or before the extract date."""
    s = (c.sanction_day >= 0) & (c.sanction_day <= ext)
    key = np.sort(c.person[s].astype(np.int64) * (1 << 32) + c.sanction_day[s])
    q_lo = who.astype(np.int64) * (1 << 32)
    lower = np.searchsorted(key, q_lo, side="left")
    upper = np.searchsorted(key, q_lo + before, side="left")
    in_window = upper - lower
    earliest_in = key[np.minimum(lower, key.size - 1)] % (1 << 32) if key.size else np.zeros(who.size, dtype=np.int64)
    previous = c.pre_sanctions[who] + in_window
    # with no earlier sanction the first is the current one, on `before`
    first = np.where(c.pre_sanctions[who] > 0, c.pre_first[who], np.where(upper > lower, earliest_in, before))
    return previous, first


def probation_frames(rng: np.random.Generator, p: People, ids: Ids, copy: Copy, c: Career, per: Periods,
                     ref: Reference, ext: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    who = per.person
    m = who.size
    assess = np.where(per.stype == LICENCE, per.start - rng.integers(0, 29, m), per.start + rng.integers(0, 29, m))
    assess = np.clip(assess, per.conviction, ext)
    previous, first = pnc_history(p, c, who, per.conviction, ext)
    ogrs_group = pl.Series(ref.ogrs3_group).gather(per.code)
    whole = lambda days: pl.Series(np.floor((days - p.dob[who]) / YEAR).astype(np.int64))  # noqa: E731
    ogrs = pl.DataFrame({
        "age": whole(assess), "sex": choose(SEX_CODES, p.sex[who], "sex").cast(pl.String),
        "total": previous + 1, "at_current": whole(per.conviction), "at_first": whole(np.minimum(first, per.conviction)),
        "group": ogrs_group,
    }).select(ogrs3_percent_expr(pl.col("age"), pl.col("sex"), pl.col("total"), pl.col("at_current"),
                                 pl.col("at_first"), pl.col("group")).round(1).alias("ogrs"))["ogrs"]
    known = (rng.random(m) >= 0.15) & ogrs.is_not_null().to_numpy()
    violent = ref.violent[per.code]
    u = rng.random(m)
    rosh = np.where(violent, np.searchsorted([0.30, 0.75, 0.95], u, side="right"),
                    np.searchsorted([0.55, 0.92, 0.99], u, side="right"))
    mappa_cut = np.array([[0.955, 0.99, 0.998], [0.93, 0.98, 0.995], [0.80, 0.94, 0.99], [0.60, 0.85, 0.95]])
    mappa = (rng.random(m)[:, None] >= mappa_cut[rosh]).sum(axis=1)
    area = np.where(rng.random(p.n) < 0.92, p.area, rng.choice(len(AREAS), size=p.n, p=AREA_P))
    cases = pl.DataFrame({
        "crn": ids.crn.gather(who),
        "pnc_id": copy.pnc.gather(who),
        "nomis_id": where_str(copy.nomis_held, ids.nomis).gather(who),
        "surname": copy.surname.gather(who),
        "forenames": copy.forenames.gather(who),
        "date_of_birth": dates("date_of_birth", copy.dob[who], copy.dob_known[who]),
        "sex": choose(SEX_CODES, p.sex[who], "sex"),
        "supervision_type": choose(SUPERVISION_TYPES, per.stype, "supervision_type"),
        "supervision_start": dates("supervision_start", per.start),
        "supervision_end": dates("supervision_end", per.end),
        "assessment_date": dates("assessment_date", assess),
        "ogrs3_2yr": where_str(known, ogrs.cast(pl.String)),
        "rosh": choose(ROSH_LEVELS, rosh, "rosh"),
        "mappa_level": ints("mappa_level", mappa),
        "previous_sanctions": ints("previous_sanctions", previous),
        "first_sanction_date": dates("first_sanction_date", first),
        "area": choose(AREAS, area[who], "area"),
    })

    # enforcement and compliance events during supervision, more for the more active
    end = np.minimum(np.minimum(per.end, ext), np.where(p.dead[who], p.deceased[who], ext))
    active = np.maximum(end - per.start, 0)
    intensity = np.clip(0.9 * np.sqrt(p.theta[who] / 3.0), 0.1, 6.0)
    count = np.minimum(rng.poisson(intensity * active / YEAR), 60)
    idx = np.repeat(np.arange(m), count)
    e = idx.size
    ev_day = per.start[idx] + (rng.random(e) * active[idx]).astype(np.int64)
    licence = per.stype[idx] == LICENCE
    u = rng.random(e)
    kinds = np.array([_EVENT["breach"], _EVENT["missed_appointment"], _EVENT["positive_drug_test"], _EVENT["other"]])
    cut = np.where(licence[:, None], np.array([0.16, 0.66, 0.88]), np.array([0.20, 0.70, 0.90]))
    etype = kinds[(u[:, None] >= cut).sum(axis=1)]
    has_crn = np.zeros(p.n, dtype=bool)
    has_crn[who] = True
    rc = has_crn[c.rc_person] & (c.rc_day <= ext)
    ev_person = np.concatenate([who[idx], c.rc_person[rc]])
    ev_day = np.concatenate([ev_day, c.rc_day[rc]])
    etype = np.concatenate([etype, np.full(int(rc.sum()), _EVENT["recall"])])
    order = np.lexsort((ev_person, ev_day))
    events = pl.DataFrame({
        "crn": ids.crn.gather(ev_person[order]),
        "event_date": dates("event_date", ev_day[order]),
        "event_type": choose(PROBATION_EVENT_TYPES, etype[order], "event_type"),
    })
    return cases, events


def custody_spells(p: People, c: Career, ext: int) -> dict[str, np.ndarray]:
    """The spells as the prison system holds them at the extract date."""
    limit = np.where(p.dead[c.sp_person], p.deceased[c.sp_person], ext)
    keep = c.sp_reception <= limit
    s = {"person": c.sp_person[keep], "reception": c.sp_reception[keep], "release": c.sp_release[keep],
         "expected": c.sp_release[keep].copy(), "sentence": c.sp_sentence[keep], "type": c.sp_type[keep],
         "code": c.sp_code[keep], "conviction": c.sp_conviction[keep]}
    dead = p.dead[s["person"]]
    s["release"] = np.where(dead, np.minimum(s["release"], p.deceased[s["person"]]), s["release"])
    s["release"] = np.where(s["release"] > ext, OPEN, s["release"])
    return s


def prison_frame(rng: np.random.Generator, p: People, ids: Ids, copy: Copy, s: dict[str, np.ndarray],
                 spell_base: int) -> pl.DataFrame:
    order = np.lexsort((s["person"], s["reception"]))
    who = s["person"][order]
    release, expected = s["release"][order], s["expected"][order]
    sentence, ctype = s["sentence"][order], s["type"][order]
    open_spell = release == OPEN
    release_area = np.where(rng.random(p.n) < 0.9, p.area, rng.choice(len(AREAS), size=p.n, p=AREA_P))
    return pl.DataFrame({
        "spell_id": pl.select(pl.concat_str([pl.lit("S"), digits(np.arange(spell_base + 1, spell_base + who.size + 1), 8)])).to_series(),
        "nomis_id": ids.nomis.gather(who),
        "pnc_id": copy.pnc.gather(who),
        "surname": copy.surname.gather(who),
        "forenames": copy.forenames.gather(who),
        "date_of_birth": dates("date_of_birth", copy.dob[who], copy.dob_known[who]),
        "sex": choose(SEX_CODES, p.sex[who], "sex"),
        "reception_date": dates("reception_date", s["reception"][order]),
        "release_date": dates("release_date", np.where(open_spell, 0, release), ~open_spell),
        "expected_release_date": dates("expected_release_date", expected),
        "sentence_days": ints("sentence_days", sentence, sentence >= 0),
        "custody_type": choose(CUSTODY_TYPES, ctype, "custody_type"),
        "release_area": choose(AREAS, release_area[who], "release_area"),
    })

