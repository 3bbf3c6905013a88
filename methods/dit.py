"""`dit`: plain class-conditional sampling from the unmodified class denoiser (the papers'
"DiT" column): IPC latents per class, classifier-free guidance 4, 50 steps, decoded.

``adapt_steps`` > 0 first adapts the denoiser with the diffusion loss alone on the hook's
latents (DiffFit subset, see `methods.diffusion.finetune`). Plain `dit` leaves it at 0 and
never reads real images; with a plug-in that replaces the hook (``dit+evlf``) it defaults to
``HOOK_ADAPT_STEPS``, so that the plug-in has latents to act on.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.datasets.base import Dataset
from core.search_space import Range
from methods.diffusion.finetune import FinetuneConfig
from methods.diffusion.method import ClassSampling, DiffusionOptions, Finetuning
from methods.registry import register_method

SAMPLING = {"sampler": "ddpm", "steps": 50, "guidance": 4.0}


@dataclass(frozen=True)
class DiTOptions(DiffusionOptions):
    adapt_steps: int = 0  # diffusion-loss adaptation on hook latents before sampling (0: none)
    adapt_batch: int | None = None
    adapt_lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.adapt_steps < 0:
            raise ValueError(f"adapt_steps must be >= 0, got {self.adapt_steps}")


# Diffusion-loss adaptation steps on the hook's latents when a plug-in replaces the hook (the
# EVLF authors' optional denoiser adaptation); as many as the small `minimax` preset fine-tunes.
HOOK_ADAPT_STEPS = "600"


@register_method("dit")
class DiT(ClassSampling):
    Options = DiTOptions
    hook_defaults = {"adapt_steps": HOOK_ADAPT_STEPS}
    tunable = {"guidance": Range(1.0, 6.0)}
    presets = {"pretrained": {**SAMPLING, "adapt_batch": 8}, "small": {**SAMPLING, "adapt_batch": 64}}

    @property
    def fine_tunes(self) -> bool:
        return self.options.adapt_steps > 0

    def finetuning(self, data: Dataset) -> Finetuning | None:
        s = self.settings
        if s.adapt_steps == 0:
            return None
        return Finetuning(FinetuneConfig(steps=s.adapt_steps, batch_size=s.adapt_batch, lr=s.adapt_lr,
                                         fidelity=self.fidelity),
                          {"loss": "diffusion"}, lambda: None)
