"""`minimax` (Gu et al., CVPR 2024): fine-tune the class denoiser with the minimax criteria,
then sample as `dit`.

Fine-tuning (DiffFit subset, `methods.diffusion.finetune`) adds to the diffusion loss, per
class in the batch and on the predicted clean latent ``x0_hat``:
``L_rep = 1 - min_{r in R_c} cos(x0_hat, r)`` (pull towards the least similar real latent) and
``L_div = max_{q in P_c} cos(x0_hat, q)`` (push away from the most similar past prediction),
weighted 0.002 and 0.008. ``R_c`` and ``P_c`` are FIFO memories of 64 per class, of real
latents (from the hook) and detached predictions; each term is active once its memory holds
something. The fine-tuned denoiser is cached and shared by every IPC and seed; sampling
draws exactly IPC per class with the run's seed (the original draws 100 and keeps the first).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from core.datasets.base import Dataset
from core.search_space import Range
from methods.diffusion.finetune import FinetuneConfig
from methods.diffusion.method import ClassSampling, DiffusionOptions, Finetuning
from methods.dit import SAMPLING
from methods.registry import register_method


class ClassMemory:
    """One FIFO queue of at most ``size`` flattened latents per class."""

    def __init__(self, num_classes: int, size: int):
        self.size = size
        self.queues: list[torch.Tensor | None] = [None] * num_classes

    def push(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        rows = rows.detach().flatten(1)
        for c in labels.unique().tolist():
            new = rows[labels == c]
            old = self.queues[c]
            merged = new if old is None else torch.cat([old, new])
            self.queues[c] = merged[-self.size:]

    def get(self, c: int) -> torch.Tensor | None:
        return self.queues[c]


def minimax_terms(x0_hat: torch.Tensor, labels: torch.Tensor, real: ClassMemory,
                  past: ClassMemory) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_rep, L_div) averaged over the samples whose class memory is non-empty (0 if none)."""
    flat = x0_hat.flatten(1)
    rep, div = [], []
    for c in labels.unique().tolist():
        rows = flat[labels == c]
        r, p = real.get(c), past.get(c)
        if r is not None:
            rep.append(1 - (F.normalize(rows, dim=1) @ F.normalize(r, dim=1).T).min(dim=1).values)
        if p is not None:
            div.append((F.normalize(rows, dim=1) @ F.normalize(p, dim=1).T).max(dim=1).values)
    zero = flat.sum() * 0
    return (torch.cat(rep).mean() if rep else zero), (torch.cat(div).mean() if div else zero)


@dataclass
class MinimaxLoss:
    """The extra fine-tuning loss: terms from the memories as they stand, then the batch is queued."""

    num_classes: int
    memory: int
    rep_weight: float
    div_weight: float

    def __post_init__(self) -> None:
        self.real = ClassMemory(self.num_classes, self.memory)
        self.past = ClassMemory(self.num_classes, self.memory)

    def __call__(self, x0_hat: torch.Tensor, z0: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rep, div = minimax_terms(x0_hat, labels, self.real, self.past)
        self.real.push(z0, labels)
        self.past.push(x0_hat, labels)
        return self.rep_weight * rep + self.div_weight * div

    def state_dict(self) -> dict:
        """The memories, for a fine-tuning checkpoint."""
        return {"real": list(self.real.queues), "past": list(self.past.queues)}

    def load_state_dict(self, state: dict) -> None:
        self.real.queues, self.past.queues = list(state["real"]), list(state["past"])


@dataclass(frozen=True)
class MinimaxOptions(DiffusionOptions):
    ft_steps: int | None = None
    ft_batch: int | None = None
    lr: float = 1e-3
    ema: float = 0.9999
    rep_weight: float = 0.002
    div_weight: float = 0.008
    memory: int = 64

    def __post_init__(self) -> None:
        if self.memory < 1 or (self.ft_steps is not None and self.ft_steps < 1):
            raise ValueError("memory and ft_steps must be at least 1")


@register_method("minimax")
class Minimax(ClassSampling):
    Options = MinimaxOptions
    # Paper: batch 8, checkpoint at 12k steps. Small: 600 steps of 64 (about 1 minute here).
    presets = {"pretrained": {**SAMPLING, "ft_steps": 12000, "ft_batch": 8},
               "small": {**SAMPLING, "ft_steps": 600, "ft_batch": 64}}

    fine_tunes = True
    tunable = {"guidance": Range(1.0, 6.0), "rep_weight": Range(0.0005, 0.02, log=True),
               "div_weight": Range(0.002, 0.05, log=True)}

    def finetuning(self, data: Dataset) -> Finetuning:
        s = self.settings
        return Finetuning(
            FinetuneConfig(steps=s.ft_steps, batch_size=s.ft_batch, lr=s.lr, ema_decay=s.ema, fidelity=self.fidelity),
            {"loss": "minimax", "rep_weight": s.rep_weight, "div_weight": s.div_weight, "memory": s.memory},
            lambda: MinimaxLoss(data.num_classes, s.memory, s.rep_weight, s.div_weight))
