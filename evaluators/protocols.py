"""Evaluation protocols as frozen, named data, with their named budgets.

A protocol is a recipe (optimiser, schedule, augmentation, labels, selection); a budget
scales only its sizes (epochs, optimiser steps for the full-data reference, student width,
default number of seeds). Every result row carries both names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from benchmark.errors import UnknownNameError
from benchmark.registry import Registry


@dataclass(frozen=True)
class Budget:
    """The sizes of one protocol run."""

    name: str
    epochs: int
    full_steps: int  # optimiser steps for the `full` reference (whole training split)
    seeds: int  # default number of student seeds
    student_width: int | None = None  # None keeps the architecture's own width
    description: str = ""


@dataclass(frozen=True)
class Schedule:
    """A training schedule in optimiser steps."""

    steps: int
    batch_size: int
    milestones: tuple[int, ...]  # steps at which the learning rate is multiplied by gamma
    gamma: float


@dataclass(frozen=True)
class Protocol:
    """A named evaluation recipe shared by every method."""

    name: str
    description: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    lr_gamma: float
    decay_at: tuple[float, ...]  # fractions of training at which the learning rate decays
    extra_epoch: bool  # the DC code trains E+1 epochs and decays at E//2+1
    augmentation: str | None
    labels: str  # "hard" or "soft"
    selection: str  # "last": report the last epoch (no selection)
    budgets: dict[str, Budget] = field(default_factory=dict)

    def budget(self, name: str) -> Budget:
        try:
            return self.budgets[name]
        except KeyError:
            raise UnknownNameError(f"budget of protocol '{self.name}'", name, self.budgets) from None

    def schedule(self, budget: Budget, num_images: int) -> Schedule:
        """The schedule for training on a distilled set of ``num_images`` images."""
        steps_per_epoch = max(1, math.ceil(num_images / self.batch_size))
        epochs = budget.epochs + (1 if self.extra_epoch else 0)
        if self.extra_epoch:
            milestones = tuple((int(budget.epochs * f) + 1) * steps_per_epoch for f in self.decay_at)
        else:
            milestones = tuple(int(budget.epochs * f) * steps_per_epoch for f in self.decay_at)
        return Schedule(epochs * steps_per_epoch, self.batch_size, milestones, self.lr_gamma)

    def full_schedule(self, budget: Budget) -> Schedule:
        """The schedule of the `full` reference, sized in optimiser steps."""
        milestones = tuple(int(budget.full_steps * f) for f in self.decay_at)
        return Schedule(budget.full_steps, self.batch_size, milestones, self.lr_gamma)


PROTOCOLS: Registry[Protocol] = Registry("protocol", check=lambda p: isinstance(p, Protocol))
register_protocol = PROTOCOLS.register


def _register(protocol: Protocol) -> Protocol:
    PROTOCOLS.add(protocol.name, protocol)
    return protocol


DC = _register(
    Protocol(
        name="dc",
        description="DC/DSA/DM hard-label protocol: SGD, no augmentation, last-epoch test accuracy",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=256,
        lr_gamma=0.1,
        decay_at=(0.5,),
        extra_epoch=True,
        augmentation=None,
        labels="hard",
        selection="last",
        budgets={
            "paper": Budget(
                "paper", epochs=300, full_steps=4300, seeds=5,
                description="as published: 300 (+1) epochs, ConvNet width 128; full data 4,300 steps (~20 epochs)",
            ),
            "quick": Budget(
                "quick", epochs=300, full_steps=1500, seeds=3, student_width=32,
                description="2-core CPU: 300 (+1) epochs, student width 32; full data 1,500 steps (~7 epochs)",
            ),
            "smoke": Budget(
                "smoke", epochs=50, full_steps=50, seeds=2, student_width=16,
                description="seconds, for tests: 50 (+1) epochs, student width 16; full data 50 steps",
            ),
        },
    )
)


def resolve(protocol: str, budget: str) -> tuple[Protocol, Budget]:
    """Look up a protocol and one of its budgets; unknown names raise a one-line error."""
    p = PROTOCOLS.get(protocol)
    return p, p.budget(budget)
