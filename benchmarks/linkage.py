"""The linkage benchmark: FEBRL-style originals and corrupted duplicates (names and dates of birth
only, `synthetic.benchmark`), written as a workspace and run through the real `iom ingest` and
`iom links evaluate` (the same library calls the commands make).

    uv run --frozen python benchmarks/linkage.py --records 10000 --layout cross
    uv run --frozen python benchmarks/linkage.py --records 10000 --layout within --pair-budget 50
    uv run --frozen python benchmarks/linkage.py --workspace w     # a generated world instead

Prints precision, recall, the pairs compared by the blocks chosen and the probabilistic step's
seconds. Fixed seed, no network, no real names.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(records: int, layout: str, seed: int, out: Path, pair_budget: float | None = None,
        deterministic: bool = False, upper_threshold: float | None = None,
        upper_threshold_within: float | None = None) -> dict:
    from pipeline.config import load_config
    from pipeline.link.evaluate import evaluate
    from pipeline.workspace import ingest_workspace
    from synthetic.benchmark import make_benchmark, write_benchmark_workspace

    bench = make_benchmark(records, seed=seed, layout=layout)
    extra = []
    if pair_budget is not None:  # this many pairs a record, and no minimum
        extra += [f"pair_budget = {pair_budget}", "pair_budget_minimum = 0"]
    if deterministic:
        extra.append("probabilistic = false")
    if upper_threshold is not None:
        extra.append(f"upper_threshold = {upper_threshold}")
    if upper_threshold_within is not None:
        extra.append(f"upper_threshold_within = {upper_threshold_within}")
    if out.exists():
        shutil.rmtree(out)
    config_path = write_benchmark_workspace(out, bench, "\n".join(extra))
    config = load_config(config_path)
    started = time.perf_counter()
    report = ingest_workspace(config)
    seconds = time.perf_counter() - started
    e = evaluate(config)
    link = report.link
    return {"layout": layout, "records": bench.records.height, "true_pairs": e.true_pairs,
            "precision": e.precision, "recall": e.recall, "false_pairs": e.false_pairs, "missed": e.missed_pairs,
            "queue": link.review_queue, "queue_true": e.queue_true_matches, "pairs_compared": link.pairs_compared,
            "blocks": link.blocks_used, "probabilistic_seconds": link.probabilistic_seconds,
            "ingest_seconds": round(seconds, 1)}


def run_workspace(path: Path, pair_budget: float | None = None, upper_threshold: float | None = None,
                  upper_threshold_within: float | None = None) -> dict:
    """An existing workspace (e.g. one `iom generate` wrote): ingest, link and evaluate it (a
    warehouse already there keeps its loads and model: only the link runs again)."""
    from pipeline.config import LinkingConfig, load_config
    from pipeline.link.evaluate import evaluate
    from pipeline.workspace import ingest_workspace

    config = load_config(path / "iom.toml" if path.is_dir() else path)
    if pair_budget is not None:
        config = config.model_copy(update={"linking": config.linking.model_copy(
            update={"pair_budget": pair_budget, "pair_budget_minimum": 0})})
    thresholds = {key: value for key, value in (("upper_threshold", upper_threshold),
                                                ("upper_threshold_within", upper_threshold_within))
                  if value is not None}
    if thresholds:  # validated as a config file would be (lower <= upper)
        config = config.model_copy(update={"linking": LinkingConfig.model_validate(
            {**config.linking.model_dump(), **thresholds})})
    started = time.perf_counter()
    report = ingest_workspace(config)
    seconds = time.perf_counter() - started
    e = evaluate(config)
    link = report.link
    return {"workspace": str(path), "records": e.records, "true_pairs": e.true_pairs, "precision": e.precision,
            "recall": e.recall, "false_pairs": e.false_pairs, "missed": e.missed_pairs, "queue": link.review_queue,
            "queue_true": e.queue_true_matches, "pairs_compared": link.pairs_compared, "blocks": link.blocks_used,
            "probabilistic_seconds": link.probabilistic_seconds, "ingest_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--layout", choices=("cross", "within"), default="cross")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pair-budget", type=float, default=None, help="pairs per record, and no minimum (default: the config's budget)")
    parser.add_argument("--deterministic", action="store_true", help="the deterministic steps only")
    parser.add_argument("--upper-threshold", type=float, default=None,
                        help="auto-link two records of different agencies at or above (default: the config's)")
    parser.add_argument("--upper-threshold-within", type=float, default=None,
                        help="auto-link two records of one agency at or above (default: the config's)")
    parser.add_argument("--out", type=Path, default=None, help="keep the workspace here (default: a temp folder)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="instead: ingest and evaluate this existing workspace (its warehouse is rebuilt)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("pipeline.link.probabilistic", "pipeline.link.blocking"):  # the blocks and the step's seconds
        logging.getLogger(name).setLevel(logging.INFO)
    if args.workspace:
        result = run_workspace(args.workspace, args.pair_budget, args.upper_threshold, args.upper_threshold_within)
    elif args.out:
        result = run(args.records, args.layout, args.seed, args.out, args.pair_budget, args.deterministic,
                     args.upper_threshold, args.upper_threshold_within)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.records, args.layout, args.seed, Path(tmp) / "bench", args.pair_budget,
                         args.deterministic, args.upper_threshold, args.upper_threshold_within)
    for key, value in result.items():
        print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
