"""Measure the student loop: milliseconds per training step and seconds to score the test set.

Usage: .venv/bin/python benchmarks/student_speed.py [--threads 1] [--widths 128,32]
Prints one JSON object per (width, batch); the README quotes these figures.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from core.datasets import load_dataset
from core.datasets.base import normalise
from core.archs import StudentShape, build_student
from evaluators.protocols import DC, Schedule
from evaluators.train import accuracy, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--widths", default="128,32")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    x = normalise(data.train.float_images()[:2560], data.mean, data.std)
    y = data.train.labels[:2560]
    test_x = normalise(data.test.float_images(), data.mean, data.std)
    for width in (int(w) for w in args.widths.split(",")):
        for batch in (10, 100, 256):
            model = build_student("convnet3", StudentShape(1, 28, 10), width=width)
            train(model, x, y, DC, Schedule(3, batch, (), 0.1), seed=0)  # warm-up
            stats = train(model, x, y, DC, Schedule(args.steps, batch, (), 0.1), seed=0)
            print(json.dumps({"width": width, "batch": batch, "threads": args.threads,
                              "ms_per_step": round(1000 * stats.seconds / stats.steps, 1)}))
        start = time.perf_counter()
        accuracy(model, test_x, data.test.labels)
        print(json.dumps({"width": width, "threads": args.threads,
                          "test_10k_s": round(time.perf_counter() - start, 2)}))


if __name__ == "__main__":
    main()
