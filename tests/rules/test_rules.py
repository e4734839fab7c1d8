"""Rules as data: points by component worked by hand from default.toml, eligibility, cohort
selection (capacity, ties, super-prolific, release watch), determinism and rule-file errors."""

from __future__ import annotations

import hashlib
import logging
import tomllib
from pathlib import Path

import polars as pl
import pytest
from builders import feature_frame, feature_row
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.errors import ConfigError
from pipeline.run import movement
from rules.schema import DEFAULT_RULES, PROTECTED, load_rules
from rules.score import EligibilityReason, score
from rules.select import select_cohorts

RAW = tomllib.loads(DEFAULT_RULES.read_text(encoding="utf-8"))
COMPONENTS = RAW["components"]
RULES = load_rules("default")
# The 1.0.0 default, kept as an example: its terms exercise mechanisms 2.0.0 does not use.
RULES_1_0_PATH = DEFAULT_RULES.parent / "examples" / "default-1.0.0.toml"
COMPONENTS_1_0 = tomllib.loads(RULES_1_0_PATH.read_text(encoding="utf-8"))["components"]
RULES_1_0 = load_rules(str(RULES_1_0_PATH))


def band_points(bands: list[dict], value) -> int:
    """Independent reading of a band list: the highest `min` reached, or the first `max` not exceeded."""
    if value is None:
        return 0
    if "min" in bands[0]:
        reached = [b["points"] for b in bands if value >= b["min"]]
        return reached[-1] if reached else 0
    for band in bands:
        if value <= band["max"]:
            return band["points"]
    return 0


def scored_one(**features) -> dict:
    return score(feature_frame([feature_row(**features)]), RULES).to_dicts()[0]


def points(row: dict) -> dict:
    return {k.removeprefix("points_"): v for k, v in row.items() if k.startswith("points_") and v}


# --- the default rule file ---------------------------------------------------------------


def test_default_rules_are_recorded_with_name_version_hash_and_path():
    assert RULES.name == RAW["ruleset"]["name"] == "default"
    assert RULES.version == RAW["ruleset"]["version"]
    assert RULES.sha256 == hashlib.sha256(DEFAULT_RULES.read_bytes()).hexdigest()
    assert RULES.path == DEFAULT_RULES
    assert RULES.component_names == list(COMPONENTS)
    assert tuple(RULES.counted_outcomes) == tuple(RAW["counted_outcomes"])
    assert RULES.unknown_offence == RAW["unknown_offence"]


def test_default_gives_ogrs3_no_points():
    features = {t.feature for c in RULES.components for t in c.terms}
    assert "ogrs3_2yr" not in features
    low, high = scored_one(ogrs3_2yr=5.0), scored_one(ogrs3_2yr=99.0)
    assert low["score"] == high["score"] == 0


# --- each component, worked by hand from default.toml ----------------------------------------


def test_default_has_a_criminal_career_component_and_no_protected_characteristic():
    # The evidence behind rule set 2.0.0 (docs/rules.md): previous sanctions and the Copas rate
    # are the strongest general predictors, so the default must score them; and no protected
    # characteristic (nor OGRS3, which embeds age and sex) may earn points.
    career = {t.feature for t in next(c for c in RULES.components if c.name == "career").terms}
    assert career == {"sanctions_total", "copas_rate"}
    scored = {t.feature for c in RULES.components for t in c.terms}
    assert not scored & (PROTECTED | {"ogrs3_2yr", "first_sanction_age", "age"})
    # removed as weak or inverse predictors of reoffending (violence, seriousness, rising offending)
    assert not scored & {"violence_12m", "seriousness_max_36m", "seriousness_sum_36m", "trend_12m",
                         "days_since_release"}


def test_default_bands_are_monotone_more_history_never_scores_less():
    for component in COMPONENTS.values():
        for term in [component, *component.get("plus", [])]:
            if "bands" in term:
                got = [b["points"] for b in term["bands"]]
                assert got == (sorted(got) if "min" in term["bands"][0] else sorted(got, reverse=True)), term["feature"]


def test_the_default_refuses_a_protected_characteristic_in_its_career_component(tmp_path):
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace('feature = "sanctions_total"', 'feature = "age"', 1)
    message = _error(tmp_path, text)
    assert message.startswith("rules.toml: components.career.feature: refers to 'age', a protected characteristic")


