"""OGRS3: worked examples computed by hand from the published coefficients, and band edges.

Coefficients (shared/reference/uk-justice-facts.md, as in MoJ's hmpps-arns-risk-actuarial-api):
c = 2.1217 (two-year), 1.40256 (one-year); Copas weight 1.25112; first-time 0.12614, repeat
0.46306; age/gender and offence terms from the tables there. Each example below writes the
arithmetic out and checks it against a value worked through by hand to four or five places.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from features.ogrs3 import ogrs3_band, ogrs3_band_expr, ogrs3_percent_expr, ogrs3_probability


def logistic(x: float) -> float:
    return math.exp(x) / (1 + math.exp(x))


def test_worked_example_repeat_male_domestic_burglary():
    # Male, 25 at the start of follow-up; 5 sanctions in all (4 previous); 24 at the current
    # sanction, 16 at the first; current offence domestic burglary.
    age_gender = -1.1667  # male 25-29
    copas = math.log((1 + 4) / (10 + 24 - 16))  # ln(5/18) = -1.28093
    assert copas == pytest.approx(-1.28093, abs=1e-5)
    status = 0.46306  # repeat
    offence = -0.1239  # domestic burglary
    s = age_gender + 1.25112 * copas + status + offence  # -1.1667 - 1.60260 + 0.46306 - 0.1239
    assert s == pytest.approx(-2.43014, abs=1e-5)
    two_year = logistic(2.1217 + s)  # exp(-0.30844) / (1 + exp(-0.30844)) = 0.73460 / 1.73460
    assert two_year == pytest.approx(0.42350, abs=1e-5)
    one_year = logistic(1.40256 + s)  # exp(-1.02758) / (1 + exp(-1.02758))
    assert one_year == pytest.approx(0.26355, abs=1e-5)

    kwargs = dict(age=25, sex="M", total_sanctions=5, age_at_current=24, age_at_first=16,
                  offence_group="domestic_burglary")
    assert ogrs3_probability(**kwargs) == pytest.approx(two_year, abs=1e-12)
    assert ogrs3_probability(**kwargs, years=1) == pytest.approx(one_year, abs=1e-12)
    assert ogrs3_band(100 * two_year) == "low"  # 42%


def test_worked_example_first_time_female_shoplifting():
    # Female, 19; first sanction (total 1, previous 0) at 19; shoplifting.
    copas = math.log((1 + 0) / (10 + 19 - 19))  # ln(1/10) = -2.30259
    s = -0.8975 + 1.25112 * copas + 0.12614 + 0.6612  # female 18-20, first-time, shoplifting
    assert s == pytest.approx(-2.99097, abs=1e-5)
    expected = logistic(2.1217 + s)  # exp(-0.86927) / (1 + exp(-0.86927)) = 0.41925 / 1.41925
    assert expected == pytest.approx(0.29541, abs=1e-5)
    got = ogrs3_probability(age=19, sex="F", total_sanctions=1, age_at_current=19, age_at_first=19,
                            offence_group="shoplifting")
    assert got == pytest.approx(expected, abs=1e-12)


def test_worked_example_older_male_robbery_one_and_two_years():
    # Male, 52; 30 sanctions; 51 at the current one, 14 at the first; robbery.
    copas = math.log(30 / (10 + 51 - 14))  # ln(30/47) = -0.44895
    s = -2.0253 + 1.25112 * copas + 0.46306 - 0.6348  # male 50+, repeat, robbery
    assert s == pytest.approx(-2.75873, abs=1e-5)
    assert logistic(2.1217 + s) == pytest.approx(0.34592, abs=1e-5)
    assert logistic(1.40256 + s) == pytest.approx(0.20486, abs=1e-5)
    kwargs = dict(age=52, sex="M", total_sanctions=30, age_at_current=51, age_at_first=14, offence_group="robbery")
    assert ogrs3_probability(**kwargs) == pytest.approx(0.34592, abs=1e-5)
    assert ogrs3_probability(**kwargs, years=1) == pytest.approx(0.20486, abs=1e-5)


def test_worked_example_young_prolific_theft_from_person_is_high():
    # Male, 20; 12 sanctions; 20 at the current one, 13 at the first; theft from the person.
    s = -0.6251 + 1.25112 * math.log(12 / (10 + 20 - 13)) + 0.46306 + 0.6612
    assert s == pytest.approx(0.06339, abs=1e-5)
    p = ogrs3_probability(age=20, sex="M", total_sanctions=12, age_at_current=20, age_at_first=13,
                          offence_group="theft_from_person")
    assert p == pytest.approx(0.89890, abs=1e-5)
    assert ogrs3_band(100 * p) == "high"  # 89.89% is still high: bands are on whole percentages


@pytest.mark.parametrize("sex", ["X", "U", None, "M"])
def test_sex_other_than_f_uses_the_male_table(sex):
    male = -1.326  # 30-34
    s = male + 1.25112 * math.log(3 / (10 + 31 - 25)) + 0.46306 + 0.205  # criminal damage
    got = ogrs3_probability(age=31, sex=sex, total_sanctions=3, age_at_current=31, age_at_first=25,
                            offence_group="criminal_damage")
    assert got == pytest.approx(logistic(2.1217 + s), abs=1e-12)


def test_female_table_differs_from_male():
    kwargs = dict(age=31, total_sanctions=3, age_at_current=31, age_at_first=25, offence_group="violence")
    female = logistic(2.1217 - 1.1291 + 1.25112 * math.log(3 / 16) + 0.46306 + 0.0)
    assert ogrs3_probability(sex="F", **kwargs) == pytest.approx(female, abs=1e-12)
    assert ogrs3_probability(sex="F", **kwargs) != pytest.approx(ogrs3_probability(sex="M", **kwargs))


@pytest.mark.parametrize(
    "age, term",
    [(10, 0.0), (11, 0.0), (12, 0.08392), (15, 0.07578), (17, -0.0616), (18, -0.6251), (20, -0.6251),
     (21, -1.0515), (24, -1.0515), (29, -1.1667), (30, -1.326), (39, -1.368), (40, -1.4997), (49, -1.4997),
     (50, -2.0253), (99, -2.0253)],
)
def test_male_age_band_edges(age, term):
    # First-time, violence (0), Copas ln(1/10): only the age term varies.
    s = term + 1.25112 * math.log(1 / 10) + 0.12614
    got = ogrs3_probability(age=age, sex="M", total_sanctions=1, age_at_current=age, age_at_first=age,
                            offence_group="violence")
    assert got == pytest.approx(logistic(2.1217 + s), abs=1e-12)


@pytest.mark.parametrize(
    "percent, band",
    [(0.0, "low"), (49.0, "low"), (49.99, "low"), (50.0, "medium"), (74.0, "medium"), (74.99, "medium"),
     (75.0, "high"), (89.99, "high"), (90.0, "very high"), (100.0, "very high"), (None, None)],
)
def test_band_edges(percent, band):
    assert ogrs3_band(percent) == band
    frame = pl.DataFrame({"p": [percent]}, schema={"p": pl.Float64})
    assert frame.select(ogrs3_band_expr(pl.col("p"))).item() == band


def test_vectorised_matches_scalar_and_gives_null_when_not_computable():
    rows = [
        dict(age=25, sex="M", total_sanctions=5, age_at_current=24, age_at_first=16, offence_group="domestic_burglary"),
        dict(age=19, sex="F", total_sanctions=1, age_at_current=19, age_at_first=19, offence_group="shoplifting"),
        dict(age=52, sex="U", total_sanctions=30, age_at_current=51, age_at_first=14, offence_group="robbery"),
        dict(age=9, sex="M", total_sanctions=1, age_at_current=9, age_at_first=9, offence_group="violence"),  # too young
        dict(age=30, sex="M", total_sanctions=0, age_at_current=None, age_at_first=None, offence_group=None),  # none
        dict(age=None, sex="M", total_sanctions=2, age_at_current=20, age_at_first=18, offence_group="fraud"),
    ]
    frame = pl.DataFrame(rows, schema={"age": pl.Int64, "sex": pl.Utf8, "total_sanctions": pl.Int64,
                                       "age_at_current": pl.Int64, "age_at_first": pl.Int64,
                                       "offence_group": pl.Utf8})
    got = frame.select(
        ogrs3_percent_expr(pl.col("age"), pl.col("sex"), pl.col("total_sanctions"), pl.col("age_at_current"),
                           pl.col("age_at_first"), pl.col("offence_group"))
    ).to_series().to_list()
    for row, value in zip(rows[:3], got[:3], strict=True):
        assert value == pytest.approx(100 * ogrs3_probability(**row), abs=1e-9)
    assert got[3:] == [None, None, None]


def test_scalar_refuses_inputs_outside_the_formula():
    with pytest.raises(ValueError):
        ogrs3_probability(age=9, sex="M", total_sanctions=1, age_at_current=9, age_at_first=9, offence_group="violence")
    with pytest.raises(ValueError):
        ogrs3_probability(age=30, sex="M", total_sanctions=2, age_at_current=20, age_at_first=31,
                          offence_group="violence")
    with pytest.raises(ValueError):
        ogrs3_probability(age=30, sex="M", total_sanctions=2, age_at_current=30, age_at_first=20,
                          offence_group="arson")
