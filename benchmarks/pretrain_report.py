"""Time `bench pretrain` cold (a fresh cache) and warm (the same cache again) and print its report.

Usage: .venv/bin/python benchmarks/pretrain_report.py [--dataset fashion-mnist] [--recipe small]
       [--cache DIR] [--no-teacher-copy]
The cold run uses a new cache directory (default: a temporary one). Unless --no-teacher-copy
is given, the teachers already in the default cache are copied into it first, so the cold time
is that of the backbone and its report, not of the teacher (which `bench run` trains anyway).
Prints one JSON object per run: wall-clock seconds and the report.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.artifacts import default_cache_root


def bench_pretrain(dataset: str, recipe: str, cache: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "pretrain", "--dataset", dataset, "--recipe", recipe,
                          "--json", "--cache", str(cache)], capture_output=True, text=True,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"bench pretrain failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return seconds, json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--recipe", default="small")
    parser.add_argument("--cache", help="cache directory for the cold run (default: a new temporary one)")
    parser.add_argument("--no-teacher-copy", action="store_true")
    args = parser.parse_args()
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    teachers = default_cache_root() / "teacher"
    if not args.no_teacher_copy and teachers.is_dir() and not (cache / "teacher").exists():
        shutil.copytree(teachers, cache / "teacher")
    for run in ("cold", "warm"):
        seconds, report = bench_pretrain(args.dataset, args.recipe, cache)
        print(json.dumps({"run": run, "wall_seconds": round(seconds, 1), "cpu_count": os.cpu_count(),
                          "load_average_1min": round(os.getloadavg()[0], 2), **report}), flush=True)


if __name__ == "__main__":
    main()
