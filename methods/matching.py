"""What the matching methods (`dc`, `dsa`, `dm`) share: the learnable synthetic set, class
batches of real images, a freshly initialised network per iteration (seeded, so a run and its
resumption draw the same networks), DSA with one shared draw, and resumable iterations.

Images are optimised standardised, as the DC code keeps them; the set handed on is mapped back
to [0, 1] pixels and clipped there (the harness's contract for every set), and its meta records
the fraction of values clipped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from core.archs import StudentShape, build_student
from core.artifacts import content_key
from core.augment import DSA_OPS, NO_FLIP, Standardisation, dsa_siamese
from core.datasets.base import Dataset
from core.distilled import DistilledSet
from core.errors import BenchError
from core.options import normal_text
from methods.checkpoint import EVERY_S, LoopCheckpoint
from methods.distill_context import DistillContext
from methods.random import random_indices

REPORT_EVERY = 10  # iterations between progress reports
CHECKPOINT_EVERY_S = EVERY_S


@dataclass
class RealPool:
    """The training split standardised on the device, with each class's indices."""

    images: torch.Tensor
    by_class: list[torch.Tensor]

    @classmethod
    def of(cls, data: Dataset, device: torch.device) -> RealPool:
        stats = standardisation(data)
        images = stats.from_pixels(data.train.float_images()).to(device)
        return cls(images, [data.train.indices_of(c) for c in range(data.num_classes)])

    def batch(self, c: int, n: int, g: torch.Generator) -> torch.Tensor:
        """``n`` distinct random images of class ``c`` (the DC code's ``get_images``)."""
        members = self.by_class[c]
        return self.images[members[torch.randperm(members.numel(), generator=g)[:n]].to(self.images.device)]


def standardisation(data: Dataset) -> Standardisation:
    return Standardisation(data.mean, data.std)


def check_class_batch(data: Dataset, batch_real: int, method: str) -> None:
    """Refuse a real batch per class larger than the smallest class of the training split."""
    smallest = min(data.train.class_counts(data.num_classes))
    if batch_real > smallest:
        raise BenchError(f"method '{method}' draws {batch_real} real images per class, but the smallest class of "
                         f"{data.name} has {smallest}; set a smaller batch_real (or another budget)")


INITS = ("real", "noise")


def check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"init must be 'real' or 'noise', got '{init}'")


def initial_images(data: Dataset, pool: RealPool, ipc: int, init: str, g: torch.Generator) -> torch.Tensor:
    """The synthetic set's start, class-major (IPC images of class 0, then class 1, ...),
    standardised: real images drawn with ``g`` (``init="real"``) or unit Gaussian noise."""
    if init == "real":
        idx = random_indices(data.train.labels, data.num_classes, ipc, g)
        return pool.images[idx.to(pool.images.device)].clone()
    check_init(init)
    shape = (data.num_classes * ipc, data.channels, data.image_size, data.image_size)
    return torch.randn(shape, generator=g).to(pool.images.device)