def test_criminal_career_sanctions_and_copas_rate():
    sanctions, copas = COMPONENTS["career"]["bands"], COMPONENTS["career"]["plus"][0]["bands"]
    row = scored_one(sanctions_total=5, copas_rate=-0.4123)
    assert band_points(sanctions, 5) == 15 and band_points(copas, -0.4123) == 16  # min 4 and min -0.5 reached
    assert points(row) == {"career": 15 + 16}
    assert row["reasons"] == ("5 sanctions on record (police and PNC): +15\n"
                              "rate of sanctions over the criminal career (Copas rate -0.41): +16")
    # one sanction, no career yet: ln(1/10) = -2.30 is below the lowest rate band
    first = scored_one(sanctions_total=1, copas_rate=-2.302585)
    assert first["points_career"] == band_points(sanctions, 1) == 5
    assert first["reasons"] == "1 sanction on record (police and PNC): +5"
    assert scored_one(sanctions_total=0, copas_rate=-2.302585)["points_career"] == 0
    assert scored_one(sanctions_total=40, copas_rate=1.3)["points_career"] == 30 + 20  # the top bands
    assert scored_one(sanctions_total=None, copas_rate=None)["points_career"] == 0


def test_recency():
    bands = COMPONENTS["recency"]["bands"]
    assert bands[0] == {"max": 91, "points": 12}  # the lines below read this band
    row = scored_one(days_since_last_offence=20, last_offence_date=None)
    assert points(row) == {"recency": 12}
    assert row["reasons"] == "last offence 20 days ago: +12"
    assert scored_one(days_since_last_offence=1)["reasons"] == "last offence 1 day ago: +12"
    for days in (31, 91, 92, 182, 365, 366, 730, 731, 2000):
        assert scored_one(days_since_last_offence=days)["points_recency"] == band_points(bands, days)
    assert scored_one(days_since_last_offence=91)["points_recency"] == 12  # max = 91 inclusive
    assert scored_one(days_since_last_offence=730)["points_recency"] == 2
    assert scored_one(days_since_last_offence=731)["points_recency"] == 0
    none = scored_one(days_since_last_offence=None)
    assert none["points_recency"] == 0 and none["reasons"] == ""


def test_frequency_bands():
    bands = COMPONENTS["frequency"]["bands"]
    assert bands[1] == {"min": 4, "points": 10}
    row = scored_one(offences_12m=4, offences_3m=3)
    assert points(row) == {"frequency": 10}  # offences in 3 months earn nothing of their own in 2.0.0
    assert row["reasons"] == "4 offences in the last 12 months: +10"
    assert scored_one(offences_12m=1)["points_frequency"] == 0
    assert scored_one(offences_12m=12)["points_frequency"] == band_points(bands, 12) == 20


def test_neighbourhood_crime_per_offence_capped():
    rule = COMPONENTS["neighbourhood"]
    assert scored_one(neighbourhood_12m=2)["points_neighbourhood"] == 2 * rule["per"] == 6
    assert scored_one(neighbourhood_12m=9)["points_neighbourhood"] == rule["cap"] == 9
    row = scored_one(neighbourhood_12m=1)
    assert row["reasons"].startswith("1 neighbourhood crime (") and row["reasons"].endswith(": +3")


def test_release_points_only_while_in_custody_with_release_due():
    rule = COMPONENTS["release"]
    due = scored_one(in_custody=True, release_due_90d=True, days_until_release=20)
    assert due["points_release"] == rule["points"] == 10
    assert due["reasons"] == "in custody, release due within 90 days: +10"
    # a recent release earns nothing in 2.0.0 (no information among people in the community)
    assert scored_one(days_since_release=45)["points_release"] == 0


def test_supervision_by_type_and_compliance():
    rule = COMPONENTS["supervision"]
    breaches, recalls, drugs = rule["plus"]
    row = scored_one(under_supervision=True, supervision_type="licence", breaches_12m=2, recalls_12m=3,
                     positive_drug_tests_12m=5)
    expected = (
        rule["by_value"]["licence"]  # 4
        + min(2 * breaches["per"], breaches["cap"])  # 4
        + min(3 * recalls["per"], recalls["cap"])  # capped at 4
        + min(5 * drugs["per"], drugs["cap"])  # capped at 6
    )
    assert expected == 18
    assert row["points_supervision"] == expected
    assert row["reasons"].split("\n") == [
        "under probation supervision (licence): +4",
        "2 breaches of supervision in the last 12 months: +4",
        "3 recalls to custody in the last 12 months: +4",
        "5 positive drug tests in the last 12 months: +6",
    ]
    assert scored_one(supervision_type="community_order", under_supervision=True)["points_supervision"] == 4
    assert scored_one(supervision_type="none")["points_supervision"] == 0


