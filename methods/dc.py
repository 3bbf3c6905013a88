"""`dc`: dataset condensation with gradient matching (Zhao, Mopuri & Bilen, ICLR 2021; the DC
repository's `main.py`, `utils.match_loss` and `get_loops`).

Each iteration draws a freshly initialised ConvNet-3. In each of its outer steps, for every
class, the network's weight gradients of the cross-entropy on a real batch of the class and on
the class's synthetic images are matched: per layer, per output unit, 1 - cosine of the two
gradient rows, summed (biases and norm parameters contribute nothing, as in the original). One
SGD step on the images (lr 0.1, momentum 0.5) per outer step; between outer steps the network
trains ``inner_loop`` epochs on the current synthetic set (SGD lr 0.01, batch 256). The loops
come from the original's table by IPC (1: 1/1, 10: 10/50, 20: 20/25, 30: 30/20, 40: 40/15,
50: 50/10); another IPC needs ``outer_loop`` and ``inner_loop`` set.

Budgets (iterations, real images per class, loops): ``paper`` 1,000 and 256 as the original,
loops by the table; ``quick`` 100 (1/10 of the iterations), the rest as ``paper``; ``smoke`` 2,
16, and 2 outer / 2 inner steps whatever the IPC. `dsa` is this method with the Siamese
augmentation on and real-image initialisation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from core.datasets.base import Dataset
from core.errors import BenchError
from methods import matching
from methods.base import DistillContext, DistilledSet, check_ipc_fits
from methods.budgeted import BudgetedDistiller
from methods.registry import register_method

# the original's outer and inner loops by IPC (`utils.get_loops`)
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def layer_distance(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """One layer's gradient distance: rows are output units (a convolution's kernel flattened),
    each contributes 1 - cos(real row, syn row); a one-dimensional gradient (bias, norm) adds 0."""
    if real.dim() == 1:
        return real.new_zeros(())
    real, syn = real.flatten(1), syn.flatten(1)
    cos = (real * syn).sum(1) / (real.norm(dim=1) * syn.norm(dim=1) + 1e-6)
    return (1 - cos).sum()


def gradient_distance(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor]) -> torch.Tensor:
    """The DC distance between two lists of per-parameter gradients: the sum over layers."""
    return torch.stack([layer_distance(r, s) for r, s in zip(real, syn, strict=True)]).sum()


def loops_for(ipc: int, outer: int, inner: int, method: str) -> tuple[int, int]:
    """(outer, inner) steps per iteration: the options where set (> 0), else the table's."""
    if outer > 0 and inner > 0:
        return outer, inner
    if ipc not in LOOPS:
        raise BenchError(f"method '{method}' has no outer/inner loops for IPC {ipc} (the original's table: "
                         f"{', '.join(map(str, LOOPS))}); set outer_loop and inner_loop, e.g. "
                         f"{method}[outer_loop=10,inner_loop=50]")
    return LOOPS[ipc]


@dataclass(frozen=True)
class DCOptions:
    budget: str = "paper"
    iterations: int | None = None
    batch_real: int | None = None  # real images per class and outer step
    batch_train: int | None = None  # the network's batch on the synthetic set
    lr_img: float | None = None
    lr_net: float | None = None
    outer_loop: int | None = None  # 0: the original's table by IPC
    inner_loop: int | None = None
    momentum: float = 0.5
    init: str = "noise"  # noise | real
    dsa: bool = False  # the Siamese augmentation of every pair of batches (the `dsa` method)
    arch: str = "convnet3"

    def __post_init__(self) -> None:
        matching.check_init(self.init)


PAPER = {"iterations": 1000, "batch_real": 256, "batch_train": 256, "lr_img": 0.1, "lr_net": 0.01,
         "outer_loop": 0, "inner_loop": 0}


@register_method("dc")
class GradientMatching(BudgetedDistiller):
    Options = DCOptions
    group = "matching"
    budgets = {"paper": PAPER, "quick": {**PAPER, "iterations": 100},
               "smoke": {**PAPER, "iterations": 2, "batch_real": 16, "outer_loop": 2, "inner_loop": 2}}

    def validate(self, data: Dataset, ipc: int) -> None:
        super().validate(data, ipc)
        s = self.settings
        loops_for(ipc, s.outer_loop, s.inner_loop, self.name)
        matching.check_class_batch(data, s.batch_real, self.name)
        if s.init == "real":
            check_ipc_fits(data, ipc, self.name, " to start '{method}' from real images")

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        s = self.settings
        outer, inner = loops_for(ipc, s.outer_loop, s.inner_loop, self.name)
        run = matching.Synthesis.start(data, ipc, seed, s.init, s.lr_img, s.momentum, ctx.device)
        labels = matching.class_labels(data.num_classes, ipc).to(ctx.device)
        for it in run.iterations(ctx, self.config(), s.iterations, self.name):
            net = run.network(s.arch, it).train()
            weights = [p for p in net.parameters() if p.dim() > 1]  # what the distance reads
            net_optimiser = torch.optim.SGD(net.parameters(), lr=s.lr_net)
            total = 0.0
            for step in range(outer):
                total += run.step(self._match(run, net, weights, s))
                if step < outer - 1:
                    self._train_network(net, net_optimiser, run.images.detach(), labels, inner, s, run.ops, run.generator)
            run.loss = total / (data.num_classes * outer)
        return run.result({"iterations": s.iterations, "loops": [outer, inner]})

    @staticmethod
    def _match(run: matching.Synthesis, net: nn.Module, weights: list[torch.Tensor], s: DCOptions) -> torch.Tensor:
        """The gradient distance summed over classes, each on a fresh real batch of the class."""
        loss = run.images.new_zeros(())
        for c in range(run.data.num_classes):
            real, syn = run.real(c, s.batch_real), run.of_class(c)
            if s.dsa:
                real, syn = matching.siamese(real, syn, run.ops, run.generator)
            real_loss = F.cross_entropy(net(real), torch.full((real.shape[0],), c, device=real.device))
            real_grads = [t.detach() for t in torch.autograd.grad(real_loss, weights)]
            syn_loss = F.cross_entropy(net(syn), torch.full((run.ipc,), c, device=syn.device))
            syn_grads = torch.autograd.grad(syn_loss, weights, create_graph=True)
            loss = loss + gradient_distance(real_grads, syn_grads)
        return loss

    @staticmethod
    def _train_network(net: nn.Module, net_optimiser: torch.optim.Optimizer, images: torch.Tensor,
                       labels: torch.Tensor, epochs: int, s: DCOptions, ops: tuple, g: torch.Generator) -> None:
        """``epochs`` epochs of the network on the synthetic set (shuffled, batch ``batch_train``;
        with DSA one op per batch and per-image parameters, as the original's inner loop)."""
        for _ in range(epochs):
            for batch in torch.randperm(images.shape[0], generator=g).split(s.batch_train):
                x = images[batch.to(images.device)]
                if s.dsa:
                    x = matching.dsa_each(x, ops, g)
                net_optimiser.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), labels[batch.to(labels.device)]).backward()
                net_optimiser.step()
