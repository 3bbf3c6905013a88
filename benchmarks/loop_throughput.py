"""Harness student loop versus the classic DD evaluation loops, on one IPC 10 Fashion-MNIST set.

Trains the same ConvNet-3 (dc protocol, paper budget by default) on the same `random` IPC 10
set four ways: the harness loop (`evaluators.evaluate.evaluate_set`), eager and with its steps
compiled (`evaluators.compiling`; the compilation is timed apart); a reference loop written
as the classic DC evaluator does it (a DataLoader over a TensorDataset, test scored once at the
end with a DataLoader of batch 256); and the same reference loop scoring the test set every 20
epochs as DD-Ranking does. Prints images per second, achieved GFLOP/s, the fraction of this
machine's measured conv and matmul peaks, the ratios, the final accuracies and peak memory.

Usage: .venv/bin/python benchmarks/loop_throughput.py [--threads 2] [--epochs 300] [--width 128]
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from core.datasets import load_dataset
from core.datasets.base import normalise
from core.archs import StudentShape, build_student
from evaluators.evaluate import evaluate_set
from evaluators.protocols import resolve
from methods.random import random_indices


def convnet_forward_flops(width: int, size: int, channels: int, classes: int, depth: int = 3) -> float:
    """Multiply-adds x 2 of the convolutions and the classifier for one image (norms and pools ignored)."""
    flops, cin = 0.0, channels
    for _ in range(depth):
        flops += 2 * cin * width * 9 * size * size
        cin, size = width, size // 2
    return flops + 2 * width * size * size * classes


def measured_peaks(threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start, n = time.perf_counter(), 5
    for _ in range(n):
        a @ b
    matmul = 2 * 2048 ** 3 * n / (time.perf_counter() - start) / 1e9
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    x = torch.randn(64, 128, 28, 28)
    with torch.inference_mode():
        conv(x)
        start = time.perf_counter()
        for _ in range(n):
            conv(x)
    conv_gflops = 2 * 128 * 128 * 9 * 28 * 28 * 64 * n / (time.perf_counter() - start) / 1e9
    return {"matmul_gflops": matmul, "conv_gflops": conv_gflops}


def classic_loop(images, labels, test_x, test_y, width, epochs, seed, test_every=None):
    """The classic evaluator: DataLoader over TensorDataset, SGD, decay at E//2+1, test at the end."""
    torch.manual_seed(seed)
    net = build_student("convnet3", StudentShape(1, 28, 10), width=width)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(TensorDataset(images, labels), batch_size=256, shuffle=True, num_workers=0)
    test_loader = DataLoader(TensorDataset(test_x, test_y), batch_size=256, shuffle=False, num_workers=0)

    def score() -> float:
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += int((net(x).argmax(1) == y).sum())
        net.train()
        return 100.0 * correct / len(test_y)

    start = time.perf_counter()
    for epoch in range(epochs + 1):
        if epoch == epochs // 2 + 1:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        net.train()
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if test_every and epoch % test_every == 0 and epoch < epochs:
            score()
    train_and_periodic = time.perf_counter() - start
    acc = score()
    return acc, train_and_periodic, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    idx = random_indices(data.train.labels, 10, 10, seed=args.seed)
    images, labels = data.train.float_images()[idx], data.train.labels[idx]
    protocol, budget = resolve("dc", "paper")
    budget = type(budget)(**{**budget.__dict__, "epochs": args.epochs, "student_width": args.width})

    peaks = measured_peaks(args.threads)
    flops_per_image = 3 * convnet_forward_flops(args.width, 28, 1, 10)  # forward + backward
    test_flops = convnet_forward_flops(args.width, 28, 1, 10) * len(data.test)
    seen = (args.epochs + 1) * len(images)

    # warm-up: oneDNN builds its kernels on first use; neither loop should pay for that in its timing
    warm = type(budget)(**{**budget.__dict__, "epochs": 2})
    cpu = torch.device("cpu")
    evaluate_set(images, labels, data, "convnet3", protocol, warm, args.seed, cpu)
    result = evaluate_set(images, labels, data, "convnet3", protocol, budget, args.seed, cpu)
    harness_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    harness_total = result.train_s + result.test_s
    start = time.perf_counter()
    evaluate_set(images, labels, data, "convnet3", protocol, warm, args.seed, cpu, compiled=True)
    compile_s = time.perf_counter() - start
    fast = evaluate_set(images, labels, data, "convnet3", protocol, budget, args.seed, cpu, compiled=True)
    fast_total = fast.train_s + fast.test_s

    x = normalise(images, data.mean, data.std)
    test_x = normalise(data.test.float_images(), data.mean, data.std)
    classic_acc, classic_train, classic_total = classic_loop(x, labels, test_x, data.test.labels, args.width,
                                                             args.epochs, args.seed)
    ranking_acc, _, ranking_total = classic_loop(x, labels, test_x, data.test.labels, args.width, args.epochs,
                                                 args.seed, test_every=20)
    report = {
        "threads": args.threads, "epochs": args.epochs + 1, "width": args.width,
        "peak_matmul_gflops": round(peaks["matmul_gflops"], 1), "peak_conv_gflops": round(peaks["conv_gflops"], 1),
        "harness": {"train_s": round(result.train_s, 1), "test_s": round(result.test_s, 1),
                    "images_per_s": round(seen / result.train_s, 1),
                    "train_gflops": round(flops_per_image * seen / result.train_s / 1e9, 1),
                    "train_fraction_of_conv_peak": round(flops_per_image * seen / result.train_s / 1e9
                                                         / peaks["conv_gflops"], 2),
                    "test_gflops": round(test_flops / result.test_s / 1e9, 1),
                    "test_fraction_of_conv_peak": round(test_flops / result.test_s / 1e9 / peaks["conv_gflops"], 2),
                    "acc": round(result.test_acc, 2), "peak_rss_mb": round(harness_rss_mb)},
        "harness_compiled": {"train_s": round(fast.train_s, 1), "test_s": round(fast.test_s, 1),
                             "images_per_s": round(seen / fast.train_s, 1),
                             "train_gflops": round(flops_per_image * seen / fast.train_s / 1e9, 1),
                             "warm_up_with_compilation_s": round(compile_s, 1), "acc": round(fast.test_acc, 2)},
        "classic_dc": {"train_s": round(classic_train, 1), "total_s": round(classic_total, 1),
                       "images_per_s": round(seen / classic_train, 1),
                       "train_gflops": round(flops_per_image * seen / classic_train / 1e9, 1),
                       "acc": round(classic_acc, 2)},
        "classic_test_every_20": {"total_s": round(ranking_total, 1), "acc": round(ranking_acc, 2)},
        "speedup_vs_classic_dc": round(classic_total / harness_total, 2),
        "speedup_vs_test_every_20": round(ranking_total / harness_total, 2),
        "speedup_compiled_vs_classic_dc": round(classic_total / fast_total, 2),
        "speedup_compiled_vs_classic_dc_with_compilation": round(classic_total / (fast_total + compile_s), 2),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
