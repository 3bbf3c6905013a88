"""Evaluation cost against IPC: one student trained and tested on a `random` Fashion-MNIST set.

Runs `evaluators.evaluate.evaluate_set` as a grid's trial does (`dc` protocol, the quick budget's
ConvNet-3 width 32 by default) on the same seed's `random` set at each IPC, eager and with its
steps compiled (`evaluators.compiling`, compiled once per shape before timing), and writes the
seconds of training and of test scoring per IPC as JSON rows and a plot. Under `dc` the steps
grow with the set (300 epochs of ceil(n / 256) batches), so training time should grow about
linearly in the images per step up to IPC 25 and in the steps beyond.

    .venv/bin/python benchmarks/eval_cost.py [--ipc 1,10,50] [--budget quick] [--threads 1]
        [--out benchmarks/eval_cost.json] [--plot benchmarks/eval_cost.png]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import torch

from core.datasets import load_dataset
from evaluators.batching import device_name
from evaluators.evaluate import evaluate_set
from evaluators.protocols import resolve
from methods.random import random_indices


def rows(ipcs: list[int], budget_name: str, seed: int) -> list[dict[str, Any]]:
    data = load_dataset("fashion-mnist")
    protocol, budget = resolve("dc", budget_name)
    cpu = torch.device("cpu")
    out = []
    for ipc in ipcs:
        idx = random_indices(data.train.labels, data.num_classes, ipc, seed=seed)
        images, labels = data.train.float_images()[idx], data.train.labels[idx]
        for compiled in (False, True):
            warm = dataclasses.replace(budget, epochs=1)  # kernels built (and compiled) before timing
            evaluate_set(images, labels, data, "convnet3", protocol, warm, seed, cpu, ipc=ipc, compiled=compiled)
            result = evaluate_set(images, labels, data, "convnet3", protocol, budget, seed, cpu, ipc=ipc,
                                  compiled=compiled)
            out.append({"ipc": ipc, "compiled": compiled, "device": device_name(cpu), "budget": budget.name,
                        "width": budget.student_width, "steps": result.train_steps,
                        "train_s": round(result.train_s, 2), "test_s": round(result.test_s, 2),
                        "test_acc": result.test_acc})
            print(json.dumps(out[-1]), flush=True)
    return out


def plot(result: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for compiled, style in ((False, "o-"), (True, "s--")):
        part = [r for r in result if r["compiled"] == compiled]
        ax.plot([r["ipc"] for r in part], [r["train_s"] + r["test_s"] for r in part], style,
                label="compiled steps" if compiled else "eager")
    ax.set_xlabel("images per class")
    ax.set_ylabel("seconds per evaluation (train + test)")
    first = result[0]
    ax.set_title(f"dc/{first['budget']} ConvNet-3 w{first['width']}, {first['device']}", fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", default="1,10,50")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/eval_cost.json")
    parser.add_argument("--plot", default="benchmarks/eval_cost.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = rows([int(i) for i in args.ipc.split(",")], args.budget, args.seed)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    plot(result, args.plot)


if __name__ == "__main__":
    main()
