"""Scoring a distilled set: train a student from scratch under a protocol, test on real data.

The test split is scored only after training (twice when the protocol selects an epoch on the
validation split: the selected weights and the last ones); it never influences training.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from core.artifacts import ArtifactCache
from core.datasets.base import Dataset, normalise
from core.distilled import check_distilled
from core.archs import StudentShape, build_student
from core.augment import Standardisation
from evaluators.protocols import Budget, Protocol
from evaluators.teacher import teacher_for
from evaluators.batched import train_batched
from evaluators.batching import BATCHED, SEPARATE
from evaluators.compiling import compiled as compiled_student
from evaluators.train import TrainOutcome, Validation, accuracy, train


@dataclass(frozen=True)
class EvalResult:
    """What one student run measured."""

    test_acc: float  # percent, at the protocol's reported epoch (selected on validation, or the last)
    test_acc_last: float  # percent, after the last epoch
    val_acc: float | None  # validation accuracy of the selected weights (selection protocols only)
    selected_step: int | None
    train_steps: int
    train_s: float
    test_s: float
    final_loss: float
    student_width: int | None
    teacher_test_acc: float | None  # the relabelling teacher's own test accuracy (softlabel)
    # Selection protocols: the best test accuracy over the scorings, as the IDC and Minimax code
    # and the EVLF paper's tables report it. It is selected on the test set: shown only beside the
    # papers' numbers, labelled, never on a measured leaderboard.
    test_acc_best_seen: float | None = None


BEST_SEEN_LABEL = "selected on the test set, as published"


def _test_split(data: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return normalise(data.test.float_images().to(device), data.mean, data.std), data.test.labels.to(device)


def _validation_split(data: Dataset, device: torch.device) -> Validation:
    return Validation(normalise(data.val.float_images().to(device), data.mean, data.std), data.val.labels.to(device))


def _student(data: Dataset, arch: str, budget: Budget, seed: int, device: torch.device) -> torch.nn.Module:
    """A fresh student initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_student(arch, StudentShape.of(data), width=budget.student_width).to(device)


