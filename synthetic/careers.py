"""The offending process: month by month, for a block of people, over the history window.

Each person offends as a Poisson process whose rate is

    propensity x age curve(age) x state(t) x after-release(t) x (1 - treatment effect if managed)

over the days they are free (custody incapacitates). The state is a log-AR(1) process (monthly
autocorrelation 0.9, so a burst of offending fades over months: persistence with regression to
the mean). Offences are committed in the force area or elsewhere; each is attributed to the
person (detected) with a probability that depends on the offence type; a detected offence ends
in a disposal, convictions in a sentence by seriousness and record, custody in a licence.
Offending before the window (careers begin before the force's records do) is drawn in closed
form from the same age curve: it is known to the PNC, not to the local police extract.

Seriousness and violence decide sentences, never the rate: the offence type is drawn from a mix
of the person's own preferred type (specialisation) and the general mix (versatility).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.reference import load_offence_reference
from pipeline.contract import CUSTODY_TYPES, SUPERVISION_TYPES
from synthetic.formats import AREAS, PastDecisions
from synthetic.people import People, age_curve_integral, first_event_age
from synthetic.util import OPEN, YEAR

# Relative frequency of each code among offences the police record against a person.
RECORDED_MIX = {
    "001/00": 0.02, "004/01": 0.03, "005/01": 0.4, "008/01": 6.0, "008/06": 1.0,
    "105/01": 10.0, "008/55": 4.0, "019/07": 0.1, "021/01": 0.1,
    "034/01": 2.8, "034/02": 0.5, "028/01": 6.5, "028/03": 0.2, "030/01": 3.0,
    "039/00": 2.5, "045/00": 4.5, "048/00": 3.0, "037/02": 0.6, "126/00": 1.4,
    "046/00": 16.0, "049/99": 6.0, "054/01": 2.0, "053/01": 2.0,
    "056/01": 0.2, "058/01": 4.0, "058/04": 4.0,
    "092/01": 3.0, "092/02": 5.0, "092/03": 2.0, "092/04": 0.4,
    "066/01": 4.0, "010/01": 1.5, "080/01": 2.5, "803/01": 1.5,
}
# Share of offences of each group that end up attributed to their offender in police records
# (detection / charge rates are low for burglary and vehicle crime, near one for offences found
# by the police themselves: drugs, drink driving, bail).
DETECTION = {
    "homicide": 0.9, "serious_violence": 0.6, "violence_with_injury": 0.5, "violence_without_injury": 0.45,
    "sexual": 0.25, "sexual_child": 0.3, "robbery": 0.2, "domestic_burglary": 0.15, "other_burglary": 0.12,
    "theft_from_person": 0.1, "vehicle_crime": 0.12, "shoplifting": 0.5, "other_theft": 0.2, "handling": 0.7,
    "fraud": 0.2, "criminal_damage": 0.2, "drug_possession": 0.95, "drug_supply": 0.9, "public_order": 0.6,
    "weapons": 0.9, "absconding_bail": 0.95, "drink_driving": 0.9,
}
# Under-21s commit relatively more of these, adults more of the others.
YOUNG_TILT = {"criminal_damage": 1.8, "robbery": 1.8, "vehicle_crime": 1.6, "public_order": 1.3,
              "fraud": 0.4, "drink_driving": 0.3, "handling": 0.8}
DISPOSALS = ("convicted", "cautioned", "community_resolution", "nfa", "other")
DISPOSAL_P = np.array([0.15, 0.04, 0.15, 0.52, 0.14])
CONVICTED, CAUTIONED, NFA = (DISPOSALS.index(v) for v in ("convicted", "cautioned", "nfa"))
STATE_RHO = 0.75  # monthly autocorrelation of the log state
STATE_SIGMA = 0.6  # its stationary standard deviation
RELEASE_BOOST = 1.0  # extra rate just after release from a stay under a year, fading with
RELEASE_TAU = 90.0  # this time constant (days)
# positions in the contract's enumerations, the numbers the arrays hold
LICENCE, COMMUNITY, SUSPENDED, PSS = (SUPERVISION_TYPES.index(v) for v in
                                      ("licence", "community_order", "suspended_sentence", "pss"))
SENTENCED, REMAND, RECALL = (CUSTODY_TYPES.index(v) for v in ("sentenced", "remand", "recall"))


@dataclass
class Reference:
    codes: list[str]
    descriptions: list[str]
    group: list[str]
    ogrs3_group: list[str]
    gravity: np.ndarray
    violent: np.ndarray
    neighbourhood: np.ndarray
    detect: np.ndarray
    cdf_young: np.ndarray  # committed-offence mix, cumulative
    cdf_adult: np.ndarray


def load_reference() -> Reference:
    ref = load_offence_reference()
    codes = ref["ho_offence_code"].to_list()
    groups = ref["offence_group"].to_list()
    detect = np.array([DETECTION.get(g, 0.3) for g in groups])
    recorded = np.array([RECORDED_MIX.get(c, 0.3) for c in codes])
    committed = recorded / detect  # so that what is detected follows the recorded mix
    tilt = np.array([YOUNG_TILT.get(g, 1.0) for g in groups])
    cdf = lambda w: np.cumsum(w / w.sum())  # noqa: E731
    return Reference(
        codes, ref["description"].to_list(), groups, ref["ogrs3_group"].to_list(),
        ref["gravity"].to_numpy().astype(np.int8), ref["violence"].to_numpy(), ref["neighbourhood_crime"].to_numpy(),
        detect, cdf(committed * tilt), cdf(committed),
    )


@dataclass
class Career:
    # offences committed in the window (all areas, recorded or not)
    person: np.ndarray
    day: np.ndarray
    code: np.ndarray
    local: np.ndarray
    detected: np.ndarray
    disposal: np.ndarray
    sanction_day: np.ndarray  # day of conviction or caution (-1 if none)
    # custody spells
    sp_person: np.ndarray
    sp_reception: np.ndarray
    sp_release: np.ndarray  # OPEN while in custody at the extract date
    sp_expected: np.ndarray
    sp_sentence: np.ndarray  # -1 for remand
    sp_type: np.ndarray
    sp_code: np.ndarray  # offence behind the spell
    sp_conviction: np.ndarray
    # community sentences (licences follow from the spells)
    co_person: np.ndarray
    co_type: np.ndarray
    co_start: np.ndarray
    co_end: np.ndarray
    co_code: np.ndarray
    # recalls (probation events)
    rc_person: np.ndarray
    rc_day: np.ndarray
    # before the window: sanctions known to the PNC, their first day, offences committed
    pre_sanctions: np.ndarray
    pre_first: np.ndarray  # -1 when none
    pre_offences: np.ndarray
    # past panel decisions
    dc_person: np.ndarray
    dc_decision: np.ndarray  # 0 accept, 1 reject, 2 defer
    dc_cohort: np.ndarray  # 0 Fixed, 1 Flex, 2 Free
    dc_meeting: np.ndarray
    dc_review: np.ndarray
    dc_end: np.ndarray  # management end (may be after the extract date)
    dc_score: np.ndarray
    managed_days: np.ndarray  # per person, days managed in the window
    offences_managed: np.ndarray  # per person, offences committed while managed


class _Spells:
    """Custody spells as they are made, month by month, with later extensions applied at the end."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.count = 0
        self.extend: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, *cols: np.ndarray) -> np.ndarray:
        idx = np.arange(self.count, self.count + cols[0].size)
        self.parts.append(cols)
        self.count += cols[0].size
        return idx

    def finish(self) -> list[np.ndarray]:
        if not self.parts:
            return [np.zeros(0, dtype=np.int64)] * 8
        cols = [np.concatenate([p[i] for p in self.parts]).astype(np.int64) for i in range(8)]
        for idx, release in self.extend:
            np.maximum.at(cols[2], idx, release)
        return cols


