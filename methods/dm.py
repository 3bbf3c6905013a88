"""`dm`: dataset condensation with distribution matching (Zhao & Bilen, WACV 2023; the DC
repository's `main_DM.py`).

Each iteration draws a freshly initialised ConvNet-3 and freezes it; for every class, a real
batch and the class's synthetic images go through one shared DSA draw, and the loss adds the
squared L2 distance between their mean embeddings (the network's penultimate features). One
SGD step on the images (lr 1, momentum 0.5) per iteration; the set starts from real images.

Budgets (iterations, real images per class): ``paper`` 20,000 and 256 as the original;
``quick`` 1,000 and 256 (1/20 of the iterations); ``smoke`` 20 and 32. Real embeddings are
computed without a graph (the original builds one and detaches it): the same loss, less work.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.datasets.base import Dataset
from methods import matching
from methods.base import DistillContext, DistilledSet, check_ipc_fits
from methods.budgeted import BudgetedDistiller
from methods.registry import register_method


def mean_embedding_loss(real_embed: torch.Tensor, syn_embed: torch.Tensor) -> torch.Tensor:
    """DM's per-class term: the squared L2 distance between the batches' mean embeddings."""
    return ((real_embed.mean(0) - syn_embed.mean(0)) ** 2).sum()


@dataclass(frozen=True)
class DMOptions:
    budget: str = "paper"
    iterations: int | None = None
    batch_real: int | None = None  # real images per class and iteration
    lr_img: float | None = None
    momentum: float = 0.5
    init: str = "real"  # real | noise
    dsa: bool = True  # the Siamese augmentation of every pair of batches
    arch: str = "convnet3"  # the embedding network drawn fresh each iteration

    def __post_init__(self) -> None:
        matching.check_init(self.init)


@register_method("dm")
class DistributionMatching(BudgetedDistiller):
    Options = DMOptions
    group = "matching"
    budgets = {"paper": {"iterations": 20000, "batch_real": 256, "lr_img": 1.0},
               "quick": {"iterations": 1000, "batch_real": 256, "lr_img": 1.0},
               "smoke": {"iterations": 20, "batch_real": 32, "lr_img": 1.0}}

    def validate(self, data: Dataset, ipc: int) -> None:
        super().validate(data, ipc)
        matching.check_class_batch(data, self.settings.batch_real, self.name)
        if self.settings.init == "real":
            check_ipc_fits(data, ipc, self.name, " to start '{method}' from real images")

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        s = self.settings
        run = matching.Synthesis.start(data, ipc, seed, s.init, s.lr_img, s.momentum, ctx.device)
        for it in run.iterations(ctx, self.config(), s.iterations, self.name):
            net = run.network(s.arch, it).requires_grad_(False)
            loss = run.images.new_zeros(())
            for c in range(data.num_classes):
                real, syn = run.real(c, s.batch_real), run.of_class(c)
                if s.dsa:
                    real, syn = matching.siamese(real, syn, run.ops, run.generator)
                with torch.no_grad():
                    real_embed = net.embed(real)
                loss = loss + mean_embedding_loss(real_embed, net.embed(syn))
            run.loss = run.step(loss) / data.num_classes
        return run.result({"iterations": s.iterations})
