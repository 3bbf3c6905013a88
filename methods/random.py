"""`random`: IPC real training images per class, drawn with the run's seed."""
from __future__ import annotations

import torch

from core.datasets.base import Dataset
from methods.base import DistillContext, DistilledSet, Distiller
from methods.registry import register_method


def random_indices(labels: torch.Tensor, num_classes: int, ipc: int, seed: int | torch.Generator) -> torch.Tensor:
    """Indices of ``ipc`` images per class; one generator (``seed``'s, or a fresh one given)
    drawn class by class, so a seed gives the same subset on every machine and in every process."""
    generator = torch.Generator().manual_seed(seed) if isinstance(seed, int) else seed
    picks = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c, as_tuple=False).flatten()
        picks.append(members[torch.randperm(members.numel(), generator=generator)[:ipc]])
    return torch.cat(picks)


@register_method("random")
class RandomSubset(Distiller):
    group = "baseline"
    selects_real = True

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        idx = random_indices(data.train.labels, data.num_classes, ipc, seed)
        return DistilledSet(data.train.images[idx].float() / 255.0, data.train.labels[idx].clone(),
                            meta={"indices": idx.tolist()})
