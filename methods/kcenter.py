"""`kcenter`: per class, greedy k-center (the coreset baseline of the DC paper's Table 1, after
Sener & Savarese, 2018) in the feature space `herding` uses (the data set's teacher, a
ConvNet-3 trained on the real training split).

The first center is the image whose features lie nearest the class mean (the DC code ships no
k-center, and this start makes the pick deterministic, as herding is); each next one is the
image farthest (L2) from every center chosen so far, which greedily shrinks the largest
distance from an image of the class to its nearest center.
"""
from __future__ import annotations

import torch

from core.datasets.base import Dataset
from methods.base import DistillContext, DistilledSet
from methods.herding import Herding
from methods.registry import register_method


def kcenter_order(features: torch.Tensor, k: int) -> list[int]:
    """Greedy k-center over the rows of ``features``: the row nearest the mean, then at each step
    the row whose distance to its nearest chosen row is largest (lowest index on a tie).
    Returns ``k`` distinct row indices."""
    first = int((features - features.mean(0)).norm(dim=1).argmin())
    chosen = [first]
    nearest = (features - features[first]).norm(dim=1)  # each row's distance to its nearest center
    for _ in range(k - 1):
        nearest[chosen] = -1.0  # a chosen row is never picked again
        best = int(nearest.argmax())
        chosen.append(best)
        nearest = torch.minimum(nearest, (features - features[best]).norm(dim=1))
    return chosen


@register_method("kcenter")
class KCenter(Herding):
    """Herding's teacher and options; only the greedy order differs."""

    def config(self) -> dict:
        return {**super().config(), "start": "nearest the class mean"}

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        return self.select(data, ipc, ctx, kcenter_order)
