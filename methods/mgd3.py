"""`mgd3` (ICML 2025): mode-guided sampling, no fine-tuning.

Per class, k-means with k = IPC on the hook's latents gives modes ``m_k``; one image is
sampled per mode from the class denoiser, and while the step index is in the first
``stop_fraction`` of the schedule (t > stop_t) each step's mean moves towards its mode:
``mean <- mean - scale * sigma_t * (x0_hat - m_k)``. After stop_t the sampler runs unguided.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.datasets.base import Dataset
from methods.base import DistillContext
from methods.diffusion.context import DiffusionContext
from methods.diffusion.method import DiffusionDistiller, DiffusionOptions
from methods.diffusion.samplers import StepState, sample_class
from methods.dit import SAMPLING
from methods.registry import register_method


@dataclass(frozen=True)
class MGD3Options(DiffusionOptions):
    mode_scale: float = 0.1
    stop_fraction: float = 0.5  # stop_t = 25 of 50 steps

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

    def guidance(self, modes: torch.Tensor) -> ModeGuidance:
        s = self.settings
        return ModeGuidance(modes, s.mode_scale, round(s.steps * s.stop_fraction), [])

    def generate(self, dctx: DiffusionContext, data: Dataset, ipc: int, generator: torch.Generator,
                 ctx: DistillContext) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        modes, mode_labels = self.class_centres(dctx, data, ipc, generator, ctx, "modes")
        ctx.report("mode-guided sampling")
        # One batch: the callback's modes line up with the batch's samples.
        out = sample_class(dctx, mode_labels, self.sampler_config(), generator, callback=self.guidance(modes),
                           batch_size=len(mode_labels))
        return out, mode_labels, {}