def test_score_is_the_sum_and_reasons_follow_component_order():
    row = scored_one(days_since_last_offence=100, offences_12m=2, sanctions_total=3, copas_rate=-1.2,
                     neighbourhood_12m=1, violence_12m=4, seriousness_max_36m=4, under_supervision=True,
                     supervision_type="pss")
    # career: 3 sanctions -> min 2 (10), rate -1.2 -> min -1.5 (8); recency: 100 days -> max 182 (8);
    # frequency: 2 -> 5; neighbourhood 1 x 3; violence and gravity score nothing; supervision pss 4
    assert points(row) == {"career": 18, "recency": 8, "frequency": 5, "neighbourhood": 3, "supervision": 4}
    assert row["score"] == 18 + 8 + 5 + 3 + 4
    assert [line.split(":")[0] for line in row["reasons"].split("\n")] == [
        "3 sanctions on record (police and PNC)",
        "rate of sanctions over the criminal career (Copas rate -1.2)",
        "last offence 100 days ago",
        "2 offences in the last 12 months",
        "1 neighbourhood crime (burglary, robbery, theft from the person, vehicle crime) in the last 12 months",
        "under probation supervision (pss)",
    ]


# --- term mechanisms the default no longer uses, on the 1.0.0 rule set kept in rules/examples ---


def scored_1_0(**features) -> dict:
    return score(feature_frame([feature_row(**features)]), RULES_1_0).to_dicts()[0]


def test_a_second_term_adds_to_the_first():
    main, plus = COMPONENTS_1_0["frequency"], COMPONENTS_1_0["frequency"]["plus"][0]
    assert main["bands"][1]["min"] == 4 and plus["per"] == 2 and plus["cap"] == 10
    row = scored_1_0(offences_12m=4, offences_3m=3)
    expected_12m = main["bands"][1]["points"]  # 4 reaches min 4, not min 7
    expected_3m = min(3 * plus["per"], plus["cap"])  # 3 x 2 = 6, under the cap
    assert row["points_frequency"] == expected_12m + expected_3m
    assert row["reasons"] == (
        f"4 offences in the last 12 months: +{expected_12m}\n3 offences in the last 3 months: +{expected_3m}"
    )
    capped = scored_1_0(offences_12m=12, offences_3m=9)
    assert capped["points_frequency"] == band_points(main["bands"], 12) + plus["cap"]
    assert scored_1_0(offences_12m=1, offences_3m=1)["reasons"] == "1 offence in the last 3 months: +2"


def test_gravity_max_and_sum():
    main, plus = COMPONENTS_1_0["gravity"], COMPONENTS_1_0["gravity"]["plus"][0]
    row = scored_1_0(seriousness_max_36m=4, seriousness_sum_36m=25)
    assert row["points_gravity"] == band_points(main["bands"], 4) + band_points(plus["bands"], 25) == 10 + 8
    assert row["reasons"] == (
        "most serious offence in the last 3 years has gravity 4 of 4: +10\n"
        "offences in the last 3 years add up to gravity 25: +8"
    )
    assert scored_1_0(seriousness_max_36m=2, seriousness_sum_36m=11)["points_gravity"] == 0


def test_violence_per_offence_capped():
    rule = COMPONENTS_1_0["violence"]
    assert scored_1_0(violence_12m=2)["points_violence"] == 2 * rule["per"] == 6
    assert scored_1_0(violence_12m=10)["points_violence"] == rule["cap"] == 12
    assert scored_1_0(violence_12m=2)["reasons"] == "2 violent offences in the last 12 months: +6"


def test_trend_rising_only():
    bands = COMPONENTS_1_0["trend"]["bands"]
    assert scored_1_0(trend_12m=3)["points_trend"] == band_points(bands, 3) == 4
    assert scored_1_0(trend_12m=6)["points_trend"] == band_points(bands, 6) == 8
    assert scored_1_0(trend_12m=1)["points_trend"] == 0
    assert scored_1_0(trend_12m=-4)["points_trend"] == 0
    assert scored_1_0(trend_12m=3)["reasons"] == "3 more offences than in the 12 months before: +4"


def test_combine_max_counts_a_component_once():
    rule, plus = COMPONENTS_1_0["release"], COMPONENTS_1_0["release"]["plus"][0]
    assert rule["combine"] == "max"
    due = scored_1_0(in_custody=True, release_due_90d=True, days_until_release=20)
    assert due["points_release"] == rule["points"] == 10
    assert due["reasons"] == "in custody, release due within 90 days: +10"
    released = scored_1_0(days_since_release=45)
    assert released["points_release"] == plus["points"] == 10
    assert released["reasons"] == "released from custody 45 days ago: +10"
    both = scored_1_0(in_custody=True, release_due_90d=True, days_until_release=20, days_since_release=45)
    assert both["points_release"] == 10  # the larger term, not the sum
    assert both["reasons"] == "in custody, release due within 90 days: +10"  # only the term that counted
    assert scored_1_0(days_since_release=plus["max"] + 1)["points_release"] == 0
    assert scored_1_0(days_since_release=plus["max"])["points_release"] == 10


