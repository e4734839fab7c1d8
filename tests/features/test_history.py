"""Criminal history from the PNC (via probation) and the force's sanctions: worked examples of
the precedence, the derived features and OGRS3 computed from probation's history."""

from __future__ import annotations

import math
from datetime import date

import pytest
from builders import build_warehouse, case, nominal, offence, person_key, pnc, row_of

from features.build import compute_features
from features.ogrs3 import ogrs3_probability
from features.reference import load_offence_reference

COUNTED = ["charged", "summonsed", "cautioned", "community_resolution", "convicted", "pending"]
UNKNOWN = {"offence_group": "unknown", "gravity": 2, "neighbourhood_crime": False, "violence": False,
           "ogrs3_group": "violence"}
PNC_A, PNC_C, PNC_F = pnc(10, 1111), pnc(11, 2222), pnc(12, 3333)
ASSESSED = date(2024, 1, 10)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    nominals = [
        nominal("N1", pnc_id=PNC_A, date_of_birth=date(1990, 6, 15)),  # A: PNC count, then a local sanction
        nominal("N2", date_of_birth=date(1990, 6, 15)),                # B: the force's records only
        nominal("N3", pnc_id=PNC_C, date_of_birth=date(1990, 6, 15)),  # C: the local count is larger
        nominal("N6", pnc_id=PNC_F, date_of_birth=date(1990, 6, 15)),  # F: a count without a first date
    ]
    offences = [
        # A: one sanction before the assessment (already in the PNC count), one after it
        offence("O1", "N1", date(2023, 4, 1), outcome="convicted", outcome_date=date(2023, 5, 1)),
        offence("O2", "N1", date(2024, 5, 1), outcome="convicted", outcome_date=date(2024, 6, 1)),
        # B: three sanctions and a charge (a charge is not a sanction)
        offence("O3", "N2", date(2019, 3, 1), outcome="cautioned", outcome_date=date(2019, 3, 10)),
        offence("O4", "N2", date(2021, 3, 1), outcome="convicted", outcome_date=date(2021, 5, 1)),
        offence("O5", "N2", date(2023, 3, 1), outcome="community_resolution", outcome_date=date(2023, 3, 2)),
        offence("O6", "N2", date(2024, 3, 1), outcome="charged", outcome_date=date(2024, 3, 2)),
        # C: four local sanctions against a PNC copy of one previous sanction
        *[offence(f"O{7 + i}", "N3", date(2018 + i, 2, 1), outcome="convicted", outcome_date=date(2018 + i, 3, 1))
          for i in range(4)],
    ]
    cases = [
        case("X100001", ASSESSED, pnc_id=PNC_A, assessment_date=ASSESSED, previous_sanctions=5,
             first_sanction_date=date(2006, 3, 1)),
        case("X100003", ASSESSED, pnc_id=PNC_C, assessment_date=ASSESSED, previous_sanctions=1,
             first_sanction_date=date(2017, 3, 1)),
        # E: probation only, no police record, no OGRS3 score on the case
        case("X100005", date(2024, 2, 1), surname="Evans", forenames="Jo", date_of_birth=date(1985, 2, 1), sex="F",
             supervision_type="licence", assessment_date=date(2024, 2, 1), previous_sanctions=4,
             first_sanction_date=date(2010, 1, 1)),
        case("X100006", ASSESSED, pnc_id=PNC_F, assessment_date=ASSESSED, previous_sanctions=2),
        # G: assessed after the as-of date: not known at D
        case("X100007", date(2025, 3, 1), surname="Green", forenames="Al", date_of_birth=date(1990, 6, 15),
             assessment_date=date(2025, 3, 1), previous_sanctions=9, first_sanction_date=date(2008, 1, 1)),
    ]
    con = build_warehouse(tmp_path_factory.mktemp("history"), nominals=nominals, offences=offences, cases=cases)
    yield con
    con.close()


def features_at(con, as_of: date):
    return compute_features(con, as_of, load_offence_reference(), COUNTED, UNKNOWN)


