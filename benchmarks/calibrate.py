"""Write the calibration `bench plan` ships with (`benchmark/grid/calibration.json`) from a
store and the artifact cache of a cold run of a grid: the rows' per-step, scoring, distillation
and memory figures, and the ``build_s`` of every shared stage of the grid found in the cache.

Usage: .venv/bin/python benchmarks/calibrate.py --store DIR --cache DIR [--grid default]
       [--source "what ran"] [--out benchmark/grid/calibration.json]

Run it on the machine the figures are for, after a run that was alone on the cores (the
figures are as good as that run was quiet). It prints what it wrote.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from benchmark import api
from benchmark.grid.calibration import SHIPPED, calibrate
from benchmark.store.provenance import git_commit, machine
from benchmark.store.results import ResultStore
from core.artifacts import ArtifactCache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--grid", default="default")
    parser.add_argument("--source", default="a cold `bench run` of the grid, alone on the cores")
    parser.add_argument("--out", default=str(SHIPPED))
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = api.plan(args.grid, api.Where(store=args.store)).runs
    with ResultStore(args.store, readonly=True) as store:
        rows = store.rows()
    described = {"cpu": machine(), "cores": os.cpu_count(), "torch": torch.__version__, "device": device}
    result = calibrate(rows, runs, ArtifactCache(args.cache, readonly=True), device, machine=described,
                       commit=git_commit(), source=f"{args.source} (grid {args.grid}, {len(rows)} rows)")
    Path(args.out).write_text(json.dumps(result.to_json(), indent=1) + "\n")
    print(json.dumps({"out": args.out, "machine": described, "commit": result.commit,
                      "tables": {name: len(table) for name, table in result.tables.items()},
                      "shared_s": {f"{k[0]} ({k[1]})": v for k, v in result.tables.get("shared_s", {}).items()}},
                     indent=1))


if __name__ == "__main__":
    main()