def _draw_codes(rng: np.random.Generator, ref: Reference, young: np.ndarray, pref: np.ndarray,
                spec: np.ndarray) -> np.ndarray:
    u = rng.random(young.size)
    general = np.where(young, np.searchsorted(ref.cdf_young, u, side="right"),
                       np.searchsorted(ref.cdf_adult, u, side="right"))
    general = np.minimum(general, len(ref.codes) - 1)
    return np.where(rng.random(young.size) < spec, pref, general).astype(np.int16)


def simulate(rng: np.random.Generator, p: People, ref: Reference, ext: int, window_start: int,
             decisions: PastDecisions | None, panel_rng: np.random.Generator | None = None) -> Career:
    """The block's careers. The panel draws from `panel_rng`, and the treatment's draws are made
    whatever the effect, so that a world with a scheme of no effect offends exactly as one with
    no scheme, and one with an effect differs only through the managed people."""
    panel_rng = panel_rng if panel_rng is not None else np.random.default_rng(0)
    n = p.n
    months = int(np.ceil((ext + 1 - window_start) / (YEAR / 12)))
    starts = window_start + np.round(np.arange(months + 1) * YEAR / 12).astype(np.int64)
    starts[-1] = ext + 1
    alive_to = np.where(p.dead, p.deceased + 1, ext + 1)

    # before the window: the same process in closed form (no custody, the state at its mean)
    age_ws = (window_start - p.dob) / YEAR
    span = age_curve_integral(p, np.full(n, 10.0), np.maximum(age_ws, 10.0))
    pre_mean = p.theta * span
    adult_mix = np.diff(np.concatenate([[0.0], ref.cdf_adult]))
    p_sanction = float((adult_mix * ref.detect).sum() * DISPOSAL_P[:2].sum())
    pre_offences = rng.poisson(pre_mean)
    pre_sanctions = rng.binomial(pre_offences, p_sanction)
    first_age = first_event_age(rng, p, np.full(n, 10.0), np.maximum(age_ws, 10.0), pre_sanctions)
    pre_first = np.where(pre_sanctions > 0,
                         np.minimum(p.dob + (first_age * YEAR).astype(np.int64) + 60, window_start - 1), -1)

    # the person's own offence type and how strongly they keep to it (specialisation grows with age)
    pref = _draw_codes(rng, ref, np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int16), np.zeros(n))
    spec_base = rng.beta(2.0, 4.0, n)

    # the base rate month by month, all months at once (months x people, so that a month is one
    # contiguous row): propensity x age curve x state, in float32 and with one exponential for the
    # curve and the state together; this is the bulk of the arithmetic
    f32 = np.float32
    alive_days = np.repeat(np.diff(starts).astype(f32)[:, None], n, axis=1)
    died = np.flatnonzero(p.dead)
    alive_days[:, died] = np.clip(np.minimum(starts[1:][:, None], alive_to[died][None, :]) - starts[:-1][:, None],
                                  0, None)
    mid = ((starts[:-1] + starts[1:]) / 2 - ext).astype(f32)
    ages = (mid[:, None] + (ext - p.dob).astype(f32)[None, :]) / f32(YEAR)
    z = (np.log(np.maximum(ages, f32(1.0))) - np.log(p.peak).astype(f32)[None, :]) / p.spread.astype(f32)[None, :]
    innovation = f32(STATE_SIGMA * np.sqrt(1 - STATE_RHO**2))
    state = rng.standard_normal((months, n), dtype=f32) * innovation
    state[0] = rng.normal(0.0, STATE_SIGMA, n)
    for m in range(1, months):
        state[m] += f32(STATE_RHO) * state[m - 1]
    rate = np.exp(state - f32(0.5) * z * z - f32(STATE_SIGMA**2 / 2))
    rate *= (ages >= p.onset.astype(f32)[None, :]) * p.theta.astype(f32)[None, :]
    del z, ages, state
    counts = rng.poisson(rate * alive_days / f32(YEAR)).astype(np.int16)
    month_of, person_of = np.nonzero(counts)  # by month, then person
    reps = counts[month_of, person_of]
    off_person = np.repeat(person_of, reps)
    bounds = np.searchsorted(np.repeat(month_of, reps), np.arange(months + 1))
    del counts, month_of, person_of, reps
    sanctions = pre_sanctions.astype(np.int64)
    cust_from = np.full(n, OPEN, dtype=np.int64)
    cust_to = np.full(n, OPEN, dtype=np.int64)
    cur_spell = np.full(n, -1, dtype=np.int64)
    short_release = np.full(n, -(10**9), dtype=np.int64)
    lic_from = np.full(n, OPEN, dtype=np.int64)
    lic_to = np.full(n, OPEN, dtype=np.int64)
    spells = _Spells()
    out: dict[str, list[np.ndarray]] = {k: [] for k in (
        "person", "day", "code", "local", "detected", "disposal", "sanction_day",
        "co_person", "co_type", "co_start", "co_end", "co_code", "rc_person", "rc_day")}

    # the simulated IOM scheme
    meet_from = months - 12 * decisions.years if decisions else months + 1
    ring = np.zeros((12, n), dtype=np.int16)  # local recorded offences by month, last 12 months
    ring_nh = np.zeros((12, n), dtype=np.int16)  # of which neighbourhood crime
    managed_to = np.zeros(n, dtype=np.int64)
    managed_from = np.zeros(n, dtype=np.int64)
    managed_days = np.zeros(n, dtype=np.int64)
    offences_managed = np.zeros(n, dtype=np.int64)
    review_after = np.zeros(n, dtype=np.int64)
    dec: dict[str, list[np.ndarray]] = {k: [] for k in (
        "person", "decision", "cohort", "meeting", "review", "end", "score")}
    effect = decisions.treatment_effect if decisions else 0.0
    if decisions:
        area_people = np.bincount(p.area[p.in_index], minlength=len(AREAS))
        capacity = np.round(decisions.capacity_per_1000 * area_people / 1000.0).astype(np.int64)

    for m in range(months):
        ms, me = int(starts[m]), int(starts[m + 1])
        if me <= ms:
            continue
        if m >= meet_from and decisions:
            _meeting(panel_rng, p, ms, ext, ring, ring_nh, cust_from, cust_to, managed_from, managed_to, review_after,
                     capacity, decisions, dec)
        slot = m % 12
        ring[slot] = 0
        ring_nh[slot] = 0
        who = off_person[bounds[m]:bounds[m + 1]]
        # the months after release from a short stay: extra offending, fading
        recent = np.flatnonzero((short_release <= ms) & (ms - short_release < 365))
        if recent.size:
            extra = rng.poisson(rate[m, recent] * RELEASE_BOOST * np.exp(-(ms - short_release[recent]) / RELEASE_TAU)
                                * alive_days[m, recent] / YEAR)
            who = np.concatenate([who, np.repeat(recent, extra)])
        d = ms + (rng.random(who.size) * (np.minimum(me, alive_to[who]) - ms)).astype(np.int64)
        # custody incapacitates and management (with the effect's probability) prevents: the
        # offences that would fall there are not committed
        keep = ~((d >= cust_from[who]) & (d < cust_to[who]))
        while_managed = (d >= managed_from[who]) & (d < managed_to[who])
        keep &= ~(while_managed & (rng.random(who.size) < effect))
        np.add.at(offences_managed, who[keep & while_managed], 1)
        who, d = who[keep], d[keep]
        k = who.size
        if k == 0:
            continue
        local = p.in_index[who] & (d >= p.moved_in[who]) & (rng.random(k) >= p.away_share[who])
        age_at = (d - p.dob[who]) / YEAR
        young = age_at < 21
        spec = np.minimum(spec_base[who] * (0.6 + 0.02 * np.clip(age_at - 15, 0, 30)), 0.9)
        code = _draw_codes(rng, ref, young, pref[who], spec)
        detected = rng.random(k) < ref.detect[code]
        disposal = np.where(detected, np.searchsorted(np.cumsum(DISPOSAL_P), rng.random(k), side="right"), NFA)
        disposal = np.minimum(disposal, len(DISPOSALS) - 1).astype(np.int8)
        convicted = detected & (disposal == CONVICTED)
        cautioned = detected & (disposal == CAUTIONED)
        lag = np.where(convicted, rng.lognormal(np.log(75.0), 0.7, k), rng.lognormal(np.log(20.0), 0.6, k))
        s_day = np.where(convicted | cautioned, d + np.maximum(lag, 1).astype(np.int64), -1)
        for key, v in (("person", who), ("day", d), ("code", code), ("local", local), ("detected", detected),
                       ("disposal", disposal), ("sanction_day", s_day)):
            out[key].append(v)
        rec = detected & local
        ring[slot] += np.bincount(who[rec], minlength=n).astype(np.int16)
        ring_nh[slot] += np.bincount(who[rec & ref.neighbourhood[code]], minlength=n).astype(np.int16)

        # sentencing: custody by seriousness and record; remand for some before a serious case
        priors = sanctions[who]
        grav = ref.gravity[code].astype(np.float64)
        p_custody = 1 / (1 + np.exp(-(-3.2 + 0.9 * (grav - 1) + 0.4 * np.log1p(priors))))
        custody = convicted & (rng.random(k) < p_custody)
        median = np.array([0, 45, 110, 300, 1000])[ref.gravity[code]]
        sentence = np.clip(np.round(median * np.exp(0.6 * rng.standard_normal(k)) * (1 + 0.01 * np.minimum(priors, 20))),
                           7, 7300).astype(np.int64)
        remand = convicted & (rng.random(k) < np.where(grav >= 3, 0.3, 0.05))
        arrest = d + rng.integers(0, 3, k)
        remand_days = np.maximum(s_day - arrest, 1)
        served = np.maximum((sentence + 1) // 2 - np.where(remand, remand_days, 0), 1)
        hdc = (sentence < 1460) & (rng.random(k) < 0.3)
        served = np.maximum(served - np.where(hdc, np.minimum(served // 3, 135), 0), 1)
        community = convicted & ~custody
        u_co = rng.random(k)
        co = community & (u_co < 0.30)
        sso = community & (u_co >= 0.30) & (u_co < 0.42)
        if co.any() or sso.any():
            sel = co | sso
            length = np.where(co, rng.integers(365, 731, k), rng.integers(365, 731, k))[sel]
            out["co_person"].append(who[sel])
            out["co_type"].append(np.where(co[sel], COMMUNITY, SUSPENDED))
            out["co_start"].append(s_day[sel])
            out["co_end"].append(s_day[sel] + length)
            out["co_code"].append(code[sel])
        # recall: a detected offence on licence, while free
        on_licence = detected & (d >= lic_from[who]) & (d < lic_to[who]) & ~((d >= cust_from[who]) & (d < cust_to[who]))
        recall = on_licence & (rng.random(k) < 0.25)
        fixed = rng.random(k) < 0.55
        recall_to = np.where(fixed, arrest + 28,
                             np.minimum(lic_to[who], arrest + rng.lognormal(np.log(120.0), 0.6, k).astype(np.int64)))
        recall_to = np.maximum(recall_to, arrest + 14)
        if recall.any():
            out["rc_person"].append(who[recall])
            out["rc_day"].append(arrest[recall])
        sanctions += np.bincount(who[convicted | cautioned], minlength=n)

        cand = [
            (remand, arrest, np.maximum(s_day, arrest + 1), np.full(k, -1), REMAND),
            (custody, s_day, s_day + served, sentence, SENTENCED),
            (recall, arrest, recall_to, np.full(k, -1), RECALL),
        ]
        c_person = np.concatenate([who[c[0]] for c in cand])
        if c_person.size == 0:
            continue
        c_from = np.concatenate([c[1][c[0]] for c in cand])
        c_to = np.concatenate([c[2][c[0]] for c in cand])
        c_sentence = np.concatenate([c[3][c[0]] for c in cand])
        c_type = np.concatenate([np.full(int(c[0].sum()), c[4]) for c in cand])
        c_code = np.concatenate([code[c[0]] for c in cand])
        c_conv = np.concatenate([s_day[c[0]] for c in cand])
        order = np.lexsort((c_from, c_person))
        c_person, c_from, c_to, c_sentence, c_type, c_code, c_conv = (
            a[order] for a in (c_person, c_from, c_to, c_sentence, c_type, c_code, c_conv))
        left = np.ones(c_person.size, dtype=bool)
        while left.any():
            idx = np.flatnonzero(left)
            _, first = np.unique(c_person[idx], return_index=True)
            take = idx[first]
            left[take] = False
            who_c = c_person[take]
            merge = (c_from[take] < cust_to[who_c]) & (cur_spell[who_c] >= 0)
            # overlapping an open or planned spell: it runs on (concurrent); otherwise a new spell
            mg = take[merge]
            if mg.size:
                pw = c_person[mg]
                spells.extend.append((cur_spell[pw], c_to[mg]))
                cust_to[pw] = np.maximum(cust_to[pw], c_to[mg])
            nw = take[~merge]
            if nw.size:
                pw = c_person[nw]
                idx_new = spells.add(pw, c_from[nw], c_to[nw], c_to[nw], c_sentence[nw], c_type[nw], c_code[nw],
                                     c_conv[nw])
                cust_from[pw], cust_to[pw], cur_spell[pw] = c_from[nw], c_to[nw], idx_new
                sent = c_type[nw] == SENTENCED
                ps = pw[sent]
                lic_from[ps] = c_to[nw][sent]
                lic_to[ps] = np.maximum(c_from[nw][sent] + c_sentence[nw][sent], c_to[nw][sent] + 14)
            pw = c_person[take]
            short = (cust_to[pw] - cust_from[pw]) < 365
            short_release[pw] = np.where(short, cust_to[pw], short_release[pw])

    cat = lambda key, dtype=np.int64: (np.concatenate(out[key]).astype(dtype) if out[key]  # noqa: E731
                                        else np.zeros(0, dtype=dtype))
    sp = spells.finish()
    accepted = [(pp[dd == 0], mm[dd == 0], ee[dd == 0]) for pp, dd, mm, ee in
                zip(dec["person"], dec["decision"], dec["meeting"], dec["end"], strict=True)]
    for pp, mm, ee in accepted:
        np.add.at(managed_days, pp, np.minimum(ee, ext + 1) - mm)
    dc = {key: (np.concatenate(v).astype(np.int64) if v else np.zeros(0, dtype=np.int64)) for key, v in dec.items()}
    return Career(
        person=cat("person"), day=cat("day"), code=cat("code", np.int16), local=cat("local", bool),
        detected=cat("detected", bool), disposal=cat("disposal", np.int8), sanction_day=cat("sanction_day"),
        sp_person=sp[0], sp_reception=sp[1], sp_release=sp[2], sp_expected=sp[3].copy(), sp_sentence=sp[4],
        sp_type=sp[5], sp_code=sp[6], sp_conviction=sp[7],
        co_person=cat("co_person"), co_type=cat("co_type"), co_start=cat("co_start"), co_end=cat("co_end"),
        co_code=cat("co_code"), rc_person=cat("rc_person"), rc_day=cat("rc_day"),
        pre_sanctions=pre_sanctions, pre_first=pre_first, pre_offences=pre_offences,
        dc_person=dc["person"], dc_decision=dc["decision"], dc_cohort=dc["cohort"], dc_meeting=dc["meeting"],
        dc_review=dc["review"], dc_end=dc["end"], dc_score=dc["score"], managed_days=managed_days,
        offences_managed=offences_managed,
    )


def _meeting(rng, p: People, day: int, ext: int, ring, ring_nh, cust_from, cust_to, managed_from, managed_to,
             review_after, capacity, rule: PastDecisions, dec) -> None:
    """One monthly panel: per area, the most recently active free people not already managed."""
    score = ring.sum(axis=0, dtype=np.int64)
    alive = ~p.dead | (p.deceased > day)
    adult = (day - p.dob) >= 18 * YEAR
    in_custody = (cust_from <= day) & (day < cust_to)
    managed = managed_to > day
    eligible = p.in_index & alive & adult & ~in_custody & ~managed & (review_after <= day) & (score >= rule.min_offences)
    cand = np.flatnonzero(eligible)
    if cand.size == 0:
        return
    in_area = np.bincount(p.area[managed], minlength=len(AREAS))
    free = np.maximum(capacity - in_area, 0)
    tie = rng.random(cand.size)
    order = np.lexsort((tie, -score[cand], p.area[cand]))
    cand = cand[order]
    area = p.area[cand]
    group_start = np.searchsorted(area, area, side="left")
    rank = np.arange(cand.size) - group_start
    reviewed = rank < np.ceil(free[area] * 1.4)
    cand, area = cand[reviewed], area[reviewed]
    if cand.size == 0:
        return
    draw = np.searchsorted([0.75, 0.90], rng.random(cand.size), side="right")  # accept, reject, defer
    is_accept = draw == 0
    group_start = np.searchsorted(area, area, side="left")
    accepted_before = np.cumsum(is_accept) - is_accept
    accepted_before -= accepted_before[group_start]
    accept = is_accept & (accepted_before < free[area])
    keep = accept | (draw > 0)
    cand, draw, accept = cand[keep], draw[keep], accept[keep]
    length = np.clip(rng.lognormal(np.log(270.0), 0.5, cand.size), 90, 730).astype(np.int64)
    acc = cand[accept]
    managed_from[acc] = day
    managed_to[acc] = day + length[accept]
    review = np.where(draw == 2, day + 28, day + 91)
    review_after[cand] = np.where(accept, managed_to[cand], review)
    nh = ring_nh[:, cand].sum(axis=0)
    cohort = np.where(nh * 2 >= score[cand], 0, np.where(rng.random(cand.size) < 0.7, 1, 2))
    dec["person"].append(cand)
    dec["decision"].append(draw)
    dec["cohort"].append(cohort)
    dec["meeting"].append(np.full(cand.size, day))
    dec["review"].append(np.where(draw == 0, day + 91, review))
    dec["end"].append(np.where(accept, day + length, -1))
    dec["score"].append(score[cand])

