"""The one student training loop every protocol shares, and batched scoring.

The training images live as one tensor on the device and are normalised once; each step
slices a batch from a per-epoch permutation and augments it as one batch, so the loop has no
data-loader overhead and no per-image Python work. Protocol differences (optimiser,
schedule, augmentation, CutMix, teacher labels, validation selection) are read from the
`Protocol` record, never from flags scattered through the code.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from core.augment import AUGMENTATIONS, Standardisation, cutmix
from evaluators.protocols import Protocol, Schedule


@dataclass
class TrainOutcome:
    steps: int
    seconds: float
    final_loss: float
    selected_state: dict | None = None  # weights at the best validation score (selection == "val")
    selected_step: int | None = None
    val_acc: float | None = None  # validation accuracy of the selected weights


@dataclass(frozen=True)
class Validation:
    """The held-out split used for model selection (normalised images, labels)."""

    images: torch.Tensor
    labels: torch.Tensor


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless batches of indices: a fresh permutation each epoch, last batch may be short."""
    while True:
        perm = torch.randperm(n, generator=generator)
        yield from perm.split(batch_size)


def make_optimizer(params: Iterable[torch.Tensor], protocol: Protocol) -> torch.optim.Optimizer:
    """The protocol's optimiser over ``params`` (every update is elementwise, so students whose
    weights are stacked into one tensor per parameter update exactly as separate ones)."""
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(params, lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
    if protocol.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
    raise ValueError(f"protocol '{protocol.name}' names an unknown optimiser '{protocol.optimizer}'")


def make_lr_schedule(optimizer: torch.optim.Optimizer, protocol: Protocol, schedule: Schedule):
    if protocol.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, schedule.steps))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(schedule.milestones), schedule.gamma)


@dataclass
class Batch:
    """One step's training batch of one student: images (augmented, maybe CutMix-ed), labels,
    and CutMix's partner permutation and kept area (None and 1.0 without CutMix)."""

    x: torch.Tensor
    y: torch.Tensor
    perm: torch.Tensor | None = None
    lam: float = 1.0


class StudentStream:
    """A student's random draws: its epoch permutations, augmentation and CutMix, all from one
    generator seeded by the student's seed, in the same order at every step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, protocol: Protocol, schedule: Schedule,
                 seed: int, standardisation: Standardisation | None):
        self.images, self.labels, self.protocol, self.standardisation = images, labels, protocol, standardisation
        self.augment = AUGMENTATIONS[protocol.augmentation] if protocol.augmentation else None
        self.generator = torch.Generator().manual_seed(seed)
        self._batches = _batches(images.shape[0], schedule.batch_size, self.generator)

    def next(self) -> Batch:
        idx = next(self._batches).to(self.images.device)
        batch = Batch(self.images[idx], self.labels[idx])
        if self.augment is not None:
            batch.x = self.augment(batch.x, self.generator, self.standardisation)
        if self.protocol.cutmix:
            batch.x, batch.perm, batch.lam = cutmix(batch.x, self.generator)
        return batch


def batch_loss(out: torch.Tensor, batch: Batch, protocol: Protocol, teacher_out: torch.Tensor | None) -> torch.Tensor:
    """The protocol's training loss of one student's logits on its batch."""
    if protocol.labels == "teacher":
        return soft_target_loss(out, teacher_out, protocol.temperature)
    if batch.perm is not None:
        return batch.lam * F.cross_entropy(out, batch.y) + (1 - batch.lam) * F.cross_entropy(out, batch.y[batch.perm])
    return F.cross_entropy(out, batch.y)


def check_inputs(protocol: Protocol, schedule: Schedule, teacher: nn.Module | None, validation: Validation | None,
                 standardisation: Standardisation | None) -> None:
    """Refuse a training call that lacks what its protocol needs."""
    if protocol.labels == "teacher" and teacher is None:
        raise ValueError(f"protocol '{protocol.name}' relabels with a teacher, but none was given")
    if schedule.eval_every and validation is None:
        raise ValueError(f"protocol '{protocol.name}' selects on a validation split, but none was given")
    if protocol.augmentation and standardisation is None:
        raise ValueError(f"protocol '{protocol.name}' augments, but the data set's standardisation was not given")


def scoring_due(step: int, schedule: Schedule) -> bool:
    """Whether the student is scored on validation after ``step`` (every period and after the last step)."""
    return bool(schedule.eval_every) and (step % schedule.eval_every == 0 or step == schedule.steps)


def select(outcome: TrainOutcome, step: int, val: float, best_val: float, state: Callable[[], dict]) -> float:
    """Keep the weights of a scoring that beats every earlier one (ties keep the earlier epoch);
    returns the best validation accuracy so far."""
    if val > best_val:
        outcome.selected_state = state()
        outcome.selected_step, outcome.val_acc = step, val
        return val
    return best_val


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened distributions, batch mean (SRe2L's form)."""
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.softmax(teacher_logits / temperature, 1),
                    reduction="batchmean")


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    protocol: Protocol,
    schedule: Schedule,
    seed: int,
    on_progress: Callable[[int, int], None] | None = None,
    teacher: nn.Module | None = None,
    validation: Validation | None = None,
    observe: Callable[[nn.Module], None] | None = None,
    standardisation: Standardisation | None = None,
    on_validation: Callable[[int, float], None] | None = None,
    forward: nn.Module | None = None,
) -> TrainOutcome:
    """Train ``model`` in place on normalised ``images`` under ``protocol``. ``observe`` sees the
    model (in eval mode) at every validation scoring; it must not change it, and nothing it
    returns reaches training or selection. ``on_validation`` gets (step, validation accuracy)
    at every scoring (a tuning study reports them). ``standardisation`` (the data set's mean and std)
    lets an augmentation act on [0, 1] pixels where its recipe does. ``forward`` (the model compiled,
    `evaluators.compiling`) computes the training steps' logits in place of ``model``."""
    check_inputs(protocol, schedule, teacher, validation, standardisation)
    resets = set(schedule.milestones) if schedule.reset_momentum else set()
    optimizer = make_optimizer(model.parameters(), protocol)
    lr_schedule = make_lr_schedule(optimizer, protocol, schedule)
    stream = StudentStream(images, labels, protocol, schedule, seed, standardisation)
    report_every = max(1, schedule.steps // 20)
    outcome = TrainOutcome(schedule.steps, 0.0, math.nan)
    best_val = -1.0
    start, loss = time.perf_counter(), torch.tensor(math.nan)
    model.train()
    net = forward if forward is not None else model
    for step in range(1, schedule.steps + 1):
        batch = stream.next()
        out = net(batch.x)
        teacher_out = None
        if protocol.labels == "teacher":
            with torch.no_grad():
                teacher_out = teacher(batch.x)
        loss = batch_loss(out, batch, protocol, teacher_out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        if step in resets:  # as a new optimiser at the decayed rate: no momentum carried over
            optimizer.state.clear()
        if scoring_due(step, schedule):
            val = accuracy(model, validation.images, validation.labels)
            if on_validation is not None:
                on_validation(step, val)
            if observe is not None:
                observe(model)
            model.train()
            best_val = select(outcome, step, val, best_val, lambda: copy.deepcopy(model.state_dict()))
        if on_progress is not None and step % report_every == 0:
            on_progress(step, schedule.steps)
    outcome.seconds = time.perf_counter() - start
    outcome.final_loss = float(loss.detach())
    return outcome


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent, in batches: larger ones are no faster on a CPU and cost memory."""
    model.eval()
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / max(1, labels.shape[0])
