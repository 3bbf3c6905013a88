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

# Enters every run's hash: bump it when a protocol or a student changes what it computes.
# 2: students as the reference code builds them (ConvNet pads one-channel input by 3, IDC's
# ResNetAP and ResNet-18 stems and initialisation), DC's decay with a new optimiser one epoch
# later, IDC's colour augmentation on [0, 1] images, its epoch table and scoring period.
PROTOCOL_VERSION = 2


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
    reset_momentum: bool = False  # at each milestone the optimiser starts afresh (DC builds a new one)

    def images_per_step(self, num_images: int) -> int:
        """The size of a full training batch on a set of ``num_images`` images."""
        return min(self.batch_size, num_images)


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
    # A step schedule decays after epoch E * num // den + decay_offset of E, for each (num, den):
    # exact integers, as the reference code computes them (2 * E // 3, not int(E * 0.666...)).
    decay_at: tuple[tuple[int, int], ...]
    extra_epoch: bool  # the DC code trains E+1 epochs
    augmentation: str | None  # a key of core.augment.AUGMENTATIONS
    cutmix: bool  # CutMix (beta 1) on every batch
    labels: str  # "hard": the set's labels; "teacher": online relabelling by the dataset teacher
    temperature: float  # for teacher labels: KL divergence at this temperature
    selection: str  # "last": report the last epoch; "val": select the epoch on the validation split
    evals: int = 10  # validation scorings over training when selection == "val"
    decay_offset: int = 0  # epochs added to each decay point (DC: its index E//2+1 is the 152nd of 301 epochs)
    decay_new_optimizer: bool = False  # the decay builds a new optimiser (DC), so momentum restarts
    # (max IPC, epochs), the last max IPC None for any larger IPC; empty: the budget's epochs
    epochs_by_ipc: tuple[tuple[int | None, int], ...] = ()
    # IDC's rule for 100-class data: epochs x num / den, rounded down to a multiple of 100
    epochs_at_100_classes: tuple[int, int] | None = None
    budgets: dict[str, Budget] = field(default_factory=dict)

    def budget(self, name: str) -> Budget:
        try:
            return self.budgets[name]
        except KeyError:
            raise UnknownNameError(f"budget of protocol '{self.name}'", name, self.budgets) from None

    def epochs(self, budget: Budget, ipc: int | None, num_classes: int | None = None) -> int:
        if not self.epochs_by_ipc or ipc is None:
            return budget.epochs
        epochs = self.epochs_by_ipc[-1][1]
        for max_ipc, table_epochs in self.epochs_by_ipc:
            if max_ipc is None or ipc <= max_ipc:
                epochs = table_epochs
                break
        if self.epochs_at_100_classes and num_classes == 100:
            num, den = self.epochs_at_100_classes
            epochs = epochs * num // den
            epochs -= epochs % 100
        return max(1, round(epochs * budget.epoch_scale))

    def schedule(self, budget: Budget, num_images: int, ipc: int | None = None,
                 num_classes: int | None = None) -> Schedule:
        """The schedule for training on a distilled set of ``num_images`` images."""
        steps_per_epoch = max(1, math.ceil(num_images / self.batch_size))
        epochs = self.epochs(budget, ipc, num_classes)
        total = epochs + (1 if self.extra_epoch else 0)
        milestones = tuple(min(total, epochs * num // den + self.decay_offset) * steps_per_epoch
                           for num, den in self.decay_at)
        return self._finish(Schedule(total * steps_per_epoch, self.batch_size, milestones, self.lr_gamma))

    def full_schedule(self, budget: Budget) -> Schedule:
        """The schedule of the `full` reference, sized in optimiser steps."""
        milestones = tuple(budget.full_steps * num // den for num, den in self.decay_at)
        return self._finish(Schedule(budget.full_steps, self.batch_size, milestones, self.lr_gamma))

    def _finish(self, s: Schedule) -> Schedule:
        every = max(1, s.steps // self.evals) if self.selection == "val" else 0
        return Schedule(s.steps, s.batch_size, s.milestones, s.gamma, eval_every=every,
                        reset_momentum=self.decay_new_optimizer)


PROTOCOLS: Registry[Protocol] = Registry("protocol", check=lambda p: isinstance(p, Protocol))


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS.add(protocol.name, protocol)
    return protocol


_SGD = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4)

DC = register_protocol(Protocol(
    name="dc",
    description="DC/DSA/DM hard-label protocol: SGD, no augmentation, last-epoch test accuracy",
    **_SGD, batch_size=256, lr_schedule="step", lr_gamma=0.1, decay_at=((1, 2),), extra_epoch=True,
    decay_offset=2, decay_new_optimizer=True, augmentation=None, cutmix=False, labels="hard", temperature=1.0,
    selection="last",
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
    **_SGD, batch_size=64, lr_schedule="step", lr_gamma=0.2, decay_at=((2, 3), (5, 6)), extra_epoch=False,
    augmentation="idc", cutmix=True, labels="hard", temperature=1.0, selection="val",
    evals=100,  # IDC scores every E // 100 epochs; its best-seen accuracy is the maximum over them
    epochs_by_ipc=((1, 3000), (10, 2000), (50, 1500), (200, 1000), (500, 500), (None, 300)),  # IDC's ipc_epoch
    epochs_at_100_classes=(2, 3),
    budgets={
        "paper": Budget("paper", epochs=0, full_steps=8600, seeds=3, epoch_scale=1.0,
                        description="as published: 3000 / 2000 / 1500 / 1000 / 500 / 300 epochs up to "
                                    "IPC 1 / 10 / 50 / 200 / 500 / above (2/3 of them on 100 classes)"),
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