def test_short_sentences():
    rule = COMPONENTS_1_0["short_sentence"]
    assert scored_1_0(short_sentences_36m=1)["points_short_sentence"] == rule["per"] == 4
    assert scored_1_0(short_sentences_36m=3)["points_short_sentence"] == rule["cap"] == 8
    assert scored_1_0(short_sentences_36m=1)["reasons"] == (
        "1 custodial sentence of under 12 months in the last 3 years: +4"
    )


# --- eligibility -------------------------------------------------------------------------


def test_eligibility_reasons():
    rows = [
        feature_row(person_key="P01", deceased=True, age=15, mappa_level=3),  # first failing check wins
        feature_row(person_key="P02", age=17),
        feature_row(person_key="P03", mappa_level=2),
        feature_row(person_key="P04", mappa_level=3),
        feature_row(person_key="P05", in_custody=True, days_until_release=200, release_due_90d=False),
        feature_row(person_key="P06", in_custody=True, days_until_release=90, release_due_90d=True),
        feature_row(person_key="P07", in_custody=True, days_until_release=None),
        feature_row(person_key="P08", age=None, mappa_level=1),
        feature_row(person_key="P09", age=18, mappa_level=0),
    ]
    scored = score(feature_frame(rows), RULES)
    got = dict(zip(scored["person_key"], scored["ineligible_reason"], strict=True))
    assert got == {
        "P01": "deceased",
        "P02": "under 18",
        "P03": "MAPPA level 2",
        "P04": "MAPPA level 3",
        "P05": "in custody, release not due within 90 days",
        "P06": None,
        "P07": "in custody, release not due within 90 days",
        "P08": None,
        "P09": None,
    }
    assert scored["eligible"].to_list() == [r is None for r in got.values()]
    codes = dict(zip(scored["person_key"], scored["ineligible_code"], strict=True))
    assert codes == {
        "P01": "deceased", "P02": "under_min_age", "P03": "mappa_level", "P04": "mappa_level",
        "P05": "long_custody", "P06": None, "P07": "long_custody", "P08": None, "P09": None,
    }
    assert set(codes.values()) - {None} <= {reason.value for reason in EligibilityReason}


def test_areas_in_scope(tmp_path):
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace("areas = []", 'areas = ["Northgate"]')
    rules = load_rules(str(_write(tmp_path, text)))
    scored = score(feature_frame([feature_row(person_key="P1"), feature_row(person_key="P2", area="Southmoor"),
                                  feature_row(person_key="P3", area=None)]), rules)
    assert scored["ineligible_reason"].to_list() == [None, "area not in scope", "area not in scope"]
    assert scored["ineligible_code"].to_list() == [None, "out_of_area", "out_of_area"]


def _leaving_reasons(current: pl.DataFrame, previous: pl.DataFrame) -> dict:
    moves = movement(current, previous, "R0001-2026-05-01")
    return dict(moves.filter(pl.col("status") == "leaving").select("person_key", "reason").iter_rows())


def test_movement_follows_the_eligibility_code_whatever_the_sentence_says():
    frame = feature_frame([
        person("P1", "Northgate", 5, 10, deceased=True),
        person("P2", "Northgate", 5, 10, in_custody=True, days_until_release=400),
        person("P3", "Northgate", 5, 10, mappa_level=2),
        person("P4", "Southmoor", 5, 10),  # eligible, in another area now
    ])
    ranked = select_cohorts(score(frame, RULES), RULES).ranked
    previous = pl.DataFrame({"cohort": ["priority"] * 4, "person_key": ["P1", "P2", "P3", "P4"],
                             "area": ["Northgate"] * 4, "score": [40] * 4})
    expected = {"P1": "deceased", "P2": "long custody", "P3": "no longer eligible: MAPPA level 2",
                "P4": "moved out of area (Northgate to Southmoor)"}
    assert _leaving_reasons(ranked, previous) == expected
    # The sentences reworded, one of them naming the words a substring match would have seen:
    # the leavers' reasons follow the codes, and only the generic one quotes the new sentence.
    reworded = ranked.with_columns(pl.col("ineligible_reason").replace_strict({
        "deceased": "died", "in custody, release not due within 90 days": "serving a long sentence",
        "MAPPA level 2": "MAPPA level 2 (deceased partner, custody history)"}, default=None))
    expected["P3"] = "no longer eligible: MAPPA level 2 (deceased partner, custody history)"
    assert _leaving_reasons(reworded, previous) == expected


# --- selection ---------------------------------------------------------------------------


