"""The synthetic world behaves like the real one, and its truth agrees with its records.

Each figure is computed here from the files the generator wrote (extracts and truth), with the
published regularities as the expectation (docs/synthetic-data.md): the age-crime curve, the
heavy tail, persistence with regression to the mean, OGRS3's ranking of two-year proven
reoffending, that a plain count of recent offences does not beat it, that violence does not
drive frequency, proven reoffending after sanctions and short sentences.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata

from pipeline.identifiers import pnc_normal_form
from synthetic import PastDecisions, generate_extracts

EXTRACT_DATE = date(2026, 10, 31)
PEOPLE = 30_000


def auc(score, outcome) -> float:
    score, outcome = np.asarray(score, dtype=float), np.asarray(outcome, dtype=bool)
    ranks = rankdata(score)
    pos, neg = outcome.sum(), (~outcome).sum()
    return float((ranks[outcome].sum() - pos * (pos + 1) / 2) / (pos * neg))


def read(e) -> pl.DataFrame:
    if e.format == "parquet":
        df = pl.read_parquet(e.path)
    else:
        df = pl.read_csv(e.path.read_bytes().decode(e.encoding).encode(), separator=e.delimiter, infer_schema=False)
    df = df.rename(e.column_mapping)
    dates = [c for c in df.columns if c.endswith("_date") or c in ("date_of_birth", "supervision_start", "supervision_end")]
    return df.with_columns([pl.col(c).str.strptime(pl.Date, e.date_formats[0], strict=False) for c in dates])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    data = generate_extracts(root / "extracts", PEOPLE, 3, EXTRACT_DATE, fault_rate=0.0,
                             past_decisions=PastDecisions())
    x = {e.name: read(e) for e in data.extracts}
    t = {name: pl.read_parquet(root / "truth" / f"{name}.parquet")
         for name in ("people", "offending_by_year", "sanctions", "identities")}
    return data, x, t, root


def _ids(t, source: str, column: str) -> pl.DataFrame:
    return (t["identities"].filter(pl.col("source") == source)
            .select(pl.col("record_id").alias(column), "person_id", "corruptions"))


def test_the_age_crime_curve_peaks_young_and_declines(world):
    _, _, t, _ = world
    people = t["people"].select("person_id", "date_of_birth")
    years = pl.DataFrame({"year": list(range(EXTRACT_DATE.year - 9, EXTRACT_DATE.year))})
    exposure = (people.join(years, how="cross")
                .with_columns(((pl.date(pl.col("year"), 7, 1) - pl.col("date_of_birth")).dt.total_days() / 365.25)
                              .floor().alias("age"))
                .filter(pl.col("age") >= 10))
    offences = exposure.join(t["offending_by_year"], on=["person_id", "year"], how="left").fill_null(0)
    bands = offences.with_columns(pl.col("age").cut([14, 17, 21, 25, 30, 35, 45, 55]).alias("band")).group_by("band").agg(
        (pl.col("offences").sum() / pl.len()).alias("rate"), pl.col("age").min().alias("lo")).sort("lo")
    rate = dict(zip(bands["lo"].to_list(), bands["rate"].to_list(), strict=True))
    peak_age = max(rate, key=rate.get)
    assert 15 <= peak_age <= 25, rate
    assert rate[36] < 0.5 * rate[peak_age] and rate[46] < rate[36] and rate[56] < rate[46], rate
    assert rate[10] < rate[peak_age]


def test_offending_is_heavy_tailed(world):
    _, x, t, _ = world
    true = t["people"]["offences_in_window"].sort(descending=True)
    assert true.head(PEOPLE // 20).sum() > 0.4 * true.sum()  # the top 5% commit over 40%
    recorded = x["police_offences"].group_by("police_person_id").len()["len"].sort(descending=True)
    assert recorded.head(PEOPLE // 10).sum() > 0.5 * recorded.sum()
    assert (t["people"]["offences_in_window"] == 0).mean() > 0.2  # and many offend little or not at all


def test_offending_persists_and_regresses_towards_the_mean(world):
    _, _, t, _ = world
    by = t["offending_by_year"].pivot(on="year", index="person_id", values="offences").fill_null(0)
    last, this = str(EXTRACT_DATE.year - 3), str(EXTRACT_DATE.year - 2)
    everyone = t["people"].select("person_id").join(by, on="person_id", how="left").fill_null(0)
    top = everyone.sort(last, descending=True).head(PEOPLE // 100)
    mean_next = everyone[this].mean()
    assert top[this].mean() > 3 * mean_next  # persistence: past frequency predicts future frequency
    assert top[this].mean() < 0.8 * top[last].mean()  # regression to the mean after a peak


def _follow_up(x, t):
    """Probation assessments with two years of follow-up: OGRS3, a count of recent police
    offences, and the outcome (a proven reoffence: committed within two years, sanctioned
    within a further six months, in any area)."""
    cases = (x["probation_cases"].filter(pl.col("ogrs3_2yr").is_not_null()
                                         & (pl.col("assessment_date") <= EXTRACT_DATE - timedelta(days=910)))
             .join(_ids(t, "probation_cases", "crn"), on="crn")
             .select("person_id", "assessment_date", pl.col("ogrs3_2yr").cast(pl.Float64).alias("ogrs3"))
             .with_row_index("case"))
    sanctions = t["sanctions"].select("person_id", "offence_date", "sanction_date")
    outcome = (cases.join(sanctions, on="person_id", how="left")
               .with_columns(((pl.col("offence_date") > pl.col("assessment_date"))
                              & (pl.col("offence_date") <= pl.col("assessment_date") + timedelta(days=730))
                              & (pl.col("sanction_date") <= pl.col("assessment_date") + timedelta(days=910)))
                             .fill_null(False).alias("y"))
               .group_by("case").agg(pl.col("y").any()))
    police = x["police_offences"].join(_ids(t, "police_nominals", "police_person_id"), on="police_person_id")
    recent = (cases.join(police.select("person_id", "offence_date"), on="person_id", how="left")
              .with_columns(((pl.col("offence_date") <= pl.col("assessment_date"))
                             & (pl.col("offence_date") > pl.col("assessment_date") - timedelta(days=365)))
                            .fill_null(False).alias("w"))
              .group_by("case").agg(pl.col("w").sum().alias("count_12m")))
    return cases.join(outcome, on="case").join(recent, on="case").sort("case")


def test_probation_ogrs3_ranks_two_year_proven_reoffending_as_published(world):
    _, x, t, _ = world
    f = _follow_up(x, t)
    assert f.height > 1000
    assert 0.3 < f["y"].mean() < 0.8
    assert 0.70 <= auc(f["ogrs3"], f["y"]) <= 0.84


def test_a_plain_count_of_recent_offences_does_not_rank_the_future_much_better_than_ogrs3(world):
    # the rules-free property: the world must not reward counting what our rules count
    _, x, t, _ = world
    f = _follow_up(x, t)
    assert auc(f["count_12m"], f["y"]) <= auc(f["ogrs3"], f["y"]) + 0.02


def test_violence_and_seriousness_do_not_drive_future_frequency(world):
    _, x, t, _ = world
    from features.reference import load_offence_reference

    ref = load_offence_reference().select("ho_offence_code", "violence", "gravity")
    split = EXTRACT_DATE - timedelta(days=3 * 365)
    offences = x["police_offences"].join(ref, on="ho_offence_code")
    past = (offences.filter((pl.col("offence_date") <= split) & (pl.col("offence_date") > split - timedelta(days=365)))
            .group_by("police_person_id").agg(pl.len().alias("n"), pl.col("violence").any(),
                                              pl.col("gravity").max()))
    future = (offences.filter(pl.col("offence_date") > split).group_by("police_person_id").len()
              .rename({"len": "future"}))
    one = past.filter(pl.col("n") == 1).join(future, on="police_person_id", how="left").fill_null(0)
    violent, other = one.filter(pl.col("violence"))["future"].mean(), one.filter(~pl.col("violence"))["future"].mean()
    serious, minor = one.filter(pl.col("gravity") >= 3)["future"].mean(), one.filter(pl.col("gravity") <= 2)["future"].mean()
    assert violent <= 1.15 * other and serious <= 1.15 * minor, (violent, other, serious, minor)


def _reoffended_within_a_year(index: pl.DataFrame, t) -> float:
    sanctions = t["sanctions"].select("person_id", "offence_date", "sanction_date")
    return (index.join(sanctions, on="person_id", how="left")
            .with_columns(((pl.col("offence_date") > pl.col("index"))
                           & (pl.col("offence_date") <= pl.col("index") + timedelta(days=365))
                           & (pl.col("sanction_date") <= pl.col("index") + timedelta(days=547))).fill_null(False).alias("y"))
            .group_by("person_id").agg(pl.col("y").any())["y"].mean())


def test_proven_reoffending_is_about_a_quarter_and_higher_after_short_sentences(world):
    _, x, t, _ = world
    start, end = EXTRACT_DATE - timedelta(days=3 * 365), EXTRACT_DATE - timedelta(days=2 * 365)
    adult = t["people"].select("person_id", "date_of_birth")
    is_adult = (pl.col("index") - pl.col("date_of_birth")).dt.total_days() >= 18 * 365.25
    sanctioned = (t["sanctions"].filter(pl.col("sanction_date").is_between(start, end, closed="left"))
                  .group_by("person_id").agg(pl.col("sanction_date").min().alias("index"))
                  .join(adult, on="person_id").filter(is_adult))
    released = (x["prison_custody"].filter((pl.col("custody_type") == "sentenced")
                                          & pl.col("release_date").is_between(start, end, closed="left")
                                          & (pl.col("sentence_days").cast(pl.Int64) < 365))
                .join(_ids(t, "prison_custody", "nomis_id"), on="nomis_id")
                .group_by("person_id").agg(pl.col("release_date").min().alias("index"))
                .join(adult, on="person_id").filter(is_adult))
    general, short = _reoffended_within_a_year(sanctioned, t), _reoffended_within_a_year(released, t)
    assert 0.18 <= general <= 0.4, general
    assert short >= 1.4 * general and short <= 0.75, (general, short)


def test_the_pnc_history_reaches_beyond_the_local_extract(world):
    _, x, t, _ = world
    people = t["people"]
    # careers begin before the force's records and some offending is elsewhere
    assert (people["sanctions_before_window"] > 0).mean() > 0.1
    assert (people["offences_in_window_in_area"] < people["offences_in_window"]).mean() > 0.1
    cases = x["probation_cases"].join(_ids(t, "probation_cases", "crn"), on="crn")
    assert (cases["first_sanction_date"] < EXTRACT_DATE - timedelta(days=3653)).mean() > 0.2


def test_the_truth_agrees_with_the_records(world):
    _, x, t, _ = world
    people = t["people"]
    nominals = x["police_nominals"].join(_ids(t, "police_nominals", "police_person_id"), on="police_person_id")
    assert nominals.height == x["police_nominals"].height == people["in_police_index"].sum()
    n = nominals.join(people, on="person_id", suffix="_true")
    assert (n["date_of_birth"] == n["date_of_birth_true"]).all()
    assert (n["police_person_id"] == n["police_person_id_true"]).all()
    held = n.filter(pl.col("pnc_id").is_not_null())
    assert (held["pnc_id"].map_elements(pnc_normal_form, return_dtype=pl.String)
            == held["pnc_id_true"].map_elements(pnc_normal_form, return_dtype=pl.String)).all()

    for source, key in (("probation_cases", "crn"), ("prison_custody", "nomis_id")):
        records = x[source].join(_ids(t, source, key), on=key, how="left")
        assert records["person_id"].null_count() == 0, source
        r = records.join(people.select("person_id", "date_of_birth", "pnc_id"), on="person_id", suffix="_true")
        flag = lambda kind: pl.col("corruptions").str.contains(kind)  # noqa: B023, E731
        clean_dob = r.filter(~flag("dob_"))
        assert (clean_dob["date_of_birth"] == clean_dob["date_of_birth_true"]).all(), source
        assert r.filter(flag("dob_missing"))["date_of_birth"].null_count() == r.filter(flag("dob_missing")).height
        moved = r.filter(flag("dob_transposed") | flag("dob_digit"))
        assert moved.height > 0 and (moved["date_of_birth"] != moved["date_of_birth_true"]).all(), source
        normal = lambda c: pl.col(c).map_elements(pnc_normal_form, return_dtype=pl.String)  # noqa: E731
        r = r.with_columns(normal("pnc_id").alias("held"), normal("pnc_id_true").alias("true"))
        assert r.filter(flag("pnc_missing"))["held"].null_count() == r.filter(flag("pnc_missing")).height
        kept = r.filter(pl.col("held").is_not_null())
        assert ((kept["held"] == kept["true"]) != kept["corruptions"].str.contains("pnc_mistyped")).all(), source


def test_identity_corruption_comes_at_the_documented_rates_and_can_be_switched_off(world, tmp_path):
    from synthetic.formats import PROBATION_NOISE

    data, _, t, _ = world
    probation = t["identities"].filter(pl.col("source") == "probation_cases")
    for kind in ("name_typo", "nickname", "swapped_names", "dob_missing", "pnc_mistyped"):
        share = probation["corruptions"].str.contains(kind).mean()
        expected = getattr(PROBATION_NOISE, kind)
        assert 0.5 * expected <= share <= 1.6 * expected, (kind, share, expected)
    assert data.corruptions["probation_cases.nickname"] == probation["corruptions"].str.contains("nickname").sum()

    clean = generate_extracts(tmp_path / "extracts", 3000, 3, EXTRACT_DATE, fault_rate=0.0, identity_noise=0.0)
    assert not any(clean.corruptions.values())
    assert (pl.read_parquet(tmp_path / "truth" / "identities.parquet")["corruptions"] == "").all()


def test_each_corruption_rate_can_be_set(tmp_path):
    from synthetic import IdentityNoise

    noise = IdentityNoise(**{k: 0.0 for k in IdentityNoise().__dict__} | {"dob_missing": 0.5})
    data = generate_extracts(tmp_path / "extracts", 4000, 3, EXTRACT_DATE, fault_rate=0.0,
                             probation_noise=noise, prison_noise=noise)
    ids = pl.read_parquet(tmp_path / "truth" / "identities.parquet").filter(pl.col("source") != "police_nominals")
    assert 0.4 <= (ids["corruptions"] == "dob_missing").mean() <= 0.6
    assert set(ids["corruptions"]) == {"", "dob_missing"}
    assert data.corruptions["probation_cases.dob_missing"] > 0 and data.corruptions["prison_custody.pnc_missing"] == 0
