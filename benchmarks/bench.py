"""Benchmark: IOM Cohort stages against DuckDB-alone floors, on generated data.

    uv run python benchmarks/bench.py --people 1000000 --dir bench-data

Each measured step runs in its own child process, so its wall time and peak memory (maximum
resident set size, from wait4) are its own. Steps:

- `floor-load`:  DuckDB alone loads the same extract files into a fresh database file
                 (read_csv with all_varchar / read_parquet -> CREATE TABLE), no validation.
- `ingest`:      `iom ingest` work: read, validate (pandera), quarantine, load, link identities.
- `floor-features`: DuckDB alone computes per-person 3/12/36-month offence counts and the last
                 offence date from the warehouse tables.
- `run`:         features + rule scoring + cohort selection (no ingest) at the as-of date.
- `report`:      the panel pack and workbook of a cohort of about 2,000 (the default rules with
                 capacity 400 per area and minimum score 20), as `iom report` makes them from the
                 warehouse: seconds for the tables, the HTML and the workbook, and their sizes.
                 The run it reports on is made first and is not timed.
- `backtest`:    `iom backtest` with its defaults: 12 monthly as-of dates ending a year before
                 the extract date, each scored as `run` does, outcomes, metrics, fairness, outputs.
                 Compared with twelve `run`s (the target: at most 1.5x).
- `train`:       `iom train` with the workspace's `[model]` settings (default: 12 monthly snapshots,
                 logistic regression and gradient boosting, isotonic calibration), registered in
                 the workspace's embedded MLflow store. Target at 1M: under 10 minutes and 4 GiB.
- `run-model`:   `run` with the registered champion (or the alias or version in the environment
                 variable IOM_BENCH_MODEL) scoring beside the rules (loading it included in the
                 process, not in compute_s); against `run` the target is at most +20%.
- `decisions`:   `iom decisions import` of the world's simulated past decisions
                 (decisions/past_decisions.csv), so that `impact` has a panel to evaluate.
- `impact`:      `iom impact` with its defaults: every meeting with 12 months of follow-up (24
                 months of meetings in a generated world), the matched design, the DiD, the
                 bootstraps, the breakdowns and the outputs. Target at 1M: under 60 s, at most 3 GiB.

The results are printed as a Markdown table to paste into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_floor_load(workdir: Path) -> dict:
    import duckdb

    from pipeline.config import load_config

    config = load_config(workdir / "iom.toml")
    target = workdir / "floor.duckdb"
    target.unlink(missing_ok=True)
    con = duckdb.connect(str(target))
    rows = 0
    for name, settings in config.extracts.items():
        path = config.resolve(settings.file)
        if settings.format_for(path) == "parquet":
            source = f"read_parquet('{path}')"
        else:
            if settings.encoding == "cp1252":  # DuckDB reads UTF-8 only: the transcode is part of the floor
                utf8 = workdir / "floor-transcoded.csv"
                with path.open(encoding="cp1252", newline="") as src, utf8.open("w", encoding="utf-8", newline="") as dst:
                    for chunk in iter(lambda: src.read(16 * 1024 * 1024), ""):
                        dst.write(chunk)
                path = utf8
            source = f"read_csv('{path}', header = true, delim = '{settings.delimiter}', all_varchar = true)"
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {source}")
        rows += con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    con.close()
    return {"rows": rows}


def step_ingest(workdir: Path) -> dict:
    from pipeline.config import load_config
    from pipeline.workspace import ingest_workspace

    config = load_config(workdir / "iom.toml")
    config.warehouse_path.unlink(missing_ok=True)
    report = ingest_workspace(config)
    return {
        "rows_read": sum(r["rows_read"] for r in report.reconciliation),
        "rows_loaded": sum(r["rows_loaded"] for r in report.reconciliation),
        "rows_rejected": sum(r["rows_rejected"] for r in report.reconciliation),
        "people": report.link.people,
    }


def step_floor_features(workdir: Path, as_of: date) -> dict:
    from pipeline.config import load_config
    from pipeline.warehouse import connect

    con = connect(load_config(workdir / "iom.toml"))
    started = time.perf_counter()
    con.execute(
        """CREATE OR REPLACE TEMP TABLE floor_features AS
        SELECT i.person_key,
               count(*) FILTER (WHERE o.offence_date > ?::DATE - INTERVAL 3 MONTH) AS n3,
               count(*) FILTER (WHERE o.offence_date > ?::DATE - INTERVAL 12 MONTH) AS n12,
               count(*) FILTER (WHERE o.offence_date > ?::DATE - INTERVAL 36 MONTH) AS n36,
               max(o.offence_date) AS last_offence
        FROM cur_police_offences o JOIN person_ids i ON i.source = 'police' AND i.source_id = o.police_person_id
        WHERE o.offence_date <= ?
        GROUP BY i.person_key""",
        [as_of, as_of, as_of, as_of],
    )
    people = con.execute("SELECT count(*) FROM floor_features").fetchone()[0]
    compute_s = round(time.perf_counter() - started, 2)
    con.close()
    return {"people": people, "compute_s": compute_s}


def step_run(workdir: Path, as_of: date) -> dict:
    from pipeline.config import load_config
    from pipeline.run import score_period

    config = load_config(workdir / "iom.toml")
    started = time.perf_counter()
    result = score_period(config, as_of)
    return {"compute_s": round(time.perf_counter() - started, 2), **result}


def step_report(workdir: Path, as_of: date) -> dict:
    from pipeline.config import load_config
    from pipeline.run import run_period
    from reporting.report import report_run
    rules = workdir / "bench-report-rules.toml"
    text = (ROOT / "rules" / "default.toml").read_text(encoding="utf-8")
    text = text.replace("min_score = 30 ", "min_score = 20 ").replace("default_capacity = 40 ", "default_capacity = 400 ")
    rules.write_text(text, encoding="utf-8")
    config = load_config(workdir / "iom.toml").with_overrides(rules=str(rules))
    result = run_period(config, as_of, force=True)
    started = time.perf_counter()
    paths = report_run(config, result.run_id, workdir / "bench-report")
    seconds = round(time.perf_counter() - started, 2)
    return {"report_s": seconds, "proposed": paths.members, "eligible": result.counts["stats"]["eligible"],
            "html_mb": round(paths.pack.stat().st_size / 1e6, 2), "xlsx_mb": round(paths.workbook.stat().st_size / 1e6, 2),
            **paths.timings}


def step_backtest(workdir: Path, as_of: date) -> dict:
    from evaluation.backtest import run_backtest
    from pipeline.config import load_config

    config = load_config(workdir / "iom.toml")
    started = time.perf_counter()
    result = run_backtest(config)
    pooled = result.metrics.filter(result.metrics["as_of"].is_null() & (result.metrics["scorer"] == "rules"))
    return {"compute_s": round(time.perf_counter() - started, 2), "dates": len(result.dates),
            "evaluated": int(pooled["people"][0]), "auc": round(float(pooled["auc"][0] or 0), 3)}


def step_train(workdir: Path, as_of: date) -> dict:
    from models.train import train_model
    from pipeline.config import load_config

    config = load_config(workdir / "iom.toml")
    started = time.perf_counter()
    result = train_model(config)
    s = result.summary
    return {"compute_s": round(time.perf_counter() - started, 2), "kind": result.kind,
            "rows": sum(c["rows"] for c in s["counts"].values()), "test_rows": s["counts"]["test"]["rows"],
            "model_auc": round(s["test_auc"], 4), "rules_auc": round(s["rules_test_auc"], 4),
            "model_brier": round(float(result.metrics.filter(result.metrics["chosen"])["brier"][0]), 4),
            "rules_brier": round(float(result.metrics.filter(result.metrics["scorer"] == "rules")["brier"][0]), 4),
            "champion": s["champion"], **{k: v for k, v in s["timings"].items()}}


def step_run_model(workdir: Path, as_of: date) -> dict:
    from models.registry import load
    from pipeline.config import load_config
    from pipeline.run import score_period

    config = load_config(workdir / "iom.toml")
    model = load(config, os.environ.get("IOM_BENCH_MODEL", "champion"))  # an alias or a version
    started = time.perf_counter()
    result = score_period(config, as_of, model)
    return {"compute_s": round(time.perf_counter() - started, 2), "model": f"{model.version} {model.artefact['kind']}",
            **result}


def step_decisions(workdir: Path) -> dict:
    from pipeline.config import load_config
    from pipeline.decisions import import_decisions

    config = load_config(workdir / "iom.toml")
    started = time.perf_counter()
    report = import_decisions(config, workdir / "decisions" / "past_decisions.csv")
    return {"compute_s": round(time.perf_counter() - started, 2), "decisions": report.decisions, "status": report.status}


def step_impact(workdir: Path) -> dict:
    from evaluation.impact_run import run_impact
    from pipeline.config import load_config

    config = load_config(workdir / "iom.toml")
    started = time.perf_counter()
    result = run_impact(config, out_dir=workdir / "bench-impact")
    s = result.summary
    months = (date.fromisoformat(s["to"]).year - date.fromisoformat(s["from"]).year) * 12 + \
        date.fromisoformat(s["to"]).month - date.fromisoformat(s["from"]).month + 1
    return {"compute_s": round(time.perf_counter() - started, 2), "meetings_months": months,
            "managed_people": s["managed_people"], "near_line_people": s["treated_people"],
            "comparison_people": s["comparison_people"], "effect": s["effect"]["estimate"], "rows": result.table.height}


def step_generate(workdir: Path, as_of: date, people: int, seed: int) -> dict:
    from pipeline.workspace import generate_workspace

    data, _ = generate_workspace(workdir, people, seed, as_of, 0.002)
    return {e.name: e.rows for e in data.extracts}


STEPS = {"floor-load": step_floor_load, "ingest": step_ingest, "floor-features": step_floor_features,
         "run": step_run, "report": step_report, "backtest": step_backtest, "generate": step_generate,
         "train": step_train, "run-model": step_run_model, "decisions": step_decisions, "impact": step_impact}


def run_child(step: str, workdir: Path, as_of: date, extra: list[str] | None = None) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", step, "--dir", str(workdir), "--as-of", as_of.isoformat(), *(extra or [])],
        stdout=subprocess.PIPE, cwd=ROOT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    output = proc.stdout.read().decode() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"step {step} failed with status {status}")
    detail = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    return {"step": step, "seconds": round(seconds, 2), "peak_mib": round(usage.ru_maxrss / 1024), **detail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=ROOT / "bench-data")
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--steps", default="floor-load,ingest,floor-features,run")
    parser.add_argument("--child", choices=sorted(STEPS))
    args = parser.parse_args()

    if args.child:
        if args.child == "generate":
            result = step_generate(args.dir, args.as_of, args.people, args.seed)
        elif args.child in ("floor-features", "run", "report", "backtest", "train", "run-model"):
            result = STEPS[args.child](args.dir, args.as_of)
        else:
            result = STEPS[args.child](args.dir)
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return

    results = []
    if not (args.dir / "iom.toml").exists():
        # In a child of its own: a child's peak memory starts from its parent's size at fork, so a
        # parent that had generated the data would inflate every later step's peak.
        generated = run_child("generate", args.dir, args.as_of, ["--people", str(args.people), "--seed", str(args.seed)])
        print(json.dumps(generated), flush=True)
        results.append(generated)
    for step in args.steps.split(","):
        result = run_child(step, args.dir, args.as_of)
        print(json.dumps(result), flush=True)
        results.append(result)
    by_step = {r["step"]: r for r in results}
    steps_of = {name: [r for r in results if r["step"] == name] for name in by_step}
    print()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"date {date.today()}; people {args.people:,}")
    print("| step | seconds | peak MiB | detail |")
    print("| --- | ---: | ---: | --- |")
    for r in results:
        detail = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in r.items()
                           if k not in ("step", "seconds", "peak_mib"))
        print(f"| {r['step']} | {r['seconds']} | {r['peak_mib']:,} | {detail} |")
    if "floor-load" in by_step and "ingest" in by_step:
        print(f"\ningest / floor-load = {by_step['ingest']['seconds'] / by_step['floor-load']['seconds']:.2f}x")
    if "backtest" in by_step and "run" in by_step:
        twelve = 12 * median(r["seconds"] for r in steps_of["run"])
        print(f"backtest / (12 x run) = {by_step['backtest']['seconds'] / twelve:.2f}x (whole processes; target 1.5x); "
              f"compute only: {by_step['backtest']['compute_s'] / (12 * median(r['compute_s'] for r in steps_of['run'])):.2f}x")
    if "run-model" in by_step and "run" in by_step:
        plain = median(r["compute_s"] for r in steps_of["run"])
        with_model = median(r["compute_s"] for r in steps_of["run-model"])
        print(f"run-model / run, compute only (medians): {with_model / plain:.2f}x "
              f"(model_s {median(r.get('model_s', 0) for r in steps_of['run-model'])} s; target at most 1.2x)")
    if "floor-features" in by_step and "run" in by_step:
        # Steps repeated back to back (floor, run, floor, run, floor): medians, and every run
        # against the floors measured just before and just after it, as the VM's timings vary.
        runs, floors = steps_of["run"], steps_of["floor-features"]
        print(f"run / floor-features, medians of {len(runs)} runs and {len(floors)} floors: "
              f"{median(r['seconds'] for r in runs) / median(f['seconds'] for f in floors):.2f}x (whole processes); "
              f"compute only: {median(r['compute_s'] for r in runs) / median(f['compute_s'] for f in floors):.2f}x")
        pairs = []
        for i, r in enumerate(results):
            if r["step"] == "run":
                near = [results[j] for j in (i - 1, i + 1) if 0 <= j < len(results)
                        and results[j]["step"] == "floor-features"]
                pairs += [r["compute_s"] / f["compute_s"] for f in near]
        if pairs:
            print(f"compute only, each run against the floor before and after it: {min(pairs):.2f}x to {max(pairs):.2f}x")


if __name__ == "__main__":
    main()
