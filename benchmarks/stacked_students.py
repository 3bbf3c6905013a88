"""Stacked students against students trained one by one, on this machine's CPU or a GPU.

Times a training step of S students (ConvNet-3 width 128, batch 256, as `dc/paper` trains
them) both ways with `evaluators.batching.measure`, the measurement `bench run` makes before
it stacks a cell's students, and writes one JSON row per (shape, S).

    .venv/bin/python benchmarks/stacked_students.py [--device cuda] [--students 1,5,25] [--out rows.json]
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from core.archs import StudentShape
from evaluators.batching import device_name, measure

SHAPES = {"1x28x28": StudentShape(1, 28, 10), "3x32x32": StudentShape(3, 32, 10)}


def rows(device: torch.device, students: list[int], width: int = 128, batch: int = 256,
         steps: int = 5) -> list[dict[str, Any]]:
    out = []
    for name, shape in SHAPES.items():
        for s in students:
            separate_ms, stacked_ms = measure("convnet3", shape, width, batch, s, device, steps)
            out.append({"part": "stacked students", "device": device_name(device), "shape": name, "width": width,
                        "batch": batch, "students": s, "separate_ms_per_step": round(separate_ms, 2),
                        "stacked_ms_per_step": round(stacked_ms, 2),
                        "speedup": round(separate_ms / stacked_ms, 2)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--students", default="1,5,25")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = rows(torch.device(args.device), [int(s) for s in args.students.split(",")])
    for row in result:
        print(json.dumps(row))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