def person(key: str, area: str, offences_12m: int, days: int | None, **extra) -> dict:
    """Scores follow from recency and frequency (and the criminal career when `extra` gives it)."""
    return feature_row(person_key=key, area=area, offences_12m=offences_12m, days_since_last_offence=days, **extra)


def test_capacity_min_score_ties_and_notes(tmp_path):
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace(
        "default_capacity = 40", "default_capacity = 2"
    ).replace('# "Northgate" = 60', '"Southmoor" = 1')
    rules = load_rules(str(_write(tmp_path, text)))
    # default bands: recency 10 days -> 12, 100 days -> 8; offences_12m 7 -> 15, 4 -> 10;
    # 4 sanctions -> 15
    h = {"sanctions_total": 4}
    frame = feature_frame([
        person("P05", "Northgate", 7, 10, **h),  # 15 + 12 + 15 = 42
        person("P04", "Northgate", 4, 10, **h),  # 10 + 12 + 15 = 37
        person("P03", "Northgate", 4, 10, **h),  # 37: same score, offences and days as P04 -> key order
        person("P02", "Northgate", 4, 100, **h),  # 10 + 8 + 15 = 33
        person("P01", "Northgate", 0, None),  # 0
        person("P10", "Southmoor", 7, 100, **h),  # 15 + 8 + 15 = 38
        person("P11", "Southmoor", 7, 10, **h),  # 42
        person("P12", "Southmoor", 4, 10, deceased=True),
    ])
    ranked = select_cohorts(score(frame, rules), rules).ranked
    rows = {r["person_key"]: r for r in ranked.to_dicts()}
    assert [r["score"] for r in ranked.head(6).to_dicts()] == [42, 42, 38, 37, 37, 33]
    # ties on score 42: offences_12m equal (7), days equal (10) -> person_key P05 before P11
    assert ranked["person_key"].to_list() == ["P05", "P11", "P10", "P03", "P04", "P02", "P01", "P12"]
    assert ranked["rank"].to_list() == [1, 2, 3, 4, 5, 6, 7, None]
    assert [rows[k]["area_rank"] for k in ("P05", "P03", "P04", "P02", "P01")] == [1, 2, 3, 4, 5]
    assert [rows[k]["area_rank"] for k in ("P11", "P10")] == [1, 2]
    assert {k for k, r in rows.items() if r["priority"]} == {"P05", "P03", "P11"}
    assert rows["P04"]["selection_note"] == "area capacity 2 reached"
    assert rows["P10"]["selection_note"] == "area capacity 1 reached"
    assert rows["P01"]["selection_note"] == "below minimum score 30"
    assert rows["P12"]["selection_note"] == "not eligible: deceased"
    assert rows["P05"]["selection_note"] is None
    stats = select_cohorts(score(frame, rules), rules).stats
    assert stats.priority_by_area["Northgate"].selected == 2
    assert stats.priority_by_area["Northgate"].capacity == 2
    assert stats.to_dict()["priority_by_area"]["Southmoor"] == {
        "selected": 1, "capacity": 1, "eligible": 2, "reaching_min_score": 2, "super_prolific": 0}
    assert stats.eligible == 7 and stats.ineligible == {"deceased": 1}


def test_ties_break_on_offences_then_recency_then_key():
    # Three people on 37 points (frequency + recency + 4 sanctions):
    frame = feature_frame([
        person("PA", "Northgate", 10, 200, sanctions_total=7),  # 20 + 5 + 20 = 45
        person("PB", "Northgate", 7, 100, sanctions_total=2),  # 15 + 8 + 10 = 33
        person("PC", "Northgate", 4, 80, sanctions_total=4),  # 10 + 12 + 15 = 37
        person("PD", "Northgate", 4, 60, sanctions_total=4),  # 37, more recent than PC
        person("PE", "Northgate", 5, 91, sanctions_total=4),  # 37, more offences
    ])
    ranked = select_cohorts(score(frame, RULES), RULES).ranked
    assert ranked["score"].to_list() == [45, 37, 37, 37, 33]
    assert ranked["person_key"].to_list() == ["PA", "PE", "PD", "PC", "PB"]


def test_ranking_is_the_same_beyond_the_packed_key_budgets():
    # days beyond 2**20 cannot be packed into the fast sort key: the plain sort must agree
    frame = feature_frame([
        person("PZ", "Northgate", 3, 3_000_000),
        person("PY", "Northgate", 3, 2_999_999),
        person("PX", "Northgate", 3, None),
        person("PW", "Northgate", 4, 3_000_001),
    ])
    ranked = select_cohorts(score(frame, RULES), RULES).ranked
    assert ranked["person_key"].to_list() == ["PW", "PY", "PZ", "PX"]
    assert ranked["rank"].to_list() == [1, 2, 3, 4]


