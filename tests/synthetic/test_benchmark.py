"""The FEBRL-style linkage benchmark (synthetic/benchmark.py): deterministic, corrupted as
documented, written as a workspace the real ingest reads; and, through that ingest, the
precision and recall the linking reaches on it."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.config import load_config
from synthetic.benchmark import make_benchmark, ocr, phonetic, typo, write_benchmark_workspace


def test_the_same_seed_gives_the_same_records_and_another_seed_others():
    a, b = make_benchmark(600, seed=3), make_benchmark(600, seed=3)
    assert a.records.equals(b.records)
    assert not a.records.equals(make_benchmark(600, seed=4).records)


@pytest.mark.parametrize("layout", ["cross", "within"])
def test_every_duplicate_is_modified_and_belongs_to_one_original(layout):
    bench = make_benchmark(2000, seed=5, layout=layout)
    records = bench.records
    assert abs(records.height - 2000) < 200
    originals = records.filter(pl.col("original"))
    assert originals["person_id"].n_unique() == originals.height  # one original a person
    duplicates = records.filter(~pl.col("original"))
    assert (duplicates["corruptions"].str.len_chars() > 0).all()
    assert set(duplicates["person_id"]) <= set(originals["person_id"])
    most = duplicates.group_by("person_id").len()["len"].max()
    assert most == 1 if layout == "cross" else most > 1
    # names and dates of birth only: a duplicate may lack a date of birth, an original never does
    assert originals["date_of_birth"].null_count() == 0 and duplicates["date_of_birth"].null_count() > 0
    sizes = records.group_by("person_id").len()["len"]
    assert bench.true_pairs == int((sizes * (sizes - 1) // 2).sum())


def test_the_modifications_change_a_name_as_keyed_and_scanned_data_do():
    import numpy as np

    rng = np.random.default_rng(1)
    for change in (typo, ocr, phonetic):
        changed = [change(rng, "Ashworth") for _ in range(50)]
        assert sum(c != "Ashworth" for c in changed) >= 45
        assert all(abs(len(c) - len("Ashworth")) <= 3 for c in changed)


@pytest.mark.parametrize("layout", ["cross", "within"])
def test_the_workspace_holds_the_records_in_the_agencies_of_its_layout(tmp_path, layout):
    bench = make_benchmark(300, seed=2, layout=layout)
    config = load_config(write_benchmark_workspace(tmp_path, bench, "pair_budget = 7"))
    assert config.linking.pair_budget == 7
    nominals = pl.read_csv(tmp_path / "extracts" / "police_nominals.csv")
    cases = pl.read_csv(tmp_path / "extracts" / "probation_cases.csv", infer_schema=False)
    truth = pl.read_parquet(tmp_path / "truth" / "identities.parquet")
    assert truth.height == bench.records.height == nominals.height + cases.height
    if layout == "cross":
        assert nominals.height == bench.records["original"].sum()
        assert (nominals["area"] == "Benchmark").all()  # police nominals require an area
    else:
        assert nominals.height == 0
    assert cases["sex"].null_count() == cases.height and cases["pnc_id"].null_count() == cases.height


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["cross", "within"])
def test_linking_a_small_benchmark_keeps_precision_and_beats_the_exact_fallback(tmp_path, layout):
    from pipeline.link.evaluate import evaluate
    from pipeline.workspace import ingest_workspace

    bench = make_benchmark(3000, seed=11, layout=layout)
    exact = load_config(write_benchmark_workspace(tmp_path / "exact", bench, "probabilistic = false"))
    ingest_workspace(exact)
    fallback = evaluate(exact)
    config = load_config(write_benchmark_workspace(tmp_path / "splink", bench))
    ingest_workspace(config)
    e = evaluate(config)
    # the target precision; recall: at least the target of 0.90 (on 3,000 records the
    # names collide less than on the 20,000 of docs/linking.md, where it is 0.94 to 0.96), and
    # far above the exact fallback (about 0.45 here, as on the held-out benchmark)
    assert e.precision >= 0.99
    assert e.recall >= 0.90
    assert fallback.precision == 1.0 and fallback.recall < 0.6
