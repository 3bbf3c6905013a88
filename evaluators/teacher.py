"""Teachers: a student architecture trained on the whole real training split, cached.

The evaluators own them: the soft-label protocol relabels with one, the image-quality metrics
judge in one's feature space, and methods that need one (herding) receive this module's
`teacher_source` through their context. The cache key covers the recipe and the data
fingerprint, and the teacher's own test accuracy is stored beside its weights so every row
that used it can report it. `prepare` trains what evaluating a grid needs, once, in the driver.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from core.artifacts import ArtifactCache
from core.datasets.base import Dataset, normalise
from core.stages import SharedStage
from core.teachers import KIND, Teacher, TeacherRecipe, TeacherSource, teacher_key, teacher_stage
from core.archs import StudentShape, build_student
from evaluators.protocols import DC, Budget, Protocol, Schedule
from evaluators.train import accuracy, train

def get_teacher(data: Dataset, recipe: TeacherRecipe, cache: ArtifactCache, device: torch.device) -> Teacher:
    """Load the teacher for (data, recipe) from the cache, training it on first use."""
    key = teacher_key(data, recipe)

    def build() -> dict:
        torch.manual_seed(recipe.seed)
        model = build_student(recipe.arch, StudentShape.of(data), width=recipe.width).to(device)
        x = normalise(data.train.float_images().to(device), data.mean, data.std)
        y = data.train.labels.to(device)
        schedule = Schedule(recipe.steps, recipe.batch_size, (recipe.steps // 2,), 0.1,
                            reset_momentum=DC.decay_new_optimizer)
        train(model, x, y, DC, schedule, recipe.seed)  # the dc recipe: SGD, no augmentation
        test_x = normalise(data.test.float_images().to(device), data.mean, data.std)
        acc = accuracy(model, test_x, data.test.labels.to(device))
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "test_acc": acc}

    state = cache.get_or_build(KIND, key, build, meta={"recipe": dataclasses.asdict(recipe),
                                                            "dataset": data.name})
    model = build_student(recipe.arch, StudentShape.of(data), width=recipe.width)
    model.load_state_dict(state["state_dict"])
    return Teacher(model.to(device).eval(), recipe, float(state["test_acc"]), key, data.mean, data.std)


def teacher_source(cache: ArtifactCache, device: torch.device) -> TeacherSource:
    """What a method's context asks for a teacher by recipe: cached, or trained now."""
    return lambda data, recipe: get_teacher(data, recipe, cache, device)


def teacher_for(data: Dataset, arch: str, budget: Budget, cache: ArtifactCache, device: torch.device) -> Teacher:
    """The teacher a protocol budget uses for ``arch``: the same network and width as the
    student, trained on the whole training split for the budget's full-data steps."""
    return get_teacher(data, label_recipe(arch, budget), cache, device)


def quality_teacher(data: Dataset, budget: Budget, cache: ArtifactCache, device: torch.device) -> Teacher:
    """The judge of image-quality metrics: ConvNet-3 width 32, at most 1,500 steps, so every
    budget above `smoke` shares one teacher per data set (the one herding uses by default)."""
    return get_teacher(data, quality_recipe(budget), cache, device)


def quality_recipe(budget: Budget) -> TeacherRecipe:
    """The recipe of the judge of image-quality metrics under ``budget``."""
    return TeacherRecipe(steps=min(TeacherRecipe.steps, budget.full_steps))


def label_recipe(arch: str, budget: Budget) -> TeacherRecipe:
    """The recipe of the teacher a soft-label protocol relabels with under ``budget``."""
    return TeacherRecipe(arch=arch, width=budget.student_width, steps=budget.full_steps)


def shared_stages(data: Dataset, arch: str, protocol: Protocol, budget: Budget, quality: bool = True) -> list[SharedStage]:
    """The teachers `prepare` trains, as `bench plan` counts them."""
    recipes = ([quality_recipe(budget)] if quality else []) + (
        [label_recipe(arch, budget)] if protocol.labels == "teacher" else [])
    return [teacher_stage(data, recipe) for recipe in recipes]


def prepare(data: Dataset, arch: str, protocol: Protocol, budget: Budget, cache: ArtifactCache,
            device: torch.device, report: Callable[[str], None] = lambda message: None, quality: bool = True) -> None:
    """Train (or find in the cache) every teacher that evaluating sets of ``data`` with ``arch``
    under (protocol, budget) will use, so that concurrent trials never train the same one;
    ``quality`` False skips the judge of the image-quality metrics (the whole-data reference has none)."""
    if quality:
        report(f"training the quality teacher for {data.name}")
        quality_teacher(data, budget, cache, device)
    if protocol.labels == "teacher":
        report(f"training the {arch} teacher for {data.name}")
        teacher_for(data, arch, budget, cache, device)
