"""Evaluation protocols as frozen, named data, with their named budgets.

A protocol is a recipe (optimiser, schedule, augmentation, labels, model selection); a
budget scales only its sizes (epochs, optimiser steps for the full-data reference, student
width, default number of seeds). Every result row carries both names. The differences
between protocols live here as data; `evaluators.train` is the one loop that runs them all.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from core.errors import UnknownNameError
from core.registry import Registry


@dataclass(frozen=True)
class Budget:
    """The sizes of one protocol run."""

    name: str
    epochs: int  # epochs on a distilled set (protocols with epochs by IPC scale theirs by epoch_scale)
    full_steps: int  # optimiser steps for the `full` reference and the teacher (whole training split)
    seeds: int  # default number of student seeds
    student_width: int | None = None  # None keeps the architecture's own width
    epoch_scale: float = 1.0  # multiplies a protocol's epochs-by-IPC table
    description: str = ""


@dataclass(frozen=True)
class Schedule:
    """A training schedule in optimiser steps."""

    steps: int
    batch_size: int
    milestones: tuple[int, ...]  # steps at which a step schedule multiplies the learning rate by gamma
    gamma: float
    eval_every: int = 0  # validation scoring period in steps (0: no model selection)


@dataclass(frozen=True)
class Protocol:
    """A named evaluation recipe shared by every method."""

    name: str
    description: str
    optimizer: str  # "sgd" or "adamw"
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    lr_schedule: str  # "step" (x gamma at the decay fractions) or "cosine"
    lr_gamma: float
    decay_at: tuple[float, ...]  # fractions of training at which a step schedule decays
    extra_epoch: bool  # the DC code trains E+1 epochs and decays at E//2+1
    augmentation: str | None  # a key of evaluators.augment.AUGMENTATIONS
    cutmix: bool  # CutMix (beta 1) on every batch
    labels: str  # "hard": the set's labels; "teacher": online relabelling by the dataset teacher
    temperature: float  # for teacher labels: KL divergence at this temperature
    selection: str  # "last": report the last epoch; "val": select the epoch on the validation split
    evals: int = 10  # validation scorings over training when selection == "val"
    epochs_by_ipc: tuple[tuple[int, int], ...] = ()  # (max IPC, epochs); empty: the budget's epochs
    budgets: dict[str, Budget] = field(default_factory=dict)

    def budget(self, name: str) -> Budget:
        try:
            return self.budgets[name]
        except KeyError:
            raise UnknownNameError(f"budget of protocol '{self.name}'", name, self.budgets) from None

    def epochs(self, budget: Budget, ipc: int | None) -> int:
        if not self.epochs_by_ipc or ipc is None:
            return budget.epochs
        for max_ipc, epochs in self.epochs_by_ipc:
            if ipc <= max_ipc:
                return max(1, round(epochs * budget.epoch_scale))
        return max(1, round(self.epochs_by_ipc[-1][1] * budget.epoch_scale))

    def schedule(self, budget: Budget, num_images: int, ipc: int | None = None) -> Schedule:
        """The schedule for training on a distilled set of ``num_images`` images."""
        steps_per_epoch = max(1, math.ceil(num_images / self.batch_size))
        epochs = self.epochs(budget, ipc)
        total = epochs + (1 if self.extra_epoch else 0)
        offset = 1 if self.extra_epoch else 0
        milestones = tuple((int(epochs * f) + offset) * steps_per_epoch for f in self.decay_at)
        return self._with_selection(Schedule(total * steps_per_epoch, self.batch_size, milestones, self.lr_gamma))

    def full_schedule(self, budget: Budget) -> Schedule:
        """The schedule of the `full` reference, sized in optimiser steps."""
        milestones = tuple(int(budget.full_steps * f) for f in self.decay_at)
        return self._with_selection(Schedule(budget.full_steps, self.batch_size, milestones, self.lr_gamma))

    def _with_selection(self, s: Schedule) -> Schedule:
        if self.selection != "val":
            return s
        return Schedule(s.steps, s.batch_size, s.milestones, s.gamma, eval_every=max(1, s.steps // self.evals))


PROTOCOLS: Registry[Protocol] = Registry("protocol", check=lambda p: isinstance(p, Protocol))


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS.add(protocol.name, protocol)
    return protocol


_SGD = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4)

DC = register_protocol(Protocol(
    name="dc",
    description="DC/DSA/DM hard-label protocol: SGD, no augmentation, last-epoch test accuracy",
    **_SGD, batch_size=256, lr_schedule="step", lr_gamma=0.1, decay_at=(0.5,), extra_epoch=True,
    augmentation=None, cutmix=False, labels="hard", temperature=1.0, selection="last",
    budgets={
        "paper": Budget("paper", epochs=300, full_steps=4300, seeds=5,
                        description="as published: 300 (+1) epochs, ConvNet width 128; full data 4,300 steps"),
        "quick": Budget("quick", epochs=300, full_steps=1500, seeds=3, student_width=32,
                        description="2-core CPU: 300 (+1) epochs, student width 32; full data 1,500 steps"),
        "smoke": Budget("smoke", epochs=50, full_steps=50, seeds=2, student_width=16,
                        description="seconds, for tests: 50 (+1) epochs, student width 16; full data 50 steps"),
    },
))

# dsa is dc with one augmentation op per batch and a longer paper budget
DSA = register_protocol(dataclasses.replace(
    DC,
    name="dsa",
    description="dc with differentiable Siamese augmentation (one op per batch), 1000 epochs",
    augmentation="dsa",
    budgets={**DC.budgets, "paper": Budget(
        "paper", epochs=1000, full_steps=4300, seeds=5,
        description="as published: 1000 (+1) epochs, ConvNet width 128; full data 4,300 steps")},
))

IDC = register_protocol(Protocol(
    name="idc",
    description="IDC/Minimax/EVLF hard-label protocol: crop, flip, jitter, lighting, CutMix; "
                "epoch selected on the validation split",
    **_SGD, batch_size=64, lr_schedule="step", lr_gamma=0.2, decay_at=(2 / 3, 5 / 6), extra_epoch=False,
    augmentation="idc", cutmix=True, labels="hard", temperature=1.0, selection="val",
    epochs_by_ipc=((10, 2000), (50, 1500), (200, 1000)),
    budgets={
        "paper": Budget("paper", epochs=0, full_steps=8600, seeds=3, epoch_scale=1.0,
                        description="as published: 2000 / 1500 / 1000 epochs up to IPC 10 / 50 / 200"),
        "quick": Budget("quick", epochs=0, full_steps=1500, seeds=3, student_width=32, epoch_scale=0.1,
                        description="2-core CPU: a tenth of the epochs, student width 32"),
        "smoke": Budget("smoke", epochs=0, full_steps=50, seeds=2, student_width=16, epoch_scale=0.01,
                        description="seconds, for tests: a hundredth of the epochs, width 16"),
    },
))

SOFTLABEL = register_protocol(Protocol(
    name="softlabel",
    description="teacher relabelling (SRe2L/RDED lineage): every augmented batch relabelled online, "
                "KL at temperature 20, AdamW, cosine",
    optimizer="adamw", lr=1e-3, momentum=0.0, weight_decay=0.01, batch_size=64, lr_schedule="cosine",
    lr_gamma=1.0, decay_at=(), extra_epoch=False, augmentation="softlabel", cutmix=True,
    labels="teacher", temperature=20.0, selection="last",
    budgets={
        "paper": Budget("paper", epochs=300, full_steps=4300, seeds=3,
                        description="as published: 300 epochs; teacher trained 4,300 steps"),
        "quick": Budget("quick", epochs=100, full_steps=1500, seeds=3, student_width=32,
                        description="2-core CPU: 100 epochs, student width 32; teacher 1,500 steps"),
        "smoke": Budget("smoke", epochs=5, full_steps=50, seeds=2, student_width=16,
                        description="seconds, for tests: 5 epochs, width 16; teacher 50 steps"),
    },
))


def resolve(protocol: str, budget: str) -> tuple[Protocol, Budget]:
    """Look up a protocol and one of its budgets; unknown names raise a one-line error."""
    p = PROTOCOLS.get(protocol)
    return p, p.budget(budget)
