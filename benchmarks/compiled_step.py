"""One student training step, eager and compiled, with one or two threads, and two one-thread
processes at once (what `bench run` does on a 2-core machine).

Times ConvNet-3 (width 32, batch 256, 28x28: `dc/quick`'s IPC 50 step on Fashion-MNIST) after
its compilation and three warm-up steps, 20 steps each, and prints one line per setting.

    .venv/bin/python benchmarks/compiled_step.py [--width 32] [--batch 256]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from torch.nn import functional as F

from core.archs import StudentShape, build_student
from evaluators.compiling import configure_inductor

SETTINGS = [(1, "eager"), (1, "default"), (2, "eager"), (2, "default"), (1, "max-autotune-no-cudagraphs")]


def one(threads: int, mode: str, width: int, batch: int, steps: int = 20) -> str:
    torch.set_num_threads(threads)
    configure_inductor()
    torch.manual_seed(0)
    model = build_student("convnet3", StudentShape(1, 28, 10), width=width)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = model if mode == "eager" else torch.compile(model, dynamic=False, mode=None if mode == "default" else mode)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(10, (batch,))

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x), y).backward()
        optimiser.step()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (f"threads {threads} {mode}: {1000 * (time.perf_counter() - start) / steps:.1f} ms/step "
            f"(first step, with compiling: {first:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--one", nargs=2, metavar=("THREADS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(one(int(args.one[0]), args.one[1], args.width, args.batch), flush=True)
        return
    child = [sys.executable, __file__, "--width", str(args.width), "--batch", str(args.batch), "--one"]
    for threads, mode in SETTINGS:  # each in a fresh process: no compiled code or thread pool carried over
        subprocess.run([*child, str(threads), mode], check=True)
    print("two one-thread processes at once:", flush=True)
    pair = [subprocess.Popen([*child, "1", "default"]) for _ in range(2)]
    for p in pair:
        p.wait()


if __name__ == "__main__":
    main()