def class_labels(num_classes: int, ipc: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(ipc)


def fresh_network(arch: str, data: Dataset, seed: int, device: torch.device) -> nn.Module:
    """A newly initialised student, its weights drawn from ``seed`` alone (the global random
    state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_student(arch, StudentShape.of(data)).to(device)


def network_seed(seed: int, iteration: int) -> int:
    return (seed * 1_000_003 + iteration) % (2 ** 62)


def dsa_ops(data: Dataset) -> tuple:
    """The DSA strategy of the DSA code's readme: every op, without flip where a mirrored image
    changes its class (digits)."""
    return DSA_OPS if data.flips else NO_FLIP


def siamese(real: torch.Tensor, syn: torch.Tensor, ops: tuple, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    augmented = dsa_siamese([real, syn], g, ops)
    return augmented[0], augmented[1]


def dsa_each(x: torch.Tensor, ops: tuple, g: torch.Generator) -> torch.Tensor:
    """One op of ``ops`` for the batch, its parameters drawn per image (DSA without the Siamese
    draw, as the DC code's inner loop trains the network on the synthetic set)."""
    return ops[int(torch.randint(len(ops), (1,), generator=g))](x, g)


def to_distilled(images: torch.Tensor, data: Dataset, ipc: int, meta: dict) -> DistilledSet:
    """The optimised standardised images as [0, 1] pixels (clipped), class-major labels."""
    pixels = standardisation(data).to_pixels(images.detach().cpu())
    clipped = float(((pixels < 0) | (pixels > 1)).float().mean())
    return DistilledSet(pixels.clamp(0, 1), class_labels(data.num_classes, ipc),
                        meta={**meta, "clipped_fraction": round(clipped, 6)})


def run_key(config: dict, data: Dataset, ipc: int, seed: int) -> str:
    """The checkpoint key of one distillation: the method's resolved config, data, IPC, seed."""
    return content_key({"config": config, "data": data.fingerprint(), "ipc": ipc, "seed": seed})


def iterations(ctx: DistillContext, key: str, total: int, parts: dict, label: str,
               loss: Callable[[], float]) -> Iterator[int]:
    """The iterations still to run of ``total`` (resumed from a checkpoint of ``parts``); after
    each, the checkpoint may save, and every `REPORT_EVERY` the context hears how far it is.
    ``loss`` gives the last iteration's loss for both."""
    checkpoint = LoopCheckpoint(ctx.cache, key, every_s=CHECKPOINT_EVERY_S)
    start, _ = checkpoint.resume(parts)
    if start:
        ctx.report(f"{label}: resumed at iteration {start}/{total}")
    for it in range(start, total):
        yield it
        checkpoint.after_step(it + 1, loss(), parts)
        if (it + 1) % REPORT_EVERY == 0 or it + 1 == total:
            ctx.report(f"{label} {it + 1}/{total}, loss {loss():.4g}")
    checkpoint.finish()


@dataclass
class Synthesis:
    """One matching run: the real pool, the run's generator (every batch, augmentation and the
    start draw from it), the learnable images (standardised, class-major), their SGD optimiser
    and the data set's DSA ops."""

    data: Dataset
    ipc: int
    seed: int
    pool: RealPool
    generator: torch.Generator
    images: torch.Tensor
    optimiser: torch.optim.Optimizer
    ops: tuple
    loss: float = float("nan")  # the last iteration's, per class

    @classmethod
    def start(cls, data: Dataset, ipc: int, seed: int, init: str, lr: float, momentum: float,
              device: torch.device) -> Synthesis:
        pool = RealPool.of(data, device)
        g = torch.Generator().manual_seed(seed)
        images = initial_images(data, pool, ipc, init, g).requires_grad_(True)
        optimiser = torch.optim.SGD([images], lr=lr, momentum=momentum)
        return cls(data, ipc, seed, pool, g, images, optimiser, dsa_ops(data))

    def of_class(self, c: int) -> torch.Tensor:
        return self.images[c * self.ipc:(c + 1) * self.ipc]

    def real(self, c: int, n: int) -> torch.Tensor:
        return self.pool.batch(c, n, self.generator)

    def network(self, arch: str, iteration: int) -> nn.Module:
        """This iteration's freshly initialised network."""
        return fresh_network(arch, self.data, network_seed(self.seed, iteration), self.images.device)

    def step(self, loss: torch.Tensor) -> float:
        """One optimiser step on the images down ``loss``; returns its value."""
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())

    def iterations(self, ctx: DistillContext, config: dict, total: int, label: str) -> Iterator[int]:
        """`iterations` over this run's state (keyed by ``config``, data, IPC and seed), refusing
        to go on once the images hold a NaN or an infinity."""
        parts = {"images": [self.images], "optimiser": self.optimiser, "generator": self.generator}
        key = run_key(config, self.data, self.ipc, self.seed)
        for it in iterations(ctx, key, total, parts, label, lambda: self.loss):
            yield it
            if not torch.isfinite(self.images).all():
                lr = self.optimiser.param_groups[0]["lr"]
                raise BenchError(f"{label} diverged at iteration {it + 1} (lr_img {normal_text(lr)}); "
                                 "try a smaller lr_img")

    def result(self, meta: dict) -> DistilledSet:
        return to_distilled(self.images, self.data, self.ipc, {**meta, "final_loss": self.loss})