def _normalised(images: torch.Tensor, labels: torch.Tensor, data: Dataset,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The set as students read it, on ``device``."""
    return normalise(images.to(device, torch.float32), data.mean, data.std), labels.to(device)


def _student_and_set(images: torch.Tensor, labels: torch.Tensor, data: Dataset, arch: str, budget: Budget,
                     seed: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A fresh student initialised from ``seed``, and the set normalised on ``device``."""
    return _student(data, arch, budget, seed, device), *_normalised(images, labels, data, device)


def reported_score(scores: Sequence[float], protocol: Protocol) -> float:
    """The validation accuracy of the weights a protocol reports, from its scorings in order: the
    best for a protocol that selects on validation (ties: the earlier), else the last."""
    return max(scores) if protocol.selection == "val" else scores[-1]


def score_on_validation(images: torch.Tensor, labels: torch.Tensor, data: Dataset, arch: str, protocol: Protocol,
                        budget: Budget, seed: int, device: torch.device, ipc: int, scorings: int,
                        on_score: Callable[[int, float], None] | None = None, compiled: bool = False) -> float:
    """A tuning candidate's score: the student trained as `evaluate_set` trains it, scored on the
    validation split ``scorings`` times (``on_score`` gets each (step, accuracy)); the result is
    the accuracy of the weights the protocol reports (the last ones, or the best-scored ones
    for a protocol that selects on validation). It never reads the test split. ``compiled``: the
    training step runs through `torch.compile` (`evaluators.compiling`)."""
    check_distilled(images, labels, data)
    if protocol.labels == "teacher":
        raise ValueError(f"protocol '{protocol.name}' relabels with a teacher; tuning scores hard-label protocols")
    student, x, y = _student_and_set(images, labels, data, arch, budget, seed, device)
    schedule = protocol.schedule(budget, x.shape[0], ipc, data.num_classes)
    # ceil: at most ``scorings`` scorings, the last one after the last step
    schedule = dataclasses.replace(schedule, eval_every=max(1, -(-schedule.steps // max(1, scorings))))
    scores: list[float] = []

    def record(step: int, value: float) -> None:
        scores.append(value)
        if on_score is not None:
            on_score(step, value)

    train(student, x, y, protocol, schedule, seed, validation=_validation_split(data, device),
          standardisation=Standardisation(tuple(data.mean), tuple(data.std)), on_validation=record,
          forward=compiled_student(student) if compiled else None)
    return reported_score(scores, protocol)


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
    cache: ArtifactCache | None = None,
    ipc: int | None = None,
    compiled: bool = False,
) -> EvalResult:
    """Train ``arch`` on (images in [0, 1], labels) and return its real test accuracy.

    ``full_data`` selects the step-sized schedule of the full-training-split reference;
    ``compiled``: the training steps run through `torch.compile`.
    """
    return evaluate_students([(images, labels)], data, arch, protocol, budget, [seed], device, full_data,
                             on_progress, cache, ipc, compiled=compiled)[0]


def evaluate_students(
    sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
    data: Dataset,
    arch: str,
    protocol: Protocol,
    budget: Budget,
    seeds: Sequence[int],
    device: torch.device,
    full_data: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    cache: ArtifactCache | None = None,
    ipc: int | None = None,
    mode: str = SEPARATE,
    compiled: bool = False,
) -> list[EvalResult]:
    """`evaluate_set` of student ``i`` on ``sets[i]`` with seed ``seeds[i]``: one by one, or
    stacked into one model (``mode`` `BATCHED`, `evaluators.batched`) with the same results
    within float tolerance. A stacked training's seconds are shared equally by its students.
    ``compiled``: students trained one by one take their steps through `torch.compile`."""
    if not full_data:
        for images, labels in sets:
            check_distilled(images, labels, data)
    teacher, teacher_acc = None, None
    if protocol.labels == "teacher":
        if cache is None:
            raise ValueError(f"protocol '{protocol.name}' needs the artifact cache for its teacher")
        t = teacher_for(data, arch, budget, cache, device)
        teacher, teacher_acc = t.model.eval(), t.test_acc
    # one device copy per distinct set: a cell's seeds of a deterministic method, or of `full`,
    # share one (the whole training split of a large data set is gigabytes)
    copies: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    students = []
    for (images, labels), seed in zip(sets, seeds, strict=True):
        key = (images.data_ptr(), tuple(images.shape), labels.data_ptr())
        if key not in copies:
            copies[key] = _normalised(images, labels, data, device)
        students.append((_student(data, arch, budget, seed, device), *copies[key]))
    n = students[0][1].shape[0]
    schedule = protocol.full_schedule(budget) if full_data else protocol.schedule(budget, n, ipc, data.num_classes)
    validation = _validation_split(data, device) if schedule.eval_every else None
    seen: list[list[float]] = [[] for _ in students]  # test accuracy at each scoring: the published metric
    test: tuple[torch.Tensor, torch.Tensor] | None = None
    if validation is not None:  # only then is the test split needed while the students train
        test = _test_split(data, device)
    stats = Standardisation(tuple(data.mean), tuple(data.std))
    if mode == BATCHED and len(students) > 1:
        outcomes = train_batched([m for m, _, _ in students], [(x, y) for _, x, y in students], protocol, schedule,
                                 seeds, on_progress, teacher=teacher, validation=validation,
                                 observe=(lambda i, model: seen[i].append(accuracy(model, *test))) if test else None,
                                 standardisation=stats)
        for outcome in outcomes:
            outcome.seconds /= len(outcomes)
    else:
        outcomes = [train(model, x, y, protocol, schedule, seed, on_progress, teacher=teacher, validation=validation,
                          observe=(lambda model, i=i: seen[i].append(accuracy(model, *test))) if test else None,
                          standardisation=stats, forward=compiled_student(model) if compiled else None)
                    for i, ((model, x, y), seed) in enumerate(zip(students, seeds))]
    test_x, test_y = test or _test_split(data, device)
    return [_tested(model, outcome, test_x, test_y, budget, teacher_acc, max(s) if s else None)
            for (model, _, _), outcome, s in zip(students, outcomes, seen)]


def _tested(student: torch.nn.Module, outcome: TrainOutcome, test_x: torch.Tensor, test_y: torch.Tensor,
            budget: Budget, teacher_acc: float | None, best_seen: float | None) -> EvalResult:
    """A trained student's result: test accuracy of its last weights and of the selected ones."""
    start = time.perf_counter()
    last = accuracy(student, test_x, test_y)
    selected = last
    if outcome.selected_state is not None and outcome.selected_step != outcome.steps:
        student.load_state_dict(outcome.selected_state)
        selected = accuracy(student, test_x, test_y)
    return EvalResult(selected, last, outcome.val_acc, outcome.selected_step, outcome.steps, outcome.seconds,
                      time.perf_counter() - start, outcome.final_loss, budget.student_width, teacher_acc, best_seen)
