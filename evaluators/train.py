"""The one student training loop every protocol shares, and batched test scoring.

The training images live as one tensor on the device and are normalised once; each step
slices a batch from a per-epoch permutation, so the loop has no data-loader overhead and no
per-image Python work.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from evaluators.protocols import Protocol, Schedule


@dataclass(frozen=True)
class TrainStats:
    steps: int
    seconds: float
    final_loss: float


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Map [0, 1] images to the data set's standardised space."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless batches of indices: a fresh permutation each epoch, last batch may be short."""
    while True:
        perm = torch.randperm(n, generator=generator)
        yield from perm.split(batch_size)


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    protocol: Protocol,
    schedule: Schedule,
    seed: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> TrainStats:
    """Train ``model`` in place on normalised ``images`` with hard ``labels``."""
    if protocol.labels != "hard" or protocol.augmentation is not None:
        raise NotImplementedError(f"protocol '{protocol.name}' needs features of a later release")
    device = images.device
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
    )
    lr_schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(schedule.milestones), schedule.gamma)
    generator = torch.Generator().manual_seed(seed)
    start, loss = time.perf_counter(), torch.tensor(float("nan"))
    batches = _batches(images.shape[0], schedule.batch_size, generator)
    report_every = max(1, schedule.steps // 20)
    for step in range(schedule.steps):
        idx = next(batches).to(device)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        if on_progress is not None and (step + 1) % report_every == 0:
            on_progress(step + 1, schedule.steps)
    return TrainStats(schedule.steps, time.perf_counter() - start, float(loss.detach()))


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    """Top-1 accuracy in percent, scored in large batches."""
    model.eval()
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / max(1, labels.shape[0])


@torch.inference_mode()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Penultimate features of a student or teacher, in large batches."""
    model.eval()
    return torch.cat([model.embed(x) for x in images.split(batch_size)])
