"""Several students of one architecture trained on one set as one model (``torch.func``).

The students of a cell differ only in their seed: initial weights, data order, augmentation and
CutMix draws. Here their weights are stacked into one tensor per parameter
(`torch.func.stack_module_state`) and one forward pass runs them all (`torch.func.vmap` over
`torch.func.functional_call`); each student draws its batch from its own `StudentStream`, so it
sees exactly the batches it would see alone. The loss is the sum of the students' losses, so
each student's gradient is its own, and the protocol's optimisers update elementwise: after
any number of steps every student's weights equal those of separate training within float
tolerance (``tests/test_batched_students.py``). One launch instead of S is what a GPU wants;
whether it pays on a device is measured, not assumed (`evaluators.batching`).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from core.augment import Standardisation
from evaluators.protocols import Protocol, Schedule
from evaluators.train import (StudentStream, TrainOutcome, Validation, batch_loss, check_inputs, make_lr_schedule,
                              make_optimizer, scoring_due, select)


class StackedStudents:
    """S students of one architecture as stacked weights and one vmapped forward pass."""

    def __init__(self, models: Sequence[nn.Module]):
        self.models = list(models)
        params, buffers = stack_module_state(self.models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.skeleton = copy.deepcopy(self.models[0]).to("meta")  # the architecture, without weights

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.skeleton, (p, b), (x,))

        self._each = vmap(one)  # a batch per student
        self._shared = vmap(one, in_dims=(0, 0, None))  # one batch for every student

    def __len__(self) -> int:
        return len(self.models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [S, B, classes] of each student on its own batch x[s]."""
        self.skeleton.train()
        return self._each(self.params, self.buffers, x)

    @torch.inference_mode()
    def accuracies(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> list[float]:
        """Every student's top-1 accuracy in percent on the same images (as `evaluators.train.accuracy`)."""
        self.skeleton.eval()
        correct = torch.zeros(len(self), dtype=torch.long, device=labels.device)
        for x, y in zip(images.split(batch_size), labels.split(batch_size)):
            correct += (self._shared(self.params, self.buffers, x).argmax(-1) == y).sum(1)
        return [100.0 * int(c) / max(1, labels.shape[0]) for c in correct]

    def state_of(self, i: int) -> dict[str, torch.Tensor]:
        """Student ``i``'s state dict (a copy), as its own module would give it."""
        stacked = self.params | self.buffers
        return {k: stacked[k][i].detach().clone() for k in self.models[i].state_dict()}

    def write_back(self) -> None:
        """Load every student's current weights into its module."""
        for i, model in enumerate(self.models):
            model.load_state_dict(self.state_of(i))


def train_batched(
    models: Sequence[nn.Module],
    sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
    protocol: Protocol,
    schedule: Schedule,
    seeds: Sequence[int],
    on_progress: Callable[[int, int], None] | None = None,
    teacher: nn.Module | None = None,
    validation: Validation | None = None,
    observe: Callable[[int, nn.Module], None] | None = None,
    standardisation: Standardisation | None = None,
) -> list[TrainOutcome]:
    """`evaluators.train.train` of ``models[i]`` on ``sets[i]`` (normalised images, labels) with
    seed ``seeds[i]``, all at once: one set for every seed of a deterministic method, or a set per
    seed, of one size (a step's batches must stack). The modules hold their final weights
    afterwards. ``observe`` gets (student index, its module in eval mode) at every scoring."""
    if not models or not len(models) == len(sets) == len(seeds):
        raise ValueError(f"one set and one seed per student: {len(models)} students, {len(sets)} sets, "
                         f"{len(seeds)} seeds")
    if len({int(x.shape[0]) for x, _ in sets}) != 1:
        raise ValueError("stacked students train on sets of one size (their batches must stack)")
    check_inputs(protocol, schedule, teacher, validation, standardisation)
    stack = StackedStudents(models)
    streams = [StudentStream(x, y, protocol, schedule, seed, standardisation) for (x, y), seed in zip(sets, seeds)]
    resets = set(schedule.milestones) if schedule.reset_momentum else set()
    optimizer = make_optimizer(stack.params.values(), protocol)
    lr_schedule = make_lr_schedule(optimizer, protocol, schedule)
    report_every = max(1, schedule.steps // 20)
    outcomes = [TrainOutcome(schedule.steps, 0.0, math.nan) for _ in models]
    best = [-1.0] * len(models)
    start, losses = time.perf_counter(), [torch.tensor(math.nan)] * len(models)
    for step in range(1, schedule.steps + 1):
        batches = [s.next() for s in streams]
        out = stack.forward(torch.stack([b.x for b in batches]))
        teacher_out: torch.Tensor | None = None
        if protocol.labels == "teacher":
            with torch.no_grad():
                teacher_out = teacher(torch.cat([b.x for b in batches])).view(len(batches), -1, out.shape[-1])
        losses = [batch_loss(out[i], b, protocol, None if teacher_out is None else teacher_out[i])
                  for i, b in enumerate(batches)]
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()  # student i's gradient comes from its own loss only
        optimizer.step()
        lr_schedule.step()
        if step in resets:
            optimizer.state.clear()
        if scoring_due(step, schedule):
            vals = stack.accuracies(validation.images, validation.labels)
            if observe is not None:
                stack.write_back()
                for i, model in enumerate(models):
                    observe(i, model.eval())
            for i, val in enumerate(vals):
                best[i] = select(outcomes[i], step, val, best[i], lambda i=i: stack.state_of(i))
        if on_progress is not None and step % report_every == 0:
            on_progress(step, schedule.steps)
    stack.write_back()
    seconds = time.perf_counter() - start
    for outcome, loss in zip(outcomes, losses):
        outcome.seconds, outcome.final_loss = seconds, float(loss.detach())
    return outcomes
