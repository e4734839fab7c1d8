"""Benchmark: generating a synthetic world, wall time and peak memory, by number of people.

Each size runs in a child process of its own, so the peak resident memory (ru_maxrss) is the
generator's alone. The world is written to --dir/<people> and removed afterwards unless --keep.

    uv run --frozen python benchmarks/bench_generate.py --people 1000000,3000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(out: Path, people: int, seed: int, as_of: date, chunk: int | None) -> dict:
    sys.path.insert(0, str(ROOT))
    from synthetic import PastDecisions, generate_extracts

    started = time.perf_counter()
    data = generate_extracts(out / "extracts", people, seed, as_of, 0.002, past_decisions=PastDecisions(),
                             chunk_people=chunk)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"generate_s": round(seconds, 1), "bytes_written": size, **{e.name: e.rows for e in data.extracts}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", default="100000", help="comma-separated sizes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--dir", type=Path, default=ROOT / "bench-generate")
    parser.add_argument("--chunk", type=int, default=None, help="people held in memory at once (default one block)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", type=int, default=None)
    args = parser.parse_args()

    if args.child is not None:
        sys.stdout.write(json.dumps(child(args.dir, args.child, args.seed, args.as_of, args.chunk)) + "\n")
        return

    rows = []
    for people in (int(v) for v in args.people.split(",")):
        out = args.dir / str(people)
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", str(people), "--dir", str(out), "--seed", str(args.seed),
               "--as-of", args.as_of.isoformat()] + (["--chunk", str(args.chunk)] if args.chunk else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        output = proc.stdout.read().decode() if proc.stdout else ""
        if status != 0:
            raise SystemExit(f"generation of {people} people failed with status {status}")
        row = {"people": people, "seconds": round(time.perf_counter() - started, 1),
               "peak_mib": round(usage.ru_maxrss / 1024), **json.loads(output.strip().splitlines()[-1])}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"date {date.today()}")
    print("| people | seconds (whole process) | generate s | peak MiB | GiB written | offences | custody spells |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['people']:,} | {r['seconds']} | {r['generate_s']} | {r['peak_mib']:,} | "
              f"{r['bytes_written'] / 2**30:.2f} | {r['police_offences']:,} | {r['prison_custody']:,} |")


if __name__ == "__main__":
    main()
