"""`herding`: per class, greedily pick the real images whose running feature mean best
matches the class mean (Welling, 2009), in the feature space of the data set's teacher
(a ConvNet-3 trained on the real training split, which the context's teacher source provides)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.datasets.base import Dataset
from core.artifacts import ArtifactCache
from core.stages import SharedStage
from core.teachers import TEACHER_VERSION, TeacherRecipe, teacher_stage
from methods.base import DistillContext, DistilledSet, Distiller
from methods.registry import register_method


def herding_order(features: torch.Tensor, k: int) -> list[int]:
    """Greedy herding: at each step add the row that brings the running mean of the chosen
    rows closest (L2) to the mean of all rows. Returns ``k`` distinct row indices."""
    target = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(target)
    available = torch.ones(features.shape[0], dtype=torch.bool)
    for step in range(1, k + 1):
        candidate_means = (running.unsqueeze(0) + features) / step
        dist = (candidate_means - target).norm(dim=1)
        dist[~available] = float("inf")
        best = int(dist.argmin())
        chosen.append(best)
        available[best] = False
        running += features[best]
    return chosen


@dataclass(frozen=True)
class HerdingOptions:
    teacher_steps: int = 1500  # optimiser steps of the feature teacher (batch 256)


@register_method("herding")
class Herding(Distiller):
    Options = HerdingOptions
    group = "selection"
    selects_real = True
    deterministic = True

    def _recipe(self) -> TeacherRecipe:
        return TeacherRecipe(steps=self.options.teacher_steps)

    def config(self) -> dict:
        return {**super().config(), "features": "teacher penultimate layer", "teacher_version": TEACHER_VERSION}

    def prepare(self, data: Dataset, ctx: DistillContext) -> None:
        ctx.report(f"training the herding teacher for {data.name}")
        ctx.teacher(data, self._recipe())

    def shared_stages(self, data: Dataset, cache: ArtifactCache) -> list[SharedStage]:
        return [teacher_stage(data, self._recipe())]

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        return self.select(data, ipc, ctx, herding_order)

    def select(self, data: Dataset, ipc: int, ctx: DistillContext,
               order: Callable[[torch.Tensor, int], list[int]]) -> DistilledSet:
        """Per class, the ``ipc`` real images ``order`` picks from their teacher features."""
        teacher = ctx.teacher(data, self._recipe())
        images = data.train.float_images()
        feats = teacher.features(images.to(ctx.device)).cpu()
        picks = []
        for c in range(data.num_classes):
            members = data.train.indices_of(c)
            picks.append(members[torch.tensor(order(feats[members], ipc), dtype=torch.long)])
        idx = torch.cat(picks)
        return DistilledSet(images[idx], data.train.labels[idx].clone(),
                            meta={"indices": idx.tolist(), "teacher_test_acc": teacher.test_acc,
                                  "teacher_key": teacher.key})
