"""Teachers as the layers above see them: a network trained on a data set's whole real
training split, named by its recipe.

The evaluators train and cache teachers; a method that needs one (herding reads its
features) asks its `DistillContext` for it by recipe, and the runner wires the two together,
so methods never import the evaluators.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.artifacts import content_key
from core.datasets.base import Dataset, normalise
from core.stages import SharedStage

FEATURE_BATCH = 256
# Enters every teacher's cache key and the config of methods that read a teacher: bump it when
# what a teacher recipe trains changes (2: ConvNet as the DC code pads one-channel input, DC's decay).
TEACHER_VERSION = 2
KIND = "teacher"  # the cache kind teachers are saved under


@dataclass(frozen=True)
class TeacherRecipe:
    """How a teacher is trained: its student architecture and width, and the dc recipe's budget."""

    arch: str = "convnet3"
    width: int | None = 32  # None: the architecture's own width
    steps: int = 1500
    batch_size: int = 256
    seed: int = 0


@dataclass
class Teacher:
    """A trained teacher: ``model`` classifies standardised images and its ``embed`` gives the
    penultimate features; ``mean``/``std`` standardise its data set."""

    model: nn.Module
    recipe: TeacherRecipe
    test_acc: float
    key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [0, 1] (on the model's device), in batches."""
        self.model.eval()
        x = normalise(images, self.mean, self.std)
        return torch.cat([self.model.embed(chunk) for chunk in x.split(FEATURE_BATCH)])


TeacherSource = Callable[[Dataset, TeacherRecipe], Teacher]


def teacher_key(data: Dataset, recipe: TeacherRecipe) -> str:
    """The cache key of the teacher of ``recipe`` trained on ``data``."""
    return content_key({"recipe": dataclasses.asdict(recipe), "data": data.fingerprint(),
                        "version": TEACHER_VERSION})


def teacher_stage(data: Dataset, recipe: TeacherRecipe) -> SharedStage:
    """A teacher as a shared stage of a grid (`core.stages`)."""
    width = "its own width" if recipe.width is None else f"width {recipe.width}"
    return SharedStage(f"teacher {recipe.arch} {width}, {recipe.steps} steps", data.name, KIND,
                       teacher_key(data, recipe))
