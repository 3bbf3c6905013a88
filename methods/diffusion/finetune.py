"""Fine-tuning the class-conditional denoiser on the hook's latents, in the spirit of DiffFit:
only biases, normalisation parameters, the class embeddings and learnable per-block scale
factors (on the first half of the blocks) train; everything else stays frozen.

Minimax adds its memory losses through ``extra_loss``; ``dit`` with ``adapt_steps`` (used by
plug-ins) fine-tunes with the diffusion loss alone. The result is a plain denoiser of the same
class (the scale factors are folded into the output projections), cached content-addressed by
backbone, hook, data and configuration, and shared by every IPC and seed.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.artifacts import ArtifactCache, content_key
from methods.diffusion.backbone import ProgressFn, no_progress
from methods.diffusion.context import DiffusionContext
from methods.diffusion.training import EMA, noised_batch

KIND = "finetuned-denoiser"
VERSION = 1

# (x0_hat, clean latents z0, labels) -> a scalar added to the diffusion loss
ExtraLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    label_dropout: float = 0.1  # keeps the unconditional branch of guidance trained
    scaled_fraction: float = 0.5  # the first half of the blocks get scale factors
    seed: int = 0


class BlockScales(nn.Module):
    """DiffFit's learnable scale factors on the attention and MLP outputs of some blocks,
    attached with forward hooks during training and folded into the weights afterwards."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = blocks
        self.attn = nn.Parameter(torch.ones(len(blocks)))
        self.mlp = nn.Parameter(torch.ones(len(blocks)))
        self._handles: list[Any] = []

    def attach(self) -> None:
        for i, block in enumerate(self.blocks):
            self._handles.append(block.attn1.register_forward_hook(lambda m, a, out, i=i: out * self.attn[i]))
            self._handles.append(block.ff.register_forward_hook(lambda m, a, out, i=i: out * self.mlp[i]))

    def detach_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def fold(self) -> None:
        """Multiply each scaled output projection by its factor, so the plain model computes the same."""
        self.detach_hooks()
        for i, block in enumerate(self.blocks):
            for linear, scale in ((block.attn1.to_out[0], self.attn[i]), (block.ff.net[-1], self.mlp[i])):
                linear.weight.mul_(scale)
                if linear.bias is not None:
                    linear.bias.mul_(scale)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The DiffFit subset: every bias, affine normalisation parameters, class-embedding tables."""
    chosen: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        class_table = isinstance(module, nn.Embedding) and "class_embedder" in module_name
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or class_table or isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                chosen[f"{module_name}.{name}" if module_name else name] = param
    return chosen


def _x0_hat(noisy: torch.Tensor, eps: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    a = alphas.view(-1, 1, 1, 1)
    return (noisy - (1 - a).sqrt() * eps) / a.sqrt()


def finetune(model: nn.Module, latents: torch.Tensor, labels: torch.Tensor, scheduler_config: dict,
             config: FinetuneConfig, null_label: int, extra_loss: ExtraLoss | None = None,
             progress: ProgressFn = no_progress) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of a class DiT on (latents, labels); returns the EMA model and a log."""
    from diffusers import DDPMScheduler

    model = copy.deepcopy(model).train()
    device = next(model.parameters()).device
    model.requires_grad_(False)
    params = trainable_parameters(model)
    for p in params.values():
        p.requires_grad_(True)
    blocks = list(model.transformer_blocks)
    scales = BlockScales(blocks[: math.ceil(len(blocks) * config.scaled_fraction)]).to(device)
    scales.attach()
    trained = [*params.values(), scales.attn, scales.mlp]
    opt = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA([p.detach().clone() for p in trained], config.ema_decay)
    scheduler = DDPMScheduler.from_config(scheduler_config)
    alphas = scheduler.alphas_cumprod.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    latents, labels = latents.to(device), labels.to(device)
    channels = latents.shape[1]
    losses: list[float] = []
    start = time.perf_counter()
    every = max(1, config.steps // 100)
    for step in range(config.steps):
        idx = torch.randint(latents.shape[0], (config.batch_size,), generator=generator).to(device)
        z0, y = latents[idx], labels[idx]
        batch = noised_batch(z0, scheduler, config.label_dropout, generator)
        eps = model(batch.noisy, timestep=batch.t, class_labels=torch.where(batch.drop, torch.full_like(y, null_label), y),
                    return_dict=False)[0][:, :channels]
        loss = F.mse_loss(eps, batch.noise)
        if extra_loss is not None:
            loss = loss + extra_loss(_x0_hat(batch.noisy, eps, alphas[batch.t]), z0, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(trained)  # ramped, as in the backbone loops
        losses.append(float(loss.detach()))
        if (step + 1) % every == 0 or step + 1 == config.steps:
            progress("fine-tune denoiser", step + 1, config.steps)
    with torch.no_grad():
        for p, averaged in zip(trained, ema.shadow):
            p.copy_(averaged)
    scales.fold()
    model.eval().requires_grad_(False)
    log = {"seconds": time.perf_counter() - start, "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
           "first_loss": sum(losses[:50]) / max(1, len(losses[:50])),
           "trainable_params": sum(p.numel() for p in trained),
           "scales_attn": scales.attn.detach().cpu().tolist(), "scales_mlp": scales.mlp.detach().cpu().tolist()}
    return model, log


def get_finetuned(dctx: DiffusionContext, data, config: FinetuneConfig, loss_config: dict[str, Any],
                  make_loss: Callable[[], ExtraLoss | None], latents: torch.Tensor, labels: torch.Tensor,
                  cache: ArtifactCache | None, progress: ProgressFn = no_progress) -> tuple[nn.Module, dict]:
    """The fine-tuned class denoiser of ``dctx``'s backbone: from the cache, or trained and cached.

    ``loss_config`` names the extra loss (it enters the key); ``make_loss`` builds a fresh one.
    """
    base = dctx.backbone.denoiser("class")
    key = content_key({"backbone": dctx.backbone.key, "hook": dctx.hook_id, "data": data.fingerprint(),
                       "config": dataclasses.asdict(config), "loss": loss_config, "version": VERSION})
    state = cache.load(KIND, key) if cache is not None and dctx.backbone.key else None
    if state is None:
        model, log = finetune(base, latents, labels, dctx.backbone.scheduler_config, config,
                              dctx.backbone.null_class, make_loss(), progress)
        state = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "log": log}
        if cache is not None and dctx.backbone.key:
            cache.save(KIND, key, state, meta={"dataset": data.name, "hook": dctx.hook_id, "loss": loss_config})
        return model, {**log, "key": key, "cached": False}
    model = copy.deepcopy(base)
    model.load_state_dict(state["state_dict"])
    return model.eval().requires_grad_(False), {**state["log"], "key": key, "cached": True}
