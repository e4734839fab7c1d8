"""Point-in-time features on tiny warehouses: hand-worked values, windows, the property that later
rows never change features at D, unknown offence codes, and the offence reference loader."""

from __future__ import annotations

import logging
import math
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from builders import (
    LATE_EXTRACT_DATE,
    build_warehouse,
    case,
    event,
    nominal,
    offence,
    person_key,
    pnc,
    row_of,
    spell,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.build import (
    FEATURE_COLUMNS,
    FEATURE_SCHEMA,
    OFFENCE_WINDOW_MONTHS,
    _history_applies,
    check_history_window,
    compute_features,
    months_before,
    unknown_offence_codes,
)
from features.reference import load_offence_reference
from pipeline.errors import ConfigError
from pipeline.facts import HISTORY_WINDOW_MONTHS

D = date(2026, 6, 30)
COUNTED = ["charged", "summonsed", "cautioned", "community_resolution", "convicted", "pending"]
UNKNOWN = {"offence_group": "unknown", "gravity": 2, "neighbourhood_crime": False, "violence": False,
           "ogrs3_group": "violence"}
PNC_A, PNC_B, PNC_H, PNC_I = pnc(12, 394773), pnc(5, 1234), pnc(9, 777), pnc(8, 4242)


def scenario() -> dict:
    """People A..H of the hand-worked example (see each test for the arithmetic)."""
    nominals = [
        nominal("N1", pnc_id=PNC_A, date_of_birth=date(1990, 7, 1), area="Northgate"),
        nominal("N2", pnc_id=PNC_B, date_of_birth=date(1980, 1, 1), area="Southmoor"),
        nominal("N3", deceased_date=date(2026, 3, 1)),
        nominal("N4", deceased_date=date(2026, 9, 1)),
        nominal("N5"),
        nominal("N6"),
        nominal("N7", pnc_id=PNC_H, surname="Hughes", forenames="Sam"),
        nominal("N8", pnc_id=PNC_H, surname="Hughes", forenames="Samuel"),
        nominal("N9", pnc_id=PNC_I, surname="Irving", area="Westfield"),
    ]
    offences = [
        # person A (N1)
        offence("O1", "N1", D, "028/01", outcome="charged", outcome_date=D),
        offence("O2", "N1", date(2026, 3, 30), "105/01", outcome="convicted", outcome_date=date(2026, 5, 1)),
        offence("O3", "N1", date(2026, 1, 15), "046/00", outcome="nfa", outcome_date=date(2026, 2, 1)),
        offence("O4", "N1", date(2025, 12, 1), "034/01", outcome="convicted", outcome_date=date(2026, 8, 1)),
        offence("O5", "N1", date(2025, 6, 30), "039/00", outcome="cautioned", outcome_date=date(2025, 7, 10)),
        offence("O6", "N1", date(2024, 2, 10), "999/99", outcome="convicted", outcome_date=date(2024, 5, 1)),
        offence("O7", "N1", date(2022, 1, 10), "028/01", outcome="convicted", outcome_date=date(2022, 3, 1)),
        offence("O8", "N1", date(2026, 6, 20), "028/01", recorded_date=date(2026, 7, 5)),
        offence("O9", "N1", date(2026, 7, 10), "998/99", outcome_date=date(2026, 7, 10)),
        # person B (N2)
        offence("O10", "N2", date(2026, 2, 14), "046/00", outcome="charged", outcome_date=date(2026, 2, 20)),
        # person C (N3, deceased before D) and D (N4, deceased after D)
        offence("O11", "N3", date(2025, 11, 11), "105/01"),
        offence("O12", "N4", date(2025, 11, 11), "105/01"),
        # person E (N5): only an offence after D
        offence("O13", "N5", date(2026, 7, 20), "105/01"),
        # person H: two police ids, same day, same gravity (2): the lower code wins
        offence("O14", "N7", date(2026, 5, 5), "045/00"),
        offence("O15", "N8", date(2026, 5, 5), "039/00"),
        # person I: supervision ended before D, and a case of type 'none' open at D
        offence("O16", "N9", date(2025, 9, 9), "058/01"),
    ]
    custody = [
        spell("S1", "A1111AA", date(2025, 1, 10), pnc_id=PNC_B, release_date=date(2025, 5, 20), sentence_days=120,
              custody_type="sentenced"),
        spell("S2", "A1111AA", date(2026, 5, 1), pnc_id=PNC_B, expected_release_date=date(2026, 8, 15),
              custody_type="remand"),
        spell("S3", "A1111AA", date(2026, 7, 15), pnc_id=PNC_B, sentence_days=200, custody_type="sentenced"),
        # person J: prison only, still in custody after the expected release date
        spell("S4", "A3333CC", date(2025, 1, 1), surname="Prisoner", forenames="Pat",
              date_of_birth=date(1975, 5, 5), expected_release_date=date(2026, 6, 1), sentence_days=500,
              release_area="Central"),
    ]
    cases = [
        case("X111111", date(2025, 5, 20), pnc_id=PNC_B, supervision_type="licence",
             supervision_end=date(2027, 5, 20), assessment_date=date(2025, 6, 1), ogrs3_2yr=61.5, rosh="medium",
             mappa_level=1),
        case("X111111", date(2026, 8, 1), pnc_id=PNC_B, supervision_type="community_order",
             assessment_date=date(2026, 8, 5), ogrs3_2yr=80, rosh="high", mappa_level=2),
        # person G: probation only, area moves after D
        case("X222222", date(2026, 1, 1), surname="Jones", forenames="Kim", date_of_birth=date(1985, 3, 3),
             area="Eastbridge"),
        case("X222222", date(2026, 9, 1), surname="Jones", forenames="Kim", date_of_birth=date(1985, 3, 3),
             area="Westfield"),
        case("X333333", date(2024, 1, 1), pnc_id=PNC_I, supervision_type="licence",
             supervision_end=date(2025, 1, 1)),
        case("X333333", date(2026, 1, 1), pnc_id=PNC_I, supervision_type="none"),
    ]
    events = [
        event("X111111", date(2026, 1, 10), "breach"),
        event("X111111", date(2025, 6, 30), "breach"),  # exactly 12 months before D: outside (D-12m, D]
        event("X111111", date(2026, 3, 1), "recall"),
        event("X111111", D, "missed_appointment"),
        event("X111111", date(2026, 7, 2), "positive_drug_test"),  # after D
        event("X111111", date(2025, 12, 25), "positive_drug_test"),
    ]
    return {"nominals": nominals, "offences": offences, "custody": custody, "cases": cases, "events": events}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    con = build_warehouse(tmp_path_factory.mktemp("features"), **scenario())
    yield con
    con.close()


@pytest.fixture(scope="module")
def reference():
    return load_offence_reference()


@pytest.fixture(scope="module")
def features(warehouse, reference):
    return compute_features(warehouse, D, reference, COUNTED, UNKNOWN)


def test_columns_types_population_and_order(warehouse, features):
    assert features.columns == list(FEATURE_COLUMNS)
    assert dict(features.schema) == FEATURE_SCHEMA
    keys = features.get_column("person_key").to_list()
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    expected = {person_key(warehouse, "police", p) for p in ("N1", "N2", "N3", "N4", "N7", "N9")}
    expected |= {person_key(warehouse, "probation", "X222222"), person_key(warehouse, "prison", "A3333CC")}
    # N5 has only an offence after D and N6 none: not assessed at D
    assert set(keys) == expected
    assert person_key(warehouse, "police", "N7") == person_key(warehouse, "police", "N8")


def test_offence_windows_outcomes_and_seriousness_worked_by_hand(warehouse, features):
    a = row_of(features, person_key(warehouse, "police", "N1"))
    # counted at D (outcome as known at D in the counted list): O1 charged, O2 convicted, O4 pending
    # (its conviction is dated after D), O5 cautioned, O6 convicted, O7 convicted. O3 is NFA, O8 was
    # recorded after D and O9 committed after D.
    assert a["offences_total"] == 6
    assert a["offences_3m"] == 1  # O1; O2 falls exactly on D-3m, outside (D-3m, D]
    assert a["offences_12m"] == 3  # O1, O2, O4; O5 is exactly D-12m
    assert a["offences_36m"] == 5  # O1, O2, O4, O5, O6; O7 is 2022
    assert a["prev_12m"] == 1  # O5 in (D-24m, D-12m]
    assert a["trend_12m"] == 3 - 1
    assert a["last_offence_date"] == D and a["days_since_last_offence"] == 0
    assert a["neighbourhood_12m"] == 2  # O1 domestic burglary, O4 personal robbery
    assert a["violence_12m"] == 2  # O2 common assault, O4 robbery
    # groups in 36 months: domestic_burglary, violence_without_injury, robbery, theft_from_person, unknown
    assert a["distinct_groups_36m"] == 5
    assert a["seriousness_sum_36m"] == 3 + 2 + 4 + 2 + 2  # O6 unknown code: default gravity 2
    assert a["seriousness_max_36m"] == 4
    assert a["most_serious_36m"] == "Robbery of personal property"
    assert a["unknown_offences_36m"] == 1
    assert a["age"] == 35  # born 1 July 1990: 36th birthday is the day after D
    assert a["area"] == "Northgate"
    assert (a["in_police"], a["in_probation"], a["in_prison"]) == (True, False, False)
    assert a["in_custody"] is False and a["under_supervision"] is False and a["deceased"] is False


def test_ogrs3_computed_from_police_history_at_d(warehouse, features):
    a = row_of(features, person_key(warehouse, "police", "N1"))
    # sanctions known at D: O2 (convicted 2026-05-01, violence), O5 (cautioned), O6, O7 (convicted
    # 2022-03-01); O4's conviction comes after D. Current = O2: age 35 then; first = O7: age 31.
    # Male, 35 at D: -1.368; repeat: 0.46306; violence: 0.
    s = -1.368 + 1.25112 * math.log(4 / (10 + 35 - 31)) + 0.46306 + 0.0
    expected = 100 * math.exp(2.1217 + s) / (1 + math.exp(2.1217 + s))
    assert expected == pytest.approx(41.32, abs=0.01)
    assert a["ogrs3_2yr"] == pytest.approx(expected, abs=1e-9)
    assert a["ogrs3_source"] == "computed"
    assert a["rosh"] is None and a["mappa_level"] is None


def test_custody_probation_and_events_at_d(warehouse, features):
    b = row_of(features, person_key(warehouse, "police", "N2"))
    assert b["age"] == 46
    assert b["in_custody"] is True and b["custody_type_at_d"] == "remand"  # S2 open; S3 received after D
    assert b["expected_release_date"] == date(2026, 8, 15)
    assert b["days_until_release"] == 46  # 1 July .. 15 August
    assert b["release_due_90d"] is True
    assert b["days_since_release"] == 365 + 41  # S1 released 2025-05-20
    assert b["short_sentences_36m"] == 1  # S1 sentenced 120 days; S2 is remand
    assert b["under_supervision"] is True and b["supervision_type"] == "licence"
    # the later case (OGRS3 80, high, MAPPA 2) starts and is assessed after D
    assert (b["ogrs3_2yr"], b["ogrs3_source"], b["rosh"], b["mappa_level"]) == (61.5, "probation", "medium", 1)
    assert (b["breaches_12m"], b["recalls_12m"], b["missed_appointments_12m"], b["positive_drug_tests_12m"]) == (
        1, 1, 1, 1)
    assert (b["in_police"], b["in_probation"], b["in_prison"]) == (True, True, True)
    assert b["offences_12m"] == 1 and b["most_serious_36m"] == "Shoplifting"


def test_supervision_ended_or_of_type_none_is_not_supervision(warehouse, features):
    i = row_of(features, person_key(warehouse, "police", "N9"))
    assert i["under_supervision"] is False and i["supervision_type"] is None
    assert i["in_probation"] is True and i["area"] == "Westfield"


def test_overdue_expected_release_is_due(warehouse, features):
    j = row_of(features, person_key(warehouse, "prison", "A3333CC"))
    assert j["in_custody"] is True and j["custody_type_at_d"] == "sentenced"
    assert j["days_until_release"] == -29 and j["release_due_90d"] is True
    assert j["short_sentences_36m"] == 0  # 500 days is not a short sentence
    assert j["area"] == "Central" and j["age"] == 51
    assert (j["in_police"], j["in_probation"], j["in_prison"]) == (False, False, True)
    assert j["offences_total"] == 0 and j["ogrs3_2yr"] is None and j["ogrs3_source"] is None


def test_deceased_only_from_the_date_of_death(warehouse, features):
    assert row_of(features, person_key(warehouse, "police", "N3"))["deceased"] is True
    assert row_of(features, person_key(warehouse, "police", "N4"))["deceased"] is False


def test_area_of_a_probation_only_person_is_the_one_known_at_d(warehouse, features):
    g = row_of(features, person_key(warehouse, "probation", "X222222"))
    assert g["area"] == "Eastbridge"  # the case moving them to Westfield starts after D
    assert (g["in_police"], g["in_probation"], g["in_prison"]) == (False, True, False)
    assert g["offences_total"] == 0 and g["days_since_last_offence"] is None
    assert g["under_supervision"] is True and g["supervision_type"] == "community_order"


def test_two_police_ids_are_merged_and_ties_go_to_the_lowest_code(warehouse, features):
    h = row_of(features, person_key(warehouse, "police", "N7"))
    assert h["offences_12m"] == 2 and h["neighbourhood_12m"] == 2 and h["distinct_groups_36m"] == 2
    # 039/00 theft from the person and 045/00 theft from a vehicle: gravity 2 on the same day
    assert h["seriousness_max_36m"] == 2 and h["most_serious_36m"] == "Theft from the person"


def test_counted_outcomes_and_unknown_defaults_come_from_the_caller(warehouse, reference):
    heavy = dict(UNKNOWN, gravity=4, violence=True)
    frame = compute_features(warehouse, D, reference, ["convicted"], heavy)
    a = row_of(frame, person_key(warehouse, "police", "N1"))
    assert a["offences_total"] == 3  # O2, O6, O7; O4 is still pending at D
    assert a["offences_36m"] == 2  # O2, O6
    assert a["seriousness_sum_36m"] == 2 + 4  # O6 now gravity 4
    assert a["violence_12m"] == 1  # O2 only (O6 is outside 12 months)
    assert a["most_serious_36m"] == "Unknown offence code 999/99"


def test_unknown_offence_codes_counts_codes_known_at_d(warehouse, reference):
    at_d = unknown_offence_codes(warehouse, D, reference)
    assert at_d.to_dicts() == [{"code": "999/99", "count": 1}]
    later = unknown_offence_codes(warehouse, date(2026, 12, 31), reference)
    assert later.to_dicts() == [{"code": "998/99", "count": 1}, {"code": "999/99", "count": 1}]


def test_same_input_gives_identical_frames(warehouse, reference, features):
    again = compute_features(warehouse, D, reference, COUNTED, UNKNOWN)
    assert_frame_equal(features, again)


def test_empty_warehouse_gives_empty_frame_with_schema(tmp_path, reference):
    con = build_warehouse(tmp_path)
    frame = compute_features(con, D, reference, COUNTED, UNKNOWN)
    assert frame.height == 0 and dict(frame.schema) == FEATURE_SCHEMA
    assert unknown_offence_codes(con, D, reference).height == 0


def test_bad_counted_outcome_is_a_config_error(warehouse, reference):
    with pytest.raises(ConfigError, match="arrested"):
        compute_features(warehouse, D, reference, ["arrested"], UNKNOWN)


@pytest.mark.parametrize(
    "day, months, expected",
    [(date(2026, 5, 31), 3, date(2026, 2, 28)), (date(2024, 5, 31), 3, date(2024, 2, 29)),
     (date(2026, 1, 15), 12, date(2025, 1, 15)), (date(2026, 3, 31), 36, date(2023, 3, 31))],
)
def test_months_before_clamps_to_month_end(day, months, expected):
    assert months_before(day, months) == expected


# --- point in time: rows dated after D never change features at D ------------------------

D_PROP = date(2026, 6, 30)
LAST_DAY = LATE_EXTRACT_DATE  # no extract date may be later (planned dates aside)
BASE_PEOPLE = {
    "nominals": [
        nominal("N1", pnc_id=pnc(11, 1001), date_of_birth=date(1992, 3, 4)),
        nominal("N2", pnc_id=pnc(11, 2002), date_of_birth=date(1985, 11, 30), sex="F"),
        nominal("N3", date_of_birth=date(2004, 6, 30)),
    ],
}
CODES = ["028/01", "105/01", "046/00", "034/01", "092/03", "999/99"]
OUTCOME_NAMES = ["charged", "convicted", "cautioned", "nfa", "pending", "community_resolution", None]


@st.composite
def offence_rows(draw, prefix: str, after: bool):
    rows = []
    for i in range(draw(st.integers(0, 5))):
        person = draw(st.sampled_from(["N1", "N2", "N3"]))
        if after:
            # committed after D, or committed before D but recorded after it
            late = draw(st.booleans())
            when = D_PROP + timedelta(days=draw(st.integers(1, 300))) if late else \
                D_PROP - timedelta(days=draw(st.integers(0, 100)))
            recorded = max(when, D_PROP + timedelta(days=draw(st.integers(1, 30))))
        else:
            when = D_PROP - timedelta(days=draw(st.integers(0, 1400)))
            recorded = when + timedelta(days=draw(st.integers(0, 5))) if draw(st.booleans()) else None
            if recorded is not None and recorded > D_PROP:
                recorded = D_PROP
        outcome = draw(st.sampled_from(OUTCOME_NAMES))
        outcome_date = None if outcome is None else min(when + timedelta(days=draw(st.integers(0, 400))), LAST_DAY)
        rows.append(offence(f"{prefix}{i}", person, when, draw(st.sampled_from(CODES)), recorded_date=recorded,
                            outcome=outcome, outcome_date=outcome_date))
    return rows


@st.composite
def custody_rows(draw, prefix: str, after: bool):
    rows = []
    for i in range(draw(st.integers(0, 2))):
        start = D_PROP + timedelta(days=draw(st.integers(1, 200))) if after else \
            D_PROP - timedelta(days=draw(st.integers(0, 1000)))
        released = draw(st.booleans())
        release = start + timedelta(days=draw(st.integers(0, 400))) if released else None
        if release is not None and release > LAST_DAY:
            release = None
        rows.append(spell(f"{prefix}{i}", "A2002BB", start, pnc_id=pnc(11, 2002), release_date=release,
                          expected_release_date=start + timedelta(days=draw(st.integers(30, 500))),
                          sentence_days=draw(st.sampled_from([None, 90, 300, 800])),
                          custody_type=draw(st.sampled_from(["sentenced", "remand", "recall"])),
                          release_area=draw(st.sampled_from(["Northgate", "Southmoor"]))))
    return rows


@st.composite
def probation_rows(draw, after: bool):
    cases, events = [], []
    for _ in range(draw(st.integers(0, 2))):
        start = D_PROP + timedelta(days=draw(st.integers(1, 300))) if after else \
            D_PROP - timedelta(days=draw(st.integers(0, 1000)))
        assessed = start + timedelta(days=draw(st.integers(0, 20)))
        if assessed > LAST_DAY:
            assessed = None
        cases.append(case("X100001", start, pnc_id=pnc(11, 1001),
                          supervision_type=draw(st.sampled_from(["licence", "community_order", "pss", "none"])),
                          supervision_end=start + timedelta(days=draw(st.integers(0, 700))),
                          assessment_date=assessed, ogrs3_2yr=draw(st.sampled_from([None, 35.5, 72.0])),
                          rosh=draw(st.sampled_from([None, "low", "high"])), mappa_level=draw(st.integers(0, 3)),
                          area=draw(st.sampled_from(["Northgate", "Eastbridge"]))))
    for _ in range(draw(st.integers(0, 4))):
        when = D_PROP + timedelta(days=draw(st.integers(1, 300))) if after else \
            D_PROP - timedelta(days=draw(st.integers(0, 500)))
        events.append(event("X100001", when, draw(st.sampled_from(["breach", "recall", "missed_appointment",
                                                                    "positive_drug_test", "other"]))))
    return cases, events


def _unique_cases(rows: list[dict]) -> list[dict]:
    """Cases are keyed by (crn, supervision_start): keep the first of a repeated start."""
    seen, out = set(), []
    for row in rows:
        key = (row["crn"], row["supervision_start"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


# Each example builds two warehouses (about a second each): few examples, and no shrinking,
# which would take minutes; a failure prints the generated rows in full instead.
@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    base_offences=offence_rows("B", after=False),
    late_offences=offence_rows("L", after=True),
    base_spells=custody_rows("SB", after=False),
    late_spells=custody_rows("SL", after=True),
    base_probation=probation_rows(after=False),
    late_probation=probation_rows(after=True),
)
@pytest.mark.slow
def test_rows_dated_after_d_never_change_features_at_d(
    tmp_path_factory, base_offences, late_offences, base_spells, late_spells, base_probation, late_probation
):
    reference = load_offence_reference()
    # an anchor for each agency so that every person exists in both warehouses
    anchors = {
        "offences": [offence("A0", "N1", D_PROP - timedelta(days=40), "105/01"),
                     offence("A1", "N3", D_PROP - timedelta(days=2000), "046/00")],
        "custody": [spell("SA", "A2002BB", D_PROP - timedelta(days=900), pnc_id=pnc(11, 2002),
                          release_date=D_PROP - timedelta(days=800))],
        "cases": [case("X100001", D_PROP - timedelta(days=1200), pnc_id=pnc(11, 1001))],
    }
    base = dict(
        nominals=BASE_PEOPLE["nominals"],
        offences=anchors["offences"] + base_offences,
        custody=anchors["custody"] + base_spells,
        cases=_unique_cases(anchors["cases"] + base_probation[0]),
        events=base_probation[1],
    )
    later = dict(
        base,
        offences=base["offences"] + late_offences,
        custody=base["custody"] + late_spells,
        cases=_unique_cases(base["cases"] + late_probation[0]),
        events=base["events"] + late_probation[1],
    )
    con = build_warehouse(tmp_path_factory.mktemp("base"), **base)
    before = compute_features(con, D_PROP, reference, COUNTED, UNKNOWN)
    con.close()
    con = build_warehouse(tmp_path_factory.mktemp("later"), **later)
    after = compute_features(con, D_PROP, reference, COUNTED, UNKNOWN)
    con.close()
    assert before.height == 3
    assert_frame_equal(before, after)


# --- the settled-offence summary gives the same features as reading every row -------------


def test_the_settled_summary_covers_every_offence_window():
    assert max(OFFENCE_WINDOW_MONTHS) <= HISTORY_WINDOW_MONTHS
    check_history_window()  # the shipped windows pass
    with pytest.raises(ValueError, match="longest offence window \\(48 months\\)"):
        check_history_window((3, 12, 48), 36)


def test_using_the_settled_summary_is_logged(tmp_path, caplog):
    offences = [offence("S1", "N1", date(2015, 3, 1), outcome="convicted", outcome_date=date(2015, 6, 1)),
                offence("S2", "N1", date(2027, 5, 1))]
    con = build_warehouse(tmp_path, nominals=BASE_PEOPLE["nominals"], offences=offences)
    try:
        reference = load_offence_reference()
        with caplog.at_level(logging.INFO, logger="features.build"):
            compute_features(con, LAST_DAY, reference, COUNTED, UNKNOWN, settled_history=False)
            assert "read from their summary" not in caplog.text
            compute_features(con, LAST_DAY, reference, COUNTED, UNKNOWN)
        assert "read from their summary" in caplog.text
    finally:
        con.close()


@st.composite
def offence_history_rows(draw):
    """Offences over ten years, some recorded or decided years later (so never settled)."""
    rows = []
    for i in range(draw(st.integers(3, 20))):  # several per person: sanctions of several outcomes
        when = LAST_DAY - timedelta(days=draw(st.integers(0, 3650)))
        recorded = min(when + timedelta(days=draw(st.integers(0, 1200))), LAST_DAY) if draw(st.booleans()) else None
        outcome = draw(st.sampled_from(OUTCOME_NAMES))
        outcome_date = (None if outcome is None or draw(st.integers(0, 4)) == 0
                        else min(when + timedelta(days=draw(st.integers(0, 1500))), LAST_DAY))
        rows.append(offence(f"H{i}", draw(st.sampled_from(["N1", "N2"])), when, draw(st.sampled_from(CODES)),
                            recorded_date=recorded, outcome=outcome, outcome_date=outcome_date))
    return rows


@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    offences=offence_history_rows(),
    dates=st.lists(st.dates(LAST_DAY - timedelta(days=1500), LAST_DAY + timedelta(days=400)), min_size=2, max_size=3),
)
@pytest.mark.slow
def test_settled_summary_gives_the_features_of_every_row(tmp_path_factory, offences, dates):
    reference = load_offence_reference()
    con = build_warehouse(tmp_path_factory.mktemp("history"), nominals=BASE_PEOPLE["nominals"], offences=offences)
    try:
        # runs from the latest offence on always use the summary; earlier dates may read every row
        assert _history_applies(con, LAST_DAY)
        for as_of in [LAST_DAY, *dates]:
            for counted in (COUNTED, ["convicted", "cautioned", "nfa"]):
                summarised = compute_features(con, as_of, reference, counted, UNKNOWN)
                every_row = compute_features(con, as_of, reference, counted, UNKNOWN, settled_history=False)
                assert_frame_equal(summarised, every_row)
    finally:
        con.close()


# --- offence reference -----------------------------------------------------------------


def test_shipped_reference_types_and_values(reference):
    assert reference.schema["neighbourhood_crime"] == pl.Boolean
    assert reference.schema["violence"] == pl.Boolean
    assert reference.schema["gravity"] == pl.Int64
    assert reference.schema["harm_weight_days"] == pl.Float64
    assert reference.get_column("gravity").is_between(1, 4).all()
    burglary = reference.filter(pl.col("ho_offence_code") == "028/01").to_dicts()[0]
    assert burglary["neighbourhood_crime"] is True and burglary["violence"] is False
    assert burglary["gravity"] == 3 and burglary["harm_weight_days"] == 273.5
    assert burglary["ogrs3_group"] == "domestic_burglary"


def _write_reference(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "ho_offence_code,description,offence_group,neighbourhood_crime,violence,gravity,harm_weight_days,ogrs3_group\n"


def test_override_reference_is_read(tmp_path):
    path = _write_reference(tmp_path / "ref.csv", HEADER + "028/01,Burglary,burglary,TRUE,no,4,300,domestic_burglary\n")
    frame = load_offence_reference(path)
    assert frame.to_dicts() == [{
        "ho_offence_code": "028/01", "description": "Burglary", "offence_group": "burglary",
        "neighbourhood_crime": True, "violence": False, "gravity": 4, "harm_weight_days": 300.0,
        "ogrs3_group": "domestic_burglary",
    }]


@pytest.mark.parametrize(
    "text, needle",
    [
        (HEADER.replace(",gravity", "") + "028/01,B,b,true,false,300,domestic_burglary\n", "ref.csv: gravity"),
        (HEADER + "028/01,B,b,true,false,5,300,domestic_burglary\n", "ref.csv: line 2: gravity: '5'"),
        (HEADER + "028/01,B,b,maybe,false,2,300,domestic_burglary\n", "line 2: neighbourhood_crime: 'maybe'"),
        (HEADER + "028/01,B,b,true,false,2,lots,domestic_burglary\n", "line 2: harm_weight_days"),
        (HEADER + "028/01,B,b,true,false,2,3,burglary_of_sheds\n", "line 2: ogrs3_group"),
        (HEADER + "burglary,B,b,true,false,2,3,violence\n", "line 2: ho_offence_code"),
        (HEADER + "028/01,B,b,true,false,2,3,violence\n28/1,C,c,true,false,2,3,violence\n", "line 3: ho_offence_code"),
        (HEADER + "028/01,B,b,true,false,2,3,violence\n028/01,C,c,true,false,2,3,violence\n", "line 3: ho_offence_code"),
    ],
)
def test_bad_reference_names_file_line_and_column(tmp_path, text, needle):
    path = _write_reference(tmp_path / "ref.csv", text)
    with pytest.raises(ConfigError) as info:
        load_offence_reference(path)
    assert needle in str(info.value)


def test_a_reference_of_local_or_cjs_codes_is_read_in_the_extracts_form(tmp_path):
    path = _write_reference(tmp_path / "ref.csv", HEADER + "th68010,Theft from a shop,shoplifting,true,false,1,30,shoplifting\n"
                            "28/1,Burglary,burglary,true,false,4,300,domestic_burglary\n")
    frame = load_offence_reference(path)
    assert frame["ho_offence_code"].to_list() == ["TH68010", "028/01"]


def test_missing_reference_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_offence_reference(tmp_path / "nope.csv")
