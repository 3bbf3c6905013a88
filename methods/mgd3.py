"""`mgd3` (ICML 2025): mode-guided sampling, no fine-tuning.

Per class, k-means with k = IPC on the hook's latents gives modes ``m_k``; one image is
sampled per mode from the class denoiser, and while the respaced timestep t (steps - 1 down
to 0) is above ``stop_t = round(steps * stop_fraction)`` each step's mean moves towards its
mode: ``mean <- mean - scale * sigma_t * (x0_hat - m_k)``; from t = stop_t on the sampler runs
unguided. With 50 steps and stop_t 25 (the MGD3 and EVLF scripts' `--stop_t 25`, tested as
`t > stop_t` in their `p_sample_with_guidance`), that is the first 24 steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.datasets.base import Dataset
from methods.base import DistillContext
from methods.diffusion.context import DiffusionContext
from core.search_space import Range
from methods.diffusion.method import DiffusionDistiller, DiffusionOptions
from methods.diffusion.samplers import StepState, sample_class
from methods.dit import SAMPLING
from methods.registry import register_method


@dataclass(frozen=True)
class MGD3Options(DiffusionOptions):
    mode_scale: float = 0.1
    stop_fraction: float = 0.5  # stop_t = 25 of 50 steps: guided while t > 25, 24 steps

    def __post_init__(self) -> None:
        if not 0.0 <= self.stop_fraction <= 1.0:
            raise ValueError(f"stop_fraction must be in [0, 1], got {self.stop_fraction}")


@dataclass
class ModeGuidance:
    """The step callback: pulls each sample's step mean towards its mode while index < stop."""

    modes: torch.Tensor
    scale: float
    stop_index: int
    applied: list[int]

    def __call__(self, state: StepState) -> torch.Tensor | None:
        if state.index >= self.stop_index:
            return None
        self.applied.append(state.index)
        modes = self.modes.to(state.mean.device)
        return state.mean - self.scale * state.sigma * (state.x0_hat - modes)


@register_method("mgd3")
class MGD3(DiffusionDistiller):
    Options = MGD3Options
    needs_denoiser = "class"
    uses_kmeans = True
    presets = {"pretrained": dict(SAMPLING), "small": dict(SAMPLING)}
    tunable = {"guidance": Range(1.0, 6.0), "mode_scale": Range(0.01, 1.0, log=True),
               "stop_fraction": Range(0.2, 0.8)}

    def config(self) -> dict[str, Any]:
        # part of the distilled set's key: sets made with the earlier window (index < stop_t) differ
        return {**super().config(), "guided_while": "t > stop_t"}

    def guidance(self, modes: torch.Tensor) -> ModeGuidance:
        s = self.settings
        stop_t = round(s.steps * s.stop_fraction)
        return ModeGuidance(modes, s.mode_scale, max(0, s.steps - 1 - stop_t), [])

    def generate(self, dctx: DiffusionContext, data: Dataset, ipc: int, generator: torch.Generator,
                 ctx: DistillContext) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        modes, mode_labels = self.class_centres(dctx, data, ipc, generator, ctx, "modes")
        ctx.report("mode-guided sampling")
        # One batch: the callback's modes line up with the batch's samples.
        out = sample_class(dctx, mode_labels, self.sampler_config(), generator, callback=self.guidance(modes),
                           batch_size=len(mode_labels))
        return out, mode_labels, {}
