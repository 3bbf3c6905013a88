"""Time `make bench`'s job, cold and warm, beside `bench plan`'s estimate of it.

Usage: .venv/bin/python benchmarks/make_bench.py [--grid default] [--work DIR] [--cache DIR]

Cold: an empty store and an empty artifact cache (every teacher, backbone, fine-tuned denoiser,
EVLF module and set is built). Warm: an empty store and the cache the cold run filled. Before
each, the estimate `bench plan` prints for the same grid, store and cache. Each run is the
`bench run` of `make bench` (through `benchmark.api.run`, the call under the CLI) followed by
`bench leaderboard`. Prints one JSON object per run; run it alone on the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmark import api
from benchmark.report.leaderboard import write_leaderboards
from benchmark.store.provenance import git_commit


def measure(grid: str, where: api.Where, label: str) -> dict:
    estimate = api.estimate(grid, where)
    start = time.perf_counter()
    outcome = api.run(grid, where)
    ran = time.perf_counter() - start
    write_leaderboards(outcome.rows, Path(where.store_root()) / "leaderboards", cache=where.trial_cache(), studies=[])
    total = time.perf_counter() - start
    failed = len(outcome.summary.failed)
    return {"run": label, "grid": grid, "commit": git_commit(), "cpu_count": os.cpu_count(),
            "runs": len(outcome.plan.runs), "done": outcome.summary.ok, "failed": failed,
            "run_s": round(ran, 1), "with_leaderboard_s": round(total, 1),
            "plan_estimate_s": estimate.totals["estimated_wall_s"],
            "plan_unknown_jobs": estimate.totals["unknown_jobs"],
            "plan_shared_s": estimate.totals.get("shared_s")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", default="default")
    parser.add_argument("--work", help="folder for the stores and the cache (default: a new temporary one)")
    parser.add_argument("--cache", help="a cache to start from (default: an empty one)")
    parser.add_argument("--only", choices=("cold", "warm"), help="run one of the two")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-make-"))
    cache = Path(args.cache) if args.cache else work / "cache"
    for label in (args.only,) if args.only else ("cold", "warm"):
        store = work / f"store-{label}"
        shutil.rmtree(store, ignore_errors=True)
        print(json.dumps(measure(args.grid, api.Where(store=store, cache=cache), label)), flush=True)


if __name__ == "__main__":
    main()
