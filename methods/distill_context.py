"""The context the runner hands a method: the artifact cache, the device, a status callback and
the source of teachers. Its own module, so that `methods.base` and `methods.plugins` both use it
without importing each other."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.artifacts import ArtifactCache
from core.datasets.base import Dataset
from core.teachers import Teacher, TeacherRecipe, TeacherSource


@dataclass
class DistillContext:
    """What the runner hands a method: the artifact cache, the device, a status callback, and
    the source of teachers (the evaluators train and cache them)."""

    cache: ArtifactCache
    device: torch.device
    report: Callable[[str], None] = lambda message: None
    teachers: TeacherSource | None = None

    def teacher(self, data: Dataset, recipe: TeacherRecipe) -> Teacher:
        """The teacher of ``recipe`` on ``data``: from the cache, or trained now."""
        if self.teachers is None:
            raise RuntimeError("this DistillContext was built without a teacher source")
        return self.teachers(data, recipe)
