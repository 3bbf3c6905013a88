"""`recon`: `random`'s real images passed through a generative backbone's hook and decoded.

It is the ceiling of what any method that decodes latents with this backbone can reach at an
IPC: the same images as `random` at the same seed, so `random` minus `recon` is what the VAE's
round trip costs, and `recon` minus a generative row is what generation itself costs. With a
plug-in (``recon+evlf``) the latents are the plug-in's hook's, so it shows what the fused
latents decode to. The harness adds it beside `random` when a grid holds a generative method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.datasets.base import Dataset
from methods.base import DistillContext
from methods.diffusion.context import DiffusionContext
from methods.diffusion.method import DiffusionDistiller
from methods.random import random_indices
from methods.registry import register_method

RECON = "recon"


@dataclass(frozen=True)
class ReconOptions:
    backbone: str = "small"
    recipe: str = "small"  # the small family's training recipe (ignored by pretrained backbones)


@register_method(RECON)
class Reconstruction(DiffusionDistiller):
    group = "baseline"
    selects_real = True
    ceiling = True
    Options = ReconOptions

    def generate(self, dctx: DiffusionContext, data: Dataset, ipc: int, generator: torch.Generator,
                 ctx: DistillContext) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        # ``generator`` is fresh from the run's seed: the subset `random` draws with that seed
        idx = random_indices(data.train.labels, data.num_classes, ipc, generator)
        labels = data.train.labels[idx].clone()
        ctx.report("encoding")
        return dctx.encode_real(data.train.images[idx].float() / 255.0, labels), labels, {"indices": idx.tolist()}
