"""Training loops of the small backbone family: the VAE on pixels, then any denoiser on the
VAE's latents with the epsilon-prediction loss, an exponential moving average of its weights
and condition dropout for classifier-free guidance.

Like the student loop, the data live as one tensor on the device and batches are index
slices from a seeded generator, so a run is a pure function of its recipe and data.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from methods.diffusion.backbone import ProgressFn
from methods.checkpoint import Batches, LoopCheckpoint

if TYPE_CHECKING:  # diffusers takes seconds to import; `bench list` must not pay for it
    from diffusers import DDPMScheduler

# (noisy latents, timesteps, batch indices, drop mask) -> predicted noise
DenoiserStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Optim:
    """Optimiser settings shared by the three loops."""

    steps: int
    batch_size: int
    lr: float
    warmup: int = 50
    final_lr_fraction: float = 0.1  # cosine decay from lr to lr * this


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    final_loss: float


class EMA:
    """Exponential moving average of tensors being trained (a model's weights, or the subset a
    fine-tuning trains), kept in ``shadow``.

    With ``ramp`` the decay ramps up as (1 + n) / (10 + n) so that short runs are not dominated
    by the random initial weights; without it the decay is constant from the first update (an
    average that starts from pretrained weights, as DiT's and Minimax's training code keep it).
    """

    def __init__(self, shadow: list[torch.Tensor], decay: float, ramp: bool = True):
        self.shadow = shadow
        self.decay = decay
        self.ramp = ramp
        self.updates = 0

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": [t.detach().clone() for t in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        with torch.no_grad():
            for kept, saved in zip(self.shadow, state["shadow"]):
                kept.copy_(saved)

    @torch.no_grad()
    def update(self, current: Iterable[torch.Tensor]) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.ramp else self.decay
        # One fused call over all tensors: a Python loop per parameter costs more than the maths.
        torch._foreach_lerp_(self.shadow, [p.detach() for p in current], 1 - d)


@dataclass(frozen=True)
class NoisedBatch:
    """Clean latents noised at random timesteps, and which samples lose their condition."""

    noise: torch.Tensor
    t: torch.Tensor
    drop: torch.Tensor
    noisy: torch.Tensor


def own_label_dropout_off(model: nn.Module) -> None:
    """Switch off a class DiT's own label dropout (diffusers' `LabelEmbedding`, 0.1 in DiT's
    config, drawn from the global RNG while training): the harness's loops drop labels themselves
    with their seeded generators, and must not drop them twice. A model fresh from a config has it
    on; one this process trained has it off, so without this a result depended on whether the
    backbone came from the cache."""
    from diffusers.models.embeddings import LabelEmbedding

    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0


def noised_batch(z0: torch.Tensor, noise_scheduler: DDPMScheduler, drop_prob: float,
                 generator: torch.Generator) -> NoisedBatch:
    """The epsilon-prediction training input: noise, timesteps and the condition-drop mask drawn
    in this order from ``generator`` (on the CPU, so a run is the same on every device)."""
    device = z0.device
    noise = torch.randn(z0.shape, generator=generator).to(device)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (z0.shape[0],), generator=generator).to(device)
    drop = (torch.rand(z0.shape[0], generator=generator) < drop_prob).to(device)
    return NoisedBatch(noise, t, drop, noise_scheduler.add_noise(z0, noise, t))


def _optimizer(model: nn.Module, optim: Optim) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=0.0)

    def factor(step: int) -> float:
        if step < optim.warmup:
            return (step + 1) / optim.warmup
        progress = (step - optim.warmup) / max(1, optim.steps - optim.warmup)
        return optim.final_lr_fraction + (1 - optim.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _report_every(steps: int) -> int:
    return max(1, steps // 100)


def train_vae(vae: nn.Module, images: torch.Tensor, optim: Optim, kl_weight: float, seed: int,
              progress: ProgressFn, phase: str = "VAE", checkpoint: LoopCheckpoint | None = None) -> TrainResult:
    """Train an AutoencoderKL in place on ``images`` (N x C x R x R in [-1, 1], on the device).

    Loss: pixel MSE of the reconstruction from a posterior sample, plus ``kl_weight`` times the
    KL divergence to N(0, I), which keeps the latent scale bounded.
    """
    generator = torch.Generator().manual_seed(seed)
    opt, schedule = _optimizer(vae, optim)
    vae.train()
    batches = Batches(images.shape[0], optim.batch_size, generator)
    checkpoint = checkpoint or LoopCheckpoint(None, "")
    parts = {"model": vae, "optimizer": opt, "schedule": schedule, "generator": generator, "batches": batches}
    first, last_loss = checkpoint.resume(parts)
    start, loss = time.perf_counter(), torch.tensor(last_loss)
    every = _report_every(optim.steps)
    for step in range(first, optim.steps):
        x = images[next(batches).to(images.device)]
        posterior = vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(x.device)
        recon = vae.decode(posterior.mean + posterior.std * noise).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.mse_loss(recon, x) + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        checkpoint.after_step(step + 1, float(loss.detach()), parts)
        if (step + 1) % every == 0 or step + 1 == optim.steps:
            progress(phase, step + 1, optim.steps)
    checkpoint.finish()
    vae.eval()
    return TrainResult(optim.steps, time.perf_counter() - start, float(loss.detach()))


def train_denoiser(model: nn.Module, latents: torch.Tensor, noise_scheduler: DDPMScheduler, forward: DenoiserStep,
                   optim: Optim, drop_prob: float, ema_decay: float, seed: int, progress: ProgressFn,
                   phase: str, checkpoint: LoopCheckpoint | None = None) -> tuple[nn.Module, TrainResult]:
    """Train a denoiser to predict the noise added to ``latents``; returns its EMA copy.

    ``forward`` runs the model on a batch and knows how to condition it; the drop mask marks
    the samples whose condition it must replace by the null condition (classifier-free
    guidance training).
    """
    generator = torch.Generator().manual_seed(seed)
    opt, schedule = _optimizer(model, optim)
    averaged = copy.deepcopy(model).eval().requires_grad_(False)
    ema = EMA(list(averaged.parameters()), ema_decay)
    model.train()
    device = latents.device
    batches = Batches(latents.shape[0], optim.batch_size, generator)
    checkpoint = checkpoint or LoopCheckpoint(None, "")
    parts = {"model": model, "average": averaged, "ema": ema, "optimizer": opt, "schedule": schedule,
             "generator": generator, "batches": batches}
    first, last_loss = checkpoint.resume(parts)
    start, loss = time.perf_counter(), torch.tensor(last_loss)
    every = _report_every(optim.steps)
    for step in range(first, optim.steps):
        idx = next(batches)
        batch = noised_batch(latents[idx.to(device)], noise_scheduler, drop_prob, generator)
        pred = forward(batch.noisy, batch.t, idx, batch.drop)
        loss = F.mse_loss(pred[:, : batch.noise.shape[1]], batch.noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        ema.update(model.parameters())
        with torch.no_grad():
            for kept, buffer in zip(averaged.buffers(), model.buffers()):
                kept.copy_(buffer)
        checkpoint.after_step(step + 1, float(loss.detach()), parts)
        if (step + 1) % every == 0 or step + 1 == optim.steps:
            progress(phase, step + 1, optim.steps)
    checkpoint.finish()
    model.eval()
    return averaged, TrainResult(optim.steps, time.perf_counter() - start, float(loss.detach()))