def test_super_prolific_and_cohort_types():
    frame = feature_frame([
        person("P1", "Northgate", 12, 5, neighbourhood_12m=3),  # super-prolific, Fixed
        person("P2", "Northgate", 10, 5),  # super-prolific, Flex
        person("P3", "Northgate", 9, 5, sanctions_total=2),  # not super-prolific; 15 + 12 + 10 = 37
        person("P4", "Northgate", 11, 5, mappa_level=2),  # not eligible: never flagged
        person("P5", "Northgate", 1, 5, offences_3m=1),  # low score, not a member
    ])
    result = select_cohorts(score(frame, RULES), RULES)
    rows = {r["person_key"]: r for r in result.ranked.to_dicts()}
    assert {k for k, r in rows.items() if r["super_prolific"]} == {"P1", "P2"}
    assert rows["P1"]["cohort_type"] == "Fixed" and rows["P2"]["cohort_type"] == "Flex"
    assert rows["P3"]["cohort_type"] == "Flex"  # a priority member without neighbourhood crime
    assert rows["P5"]["cohort_type"] is None and rows["P4"]["cohort_type"] is None
    # share of counted offences in 12 months among all assessed: (12 + 10) / (12 + 10 + 9 + 11 + 1)
    assert result.stats.super_prolific == 2
    assert result.stats.super_prolific_offences_12m == 22
    assert result.stats.offences_12m == 43
    assert result.stats.super_prolific_offence_share == pytest.approx(22 / 43)


def test_super_prolific_regardless_of_capacity(tmp_path):
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace("default_capacity = 40", "default_capacity = 0")
    rules = load_rules(str(_write(tmp_path, text)))
    result = select_cohorts(score(feature_frame([person("P1", "Northgate", 15, 5)]), rules), rules)
    row = result.ranked.to_dicts()[0]
    assert row["priority"] is False and row["super_prolific"] is True
    assert row["selection_note"] == "area capacity 0 reached"


def test_release_watch_lists_those_reaching_min_score_on_release():
    frame = feature_frame([
        # due out in 30 days; 6 offences in 12 months (10) + 7 sanctions (20) + release due (10) = 40,
        # and 30 once out (the release points are for the time inside)
        feature_row(person_key="P1", in_custody=True, release_due_90d=True, days_until_release=30,
                    custody_type_at_d="sentenced", offences_12m=6, sanctions_total=7),
        # due out but scores 5 on release: not listed
        feature_row(person_key="P2", in_custody=True, release_due_90d=True, days_until_release=30, offences_12m=2),
        # not due within 90 days: ineligible and not watched
        feature_row(person_key="P3", in_custody=True, release_due_90d=False, days_until_release=300, offences_12m=9),
    ])
    result = select_cohorts(score(frame, RULES), RULES)
    watch = result.release_watch.to_dicts()
    assert [w["person_key"] for w in watch] == ["P1"]
    assert watch[0]["score"] == 10 + 20 + 10 and watch[0]["score_if_released"] == 10 + 20
    assert watch[0]["reasons_if_released"] == (
        "7 sanctions on record (police and PNC): +20\n6 offences in the last 12 months: +10")
    assert result.stats.release_watch == 1


def test_same_input_identical_output_and_row_order_does_not_matter():
    rows = [person(f"P{i:02d}", ["Northgate", "Southmoor"][i % 2], i % 9, (i * 37) % 400) for i in range(40)]
    frame = feature_frame(rows)
    first = select_cohorts(score(frame, RULES), RULES)
    second = select_cohorts(score(frame, RULES), RULES)
    shuffled = select_cohorts(score(frame.sample(fraction=1.0, shuffle=True, seed=7), RULES), RULES)
    assert_frame_equal(first.ranked, second.ranked)
    assert_frame_equal(first.ranked, shuffled.ranked)
    assert_frame_equal(first.release_watch, shuffled.release_watch)
    assert first.stats == shuffled.stats


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_ineligible_people_follow_the_ranked_ones_in_person_key_order_whatever_the_input_order(seed):
    # the run hands the features over unsorted; the ranking alone must fix the order
    rows = [person(f"P{i:02d}", "Northgate", i % 7, (i * 53) % 300) for i in range(12)]
    rows += [person(f"P{i:02d}", "Northgate", 9, 5, deceased=True) for i in range(12, 18)]
    rows += [person(f"P{i:02d}", "Southmoor", 12, 3, age=16) for i in range(18, 24)]
    frame = feature_frame(rows).sample(fraction=1.0, shuffle=True, seed=seed)
    ranked = select_cohorts(score(frame, RULES), RULES).ranked
    eligible = ranked.filter(pl.col("eligible"))
    assert ranked.head(eligible.height)["eligible"].all()
    assert eligible["rank"].to_list() == list(range(1, eligible.height + 1))
    tail = ranked.tail(ranked.height - eligible.height)
    assert tail["person_key"].to_list() == [f"P{i:02d}" for i in range(12, 24)]
    assert tail["rank"].is_null().all()


