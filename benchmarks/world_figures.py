"""The realism figures of docs/synthetic-data.md, measured on a generated world.

Uses the same definitions as tests/synthetic/test_synthetic_world.py (imported from it), on a
larger world:  uv run --frozen python benchmarks/world_figures.py --people 100000
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("world_tests", ROOT / "tests" / "synthetic" / "test_synthetic_world.py")
W = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(W)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    from synthetic import PastDecisions, generate_extracts

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate_extracts(root / "extracts", args.people, args.seed, W.EXTRACT_DATE, fault_rate=0.0,
                                 past_decisions=PastDecisions())
        x = {e.name: W.read(e) for e in data.extracts}
        t = {n: pl.read_parquet(root / "truth" / f"{n}.parquet")
             for n in ("people", "offending_by_year", "sanctions", "identities")}
        f = W._follow_up(x, t)
        print(f"people {args.people:,}; rows {({e.name: e.rows for e in data.extracts})}")
        print(f"probation assessments with 2 years of follow-up: {f.height:,}; proven reoffending within 2 years "
              f"{f['y'].mean():.1%}; OGRS3 AUC {W.auc(f['ogrs3'], f['y']):.3f}; "
              f"count of police offences in the previous 12 months AUC {W.auc(f['count_12m'], f['y']):.3f}")
        start, end = W.EXTRACT_DATE - timedelta(days=3 * 365), W.EXTRACT_DATE - timedelta(days=2 * 365)
        adult = t["people"].select("person_id", "date_of_birth")
        is_adult = (pl.col("index") - pl.col("date_of_birth")).dt.total_days() >= 18 * 365.25
        sanctioned = (t["sanctions"].filter(pl.col("sanction_date").is_between(start, end, closed="left"))
                      .group_by("person_id").agg(pl.col("sanction_date").min().alias("index"))
                      .join(adult, on="person_id").filter(is_adult))
        print(f"one-year proven reoffending, adults sanctioned in a year: {W._reoffended_within_a_year(sanctioned, t):.1%}"
              f" of {sanctioned.height:,}")
        for label, cond in (("under 12 months", pl.col("sentence_days").cast(pl.Int64) < 365),
                            ("12 months or more", pl.col("sentence_days").cast(pl.Int64) >= 365)):
            released = (x["prison_custody"].filter((pl.col("custody_type") == "sentenced") & cond
                                                   & pl.col("release_date").is_between(start, end, closed="left"))
                        .join(W._ids(t, "prison_custody", "nomis_id"), on="nomis_id")
                        .group_by("person_id").agg(pl.col("release_date").min().alias("index"))
                        .join(adult, on="person_id").filter(is_adult))
            print(f"  after release from a sentence of {label}: {W._reoffended_within_a_year(released, t):.1%} "
                  f"of {released.height:,}")
        people = t["people"]
        true = people["offences_in_window"].sort(descending=True)
        rec = x["police_offences"].group_by("police_person_id").len()["len"].sort(descending=True)
        n = args.people
        print(f"true offences in the window: top 1% {true.head(n // 100).sum() / true.sum():.0%}, top 5% "
              f"{true.head(n // 20).sum() / true.sum():.0%}, top 10% {true.head(n // 10).sum() / true.sum():.0%}; "
              f"recorded: top 10% of people {rec.head(n // 10).sum() / rec.sum():.0%}; "
              f"recorded per person {rec.sum() / n:.2f}; true per person {true.sum() / n:.1f}")
        twelve = x["police_offences"].filter(pl.col("offence_date") > W.EXTRACT_DATE - timedelta(days=365))
        c12 = twelve.group_by("police_person_id").len()
        print(f"people with 10+ recorded offences in the last 12 months: {(c12['len'] >= 10).sum():,} "
              f"({(c12['len'] >= 10).sum() / n:.2%}); any: {c12.height / n:.1%}")
        print(f"sanctions before the window: {(people['sanctions_before_window'] > 0).mean():.0%} of people; "
              f"some offending outside the area: {(people['offences_in_window_in_area'] < people['offences_in_window']).mean():.0%}")
        cases = x["probation_cases"]
        print(f"probation: {cases['crn'].n_unique() / n:.1%} of people, {cases.height / n:.2f} periods per person; "
              f"in custody at the extract date: {x['prison_custody'].filter(pl.col('release_date').is_null())['nomis_id'].n_unique() / n:.2%}")
        years = pl.DataFrame({"year": list(range(W.EXTRACT_DATE.year - 9, W.EXTRACT_DATE.year))})
        exposure = (people.select("person_id", "date_of_birth").join(years, how="cross")
                    .with_columns(((pl.date(pl.col("year"), 7, 1) - pl.col("date_of_birth")).dt.total_days() / 365.25)
                                  .floor().alias("age")).filter(pl.col("age") >= 10))
        rates = (exposure.join(t["offending_by_year"], on=["person_id", "year"], how="left").fill_null(0)
                 .with_columns(pl.col("age").cut([14, 17, 21, 25, 30, 35, 45, 55]).alias("band"))
                 .group_by("band").agg((pl.col("offences").sum() / pl.len()).round(2).alias("per_person_year"),
                                       pl.col("age").min().alias("lo")).sort("lo"))
        print("true offences per person-year by age:", dict(zip(rates["band"].cast(pl.String), rates["per_person_year"], strict=True)))


if __name__ == "__main__":
    main()
