"""Scoring a distilled set: train a student from scratch under a protocol, test on real data."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark.datasets.base import Dataset
from evaluators.archs import StudentShape, build_student
from evaluators.protocols import Budget, Protocol
from evaluators.train import accuracy, normalise, train


@dataclass(frozen=True)
class EvalResult:
    """What one student run measured."""

    test_acc: float  # percent, at the protocol's reported epoch (the last one for `dc`)
    train_steps: int
    train_s: float
    test_s: float
    final_loss: float
    student_width: int | None


def shape_of(data: Dataset) -> StudentShape:
    return StudentShape(data.channels, data.image_size, data.num_classes)


def evaluate_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: Dataset,
    arch: str,
    protocol: Protocol,
    budget: Budget,
    seed: int,
    device: torch.device,
    full_data: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Train ``arch`` on (images in [0, 1], labels) and return its real test accuracy.

    ``full_data`` selects the step-sized schedule of the full-training-split reference.
    """
    torch.manual_seed(seed)
    student = build_student(arch, shape_of(data), width=budget.student_width).to(device)
    x = normalise(images.to(device, torch.float32), data.mean, data.std)
    y = labels.to(device)
    schedule = protocol.full_schedule(budget) if full_data else protocol.schedule(budget, x.shape[0])
    stats = train(student, x, y, protocol, schedule, seed, on_progress)
    start = time.perf_counter()
    test_x = normalise(data.test.float_images().to(device), data.mean, data.std)
    acc = accuracy(student, test_x, data.test.labels.to(device))
    return EvalResult(acc, stats.steps, stats.seconds, time.perf_counter() - start, stats.final_loss,
                      budget.student_width)
