"""`full`: the reference row, a student trained on the whole real training split.

It does not depend on IPC; the runner trains it once per (data set, protocol, budget,
arch, seed) with the budget's step-sized schedule and shows it beside every IPC column.
"""
from __future__ import annotations

from core.datasets.base import Dataset
from methods.base import DistillContext, DistilledSet, Distiller
from methods.registry import register_method


@register_method("full")
class FullData(Distiller):
    group = "reference"
    reference = True

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        return DistilledSet(data.train.float_images(), data.train.labels, meta={"reference": "full"})