@settings(max_examples=40, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 16**12 - 1), min_size=2, max_size=40, unique=True),
    deceased=st.lists(st.booleans(), min_size=40, max_size=40),
    seed=st.integers(0, 10_000),
)
def test_ties_and_the_ineligible_follow_linker_person_keys_in_text_order(numbers, deceased, seed):
    # keys in the linker's form (P and 12 hex digits) take the numeric shortcut: same order as the text
    keys = [f"P{n:012X}" for n in numbers]
    rows = [person(k, "Northgate", 3, 20, deceased=d) for k, d in zip(keys, deceased, strict=False)]
    frame = feature_frame(rows).sample(fraction=1.0, shuffle=True, seed=seed)
    ranked = select_cohorts(score(frame, RULES), RULES).ranked
    eligible = ranked.filter(pl.col("eligible"))
    ineligible = ranked.filter(~pl.col("eligible"))
    assert ranked["person_key"].to_list() == eligible["person_key"].to_list() + ineligible["person_key"].to_list()
    # everyone eligible has the same score, offences and recency: person_key alone orders them
    assert eligible["person_key"].to_list() == sorted(eligible["person_key"].to_list())
    assert ineligible["person_key"].to_list() == sorted(ineligible["person_key"].to_list())


@settings(max_examples=60, deadline=None)
@given(
    people=st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", None]), st.integers(0, 14), st.one_of(st.none(), st.integers(0, 400)),
                  st.booleans()),
        min_size=1, max_size=60,
    ),
    default_capacity=st.integers(0, 10),
    capacity_a=st.integers(0, 10),
    min_score=st.integers(0, 60),
)
def test_capacity_is_never_exceeded(people, default_capacity, capacity_a, min_score):
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace(
        "default_capacity = 40", f"default_capacity = {default_capacity}"
    ).replace('# "Northgate" = 60', f'"A" = {capacity_a}').replace("min_score = 30", f"min_score = {min_score}")
    rules = _rules_from_text(text)
    frame = feature_frame([
        person(f"P{i:03d}", area, offences, days, deceased=dead) for i, (area, offences, days, dead) in enumerate(people)
    ])
    ranked = select_cohorts(score(frame, rules), rules).ranked
    capacity = {"A": capacity_a}
    for area, group in ranked.group_by("area"):
        cap = capacity.get(area[0], default_capacity)
        chosen = group.filter(pl.col("priority"))
        assert chosen.height <= cap
        assert chosen["eligible"].all() and (chosen["score"] >= min_score).all()
        waiting = group.filter(pl.col("eligible") & ~pl.col("priority") & (pl.col("score") >= min_score))
        if waiting.height:
            assert chosen.height == cap  # someone qualifying was left out only because the area is full
            if chosen.height:
                assert chosen["score"].min() >= waiting["score"].max()
    eligible = ranked.filter(pl.col("eligible"))
    assert sorted(eligible["rank"].to_list()) == list(range(1, eligible.height + 1))


# --- rule-file errors --------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _rules_from_text(text: str):
    from rules.schema import parse_rules

    return parse_rules(text.encode("utf-8"), Path("rules.toml"))


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_rules(str(_write(tmp_path, text)))
    return str(info.value)


# The loader's checks, on the 1.0.0 rule file (its violence and combine = "max" terms give them something to break).
RULES_1_0_TEXT = RULES_1_0_PATH.read_text(encoding="utf-8")


def test_unknown_key_is_refused_with_its_path(tmp_path):
    text = RULES_1_0_TEXT.replace('title = "Recency"', 'title = "Recency"\nweight = 3')
    message = _error(tmp_path, text)
    assert message.startswith("rules.toml: components.recency.weight: unknown key; allowed:")


def test_unknown_section_is_refused(tmp_path):
    message = _error(tmp_path, RULES_1_0_TEXT + "\n[model]\nblend = 0.5\n")
    assert message.startswith("rules.toml: model: unknown key")


def test_band_points_must_be_a_whole_number(tmp_path):
    text = RULES_1_0_TEXT.replace("{min = 7, points = 24}", '{min = 7, points = "twenty"}')
    message = _error(tmp_path, text)
    assert message.startswith("rules.toml: components.frequency.bands[2].points: must be a whole number")