def test_pnc_count_brought_up_to_date_with_local_sanctions_after_the_assessment(warehouse):
    frame = features_at(warehouse, date(2025, 1, 1))
    a = row_of(frame, person_key(warehouse, "police", "N1"))
    # 5 previous + the case's own sanction + the local conviction of 2024-06-01 (after 2024-01-10);
    # the 2023 conviction is already in the PNC's count
    assert a["sanctions_total"] == 7 and a["history_source"] == "pnc+police"
    assert a["first_sanction_age"] == 15  # 2006-03-01, born 1990-06-15
    assert a["career_years"] == 34 - 15
    assert math.isclose(a["copas_rate"], math.log((1 + 6) / (10 + 19)))
    # OGRS3 (probation gives no score): the current sanction is the local one of 2024-06-01,
    # a domestic burglary (028/01), age 33 then
    expected = 100 * ogrs3_probability(age=34, sex="M", total_sanctions=7, age_at_current=33, age_at_first=15,
                                       offence_group="domestic_burglary")
    assert a["ogrs3_source"] == "computed" and math.isclose(a["ogrs3_2yr"], expected, rel_tol=1e-9)


def test_before_the_local_sanction_the_pnc_count_alone(warehouse):
    frame = features_at(warehouse, date(2024, 3, 1))
    a = row_of(frame, person_key(warehouse, "police", "N1"))
    assert a["sanctions_total"] == 6 and a["history_source"] == "pnc"


def test_force_records_only_count_sanctions_not_charges(warehouse):
    b = row_of(features_at(warehouse, date(2025, 1, 1)), person_key(warehouse, "police", "N2"))
    assert b["sanctions_total"] == 3 and b["history_source"] == "police"
    assert b["first_sanction_age"] == 28 and b["career_years"] == 34 - 28  # caution of 2019-03-10


def test_a_larger_local_count_wins_over_a_stale_pnc_copy(warehouse):
    c = row_of(features_at(warehouse, date(2025, 1, 1)), person_key(warehouse, "police", "N3"))
    assert c["sanctions_total"] == 4 and c["history_source"] == "police"
    assert c["first_sanction_age"] == 26  # probation's 2017-03-01 is earlier than the local 2018-03-01


def test_ogrs3_from_probation_history_alone(warehouse):
    e = row_of(features_at(warehouse, date(2025, 1, 1)), person_key(warehouse, "probation", "X100005"))
    assert e["sanctions_total"] == 5 and e["history_source"] == "pnc"
    # the current sanction is the licence case's (assessed 2024-02-01, age 39); its offence is
    # unknown, so the rule set's unknown-offence group (violence, term 0) stands in
    expected = 100 * ogrs3_probability(age=39, sex="F", total_sanctions=5, age_at_current=39, age_at_first=24,
                                       offence_group="violence")
    assert e["ogrs3_source"] == "computed" and math.isclose(e["ogrs3_2yr"], expected, rel_tol=1e-9)


def test_no_first_date_takes_the_first_sanction_at_18(warehouse):
    f = row_of(features_at(warehouse, date(2025, 1, 1)), person_key(warehouse, "police", "N6"))
    assert f["sanctions_total"] == 3 and f["first_sanction_age"] is None
    assert f["career_years"] == 34 - 18
    assert math.isclose(f["copas_rate"], math.log(3 / (10 + 16)))


def test_a_case_assessed_after_the_as_of_date_is_not_known(warehouse):
    g_key = person_key(warehouse, "probation", "X100007")
    later = row_of(features_at(warehouse, date(2025, 6, 1)), g_key)
    assert later["sanctions_total"] == 10
    frame = features_at(warehouse, date(2025, 1, 1))
    assert g_key not in frame.get_column("person_key").to_list()  # nothing known of G at D
    b = row_of(frame, person_key(warehouse, "police", "N2"))
    assert b["copas_rate"] is not None


def test_no_sanction_gives_a_defined_rate_and_no_ogrs3(warehouse):
    frame = features_at(warehouse, date(2019, 1, 1))  # B's first sanction is in March 2019
    assert person_key(warehouse, "police", "N2") not in frame.get_column("person_key").to_list()
    frame = features_at(warehouse, date(2019, 3, 5))  # B's caution is outcome-dated 2019-03-10
    b = row_of(frame, person_key(warehouse, "police", "N2"))
    assert b["sanctions_total"] == 0 and b["history_source"] == "none" and b["career_years"] == 0
    assert math.isclose(b["copas_rate"], math.log(1 / 10)) and b["ogrs3_2yr"] is None