def test_bands_must_increase(tmp_path):
    text = RULES_1_0_TEXT.replace("{min = 4, points = 14}", "{min = 1, points = 14}")
    assert "components.frequency.bands[1].min: must be greater than the previous band's min" in _error(tmp_path, text)


def test_band_needs_min_or_max(tmp_path):
    text = RULES_1_0_TEXT.replace("{min = 4, points = 14}", "{at_least = 4, points = 14}")
    assert "components.frequency.bands[1]" in _error(tmp_path, text)


@pytest.mark.parametrize(
    "old, new, where, named",
    [
        ('feature = "violence_12m"', 'feature = "ethnicity"', "components.violence.feature", "ethnicity"),
        ('feature = "violence_12m"', 'feature = "sex"', "components.violence.feature", "sex"),
        ('feature = "violence_12m"', 'feature = "age"', "components.violence.feature", "age"),
        ('title = "Violence"', 'title = "Violence"\ngender = "F"', "components.violence.gender", "gender"),
        ("licence = 6,", 'licence = 6, religion = 2,', "components.supervision.by_value.religion", "religion"),
        ('feature = "violence_12m"', 'feature = "date_of_birth"', "components.violence.feature", "date_of_birth"),
    ],
)
def test_protected_characteristics_are_refused(tmp_path, old, new, where, named):
    assert old in RULES_1_0_TEXT
    message = _error(tmp_path, RULES_1_0_TEXT.replace(old, new, 1))
    assert message.startswith(f"rules.toml: {where}: refers to '{named}', a protected characteristic")


def test_unknown_feature_is_refused(tmp_path):
    text = RULES_1_0_TEXT.replace('feature = "violence_12m"', 'feature = "violence_99m"')
    assert "components.violence.feature: 'violence_99m' is not a scoring feature" in _error(tmp_path, text)


def test_other_errors_name_the_key(tmp_path):
    cases = [
        (RULES_1_0_TEXT.replace('"convicted", "pending"]', '"convicted", "arrested"]'), "counted_outcomes[5]"),
        (RULES_1_0_TEXT.replace("gravity = 2\n", "gravity = 9\n", 1), "unknown_offence.gravity"),
        (RULES_1_0_TEXT.replace("min_score = 30", "min_score = -1"), "cohorts.priority.min_score"),
        (RULES_1_0_TEXT.replace('combine = "max"', 'combine = "avg"'), "components.release.combine"),
        (RULES_1_0_TEXT.replace("cap = 16", "cap = 16\npoints = 3"), "components.neighbourhood"),
        (RULES_1_0_TEXT.replace('reason = "{value} violent', 'reason = "{who} violent'), "components.violence.reason"),
        (RULES_1_0_TEXT.replace("exclude_mappa_levels = [2, 3]", "exclude_mappa_levels = [4]"),
         "eligibility.exclude_mappa_levels[0]"),
        (RULES_1_0_TEXT.replace('[ruleset]\nname = "default_1_0_0"\n', "[ruleset]\n"), "ruleset.name: is required"),
    ]
    for text, needle in cases:
        assert needle in _error(tmp_path, text), needle


def test_not_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in _error(tmp_path, "[ruleset\nname = 1")
    with pytest.raises(ConfigError, match="rule file not found"):
        load_rules(str(tmp_path / "absent.toml"))


# --- changing the data changes the scores, no code involved ------------------------------------


def test_a_changed_weight_needs_no_code_change(tmp_path):
    text = RULES_1_0_TEXT.replace("{min = 4, points = 14}", "{min = 4, points = 40}").replace(
        'version = "1.0.0"', 'version = "1.0.1-local"')
    rules = load_rules(str(_write(tmp_path, text)))
    assert rules.version == "1.0.1-local" and rules.sha256 != RULES.sha256
    row = score(feature_frame([feature_row(offences_12m=5)]), rules).to_dicts()[0]
    assert row["points_frequency"] == 40 and row["reasons"] == "5 offences in the last 12 months: +40"


def test_a_rule_file_may_score_ogrs3_and_is_warned_about(tmp_path, caplog):
    head, tail = RULES_1_0_TEXT.split("# --- cohorts")
    text = head + '[components.ogrs3]\nfeature = "ogrs3_2yr"\nbands = [{min = 75, points = 5}]\n' \
        'reason = "OGRS3 two-year {value}%"\n\n# --- cohorts' + tail
    with caplog.at_level(logging.WARNING, logger="rules.schema"):
        rules = load_rules(str(_write(tmp_path, text)))
    assert "uses sex and age" in caplog.text
    row = score(feature_frame([feature_row(ogrs3_2yr=80.26)]), rules).to_dicts()[0]
    assert row["points_ogrs3"] == 5 and row["reasons"] == "OGRS3 two-year 80.3%: +5"
