"""Fine-tuning the class-conditional denoiser on the hook's latents, in the spirit of DiffFit:
only biases, normalisation parameters, the class embeddings and learnable scale factors (on
the first half of the blocks) train; everything else stays frozen.

How closely it follows Minimax's code for DiT-XL/2 is data (`Fidelity`, chosen by the backbone
family): on `pretrained` backbones one timestep and class embedder shared by all blocks (DiT
has one; diffusers keeps a copy per block), per-channel scale factors on the query/key/value
projections, the attention output and both residual branches, an EMA of decay 0.9999 that
starts from the pretrained weights, and the variational-bound term when the denoiser predicts
its variance. The small backbones, trained by the harness with a separate embedder per block,
keep one scalar factor per block and branch and a ramped EMA (`Fidelity()`).

Minimax adds its memory losses through ``extra_loss``; ``dit`` with ``adapt_steps`` (used by
plug-ins) fine-tunes with the diffusion loss alone. The result is a plain denoiser of the same
class (the scale factors are folded into the output projections), cached content-addressed by
backbone, hook, data and configuration, and shared by every IPC and seed.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.artifacts import ArtifactCache, content_key
from methods.diffusion.backbone import ProgressFn, no_progress
from methods.checkpoint import LoopCheckpoint
from methods.diffusion.context import DiffusionContext
from methods.diffusion.training import EMA, noised_batch, own_label_dropout_off

KIND = "finetuned-denoiser"
VERSION = 2  # 2: the DiT's own label dropout off (labels were dropped twice, once from the global RNG)
SCALES = ("block", "channel")

# (x0_hat, clean latents z0, labels) -> a scalar added to the diffusion loss
ExtraLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LossHistory:
    """The loss of every fine-tuning step (its log reports the first and last 50)."""

    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Fidelity:
    """What differs between Minimax's DiT-XL/2 fine-tuning and the small backbones' (see module doc)."""

    scales: str = "block"  # "block": one factor per block and branch; "channel": DiT's per-channel gammas
    shared_embedder: bool = False  # one timestep + class embedder for every block, trained once
    ema_from_pretrained: bool = False  # constant decay from the start (else ramped, as the backbone loops)
    vb_term: bool = False  # add the variational bound when the denoiser also predicts its variance

    def __post_init__(self) -> None:
        if self.scales not in SCALES:
            raise ValueError(f"scales must be one of {', '.join(SCALES)}, got {self.scales!r}")


MINIMAX_DIT = Fidelity(scales="channel", shared_embedder=True, ema_from_pretrained=True, vb_term=True)
FIDELITY = {"pretrained": MINIMAX_DIT, "small": Fidelity()}  # by backbone family


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
    fidelity: Fidelity = Fidelity()


class BlockScales(nn.Module):
    """DiffFit's learnable scale factors on some blocks, attached with forward hooks during
    training and folded into the weights afterwards: on the attention and MLP branches (one
    scalar each, or one per channel), and per channel also on the query/key/value projections
    and the attention's output projection, as Minimax's DiT has them."""

    def __init__(self, blocks: list[nn.Module], per_channel: bool = False):
        super().__init__()
        self.blocks = blocks
        n, width = len(blocks), (blocks[0].attn1.to_q.out_features if blocks else 0)
        shape = (n, width) if per_channel else (n,)
        self.attn = nn.Parameter(torch.ones(shape))
        self.mlp = nn.Parameter(torch.ones(shape))
        self.qkv = nn.Parameter(torch.ones(n, 3 * width)) if per_channel else None
        self.attn_out = nn.Parameter(torch.ones(n, width)) if per_channel else None
        self._handles: list[Any] = []

    def factors(self) -> list[nn.Parameter]:
        return [p for p in (self.attn, self.mlp, self.qkv, self.attn_out) if p is not None]

    def _scale(self, module: nn.Module, factor: Callable[[], torch.Tensor]) -> None:
        self._handles.append(module.register_forward_hook(lambda m, a, out: out * factor()))

    def attach(self) -> None:
        for i, block in enumerate(self.blocks):
            self._scale(block.attn1, lambda i=i: self.attn[i])
            self._scale(block.ff, lambda i=i: self.mlp[i])
            if self.qkv is not None and self.attn_out is not None:
                attn, width = block.attn1, self.attn_out.shape[1]
                for k, linear in enumerate((attn.to_q, attn.to_k, attn.to_v)):
                    self._scale(linear, lambda i=i, k=k: self.qkv[i, k * width:(k + 1) * width])
                self._scale(attn.to_out[0], lambda i=i: self.attn_out[i])

    def detach_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def fold(self) -> None:
        """Multiply the rows of each scaled projection by its factors, so the plain model computes the same."""
        self.detach_hooks()
        for i, block in enumerate(self.blocks):
            attn = block.attn1
            scaled = [(attn.to_out[0], self.attn[i]), (block.ff.net[-1], self.mlp[i])]
            if self.qkv is not None and self.attn_out is not None:
                width = self.attn_out.shape[1]
                scaled += [(linear, self.qkv[i, k * width:(k + 1) * width])
                           for k, linear in enumerate((attn.to_q, attn.to_k, attn.to_v))]
                scaled.append((attn.to_out[0], self.attn_out[i]))
            for linear, scale in scaled:
                linear.weight.mul_(scale.view(-1, 1) if scale.dim() else scale)
                if linear.bias is not None:
                    linear.bias.mul_(scale)


def share_embedder(blocks: list[nn.Module]) -> None:
    """Make every block use the first block's timestep + class embedder, as DiT's one
    ``t_embedder`` and ``y_embedder`` (diffusers' conversion copies them into every block)."""
    shared = blocks[0].norm1.emb
    for block in blocks[1:]:
        block.norm1.emb = shared


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


def _normal_cdf_approx(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF that DiT's decoder likelihood uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _discretised_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(x) of a Gaussian integrated over x's bin of width 2/255 (open at the ends of [-1, 1])."""
    inv_std = torch.exp(-log_scale)
    upper = _normal_cdf_approx(inv_std * (x - mean + 1.0 / 255))
    lower = _normal_cdf_approx(inv_std * (x - mean - 1.0 / 255))
    log_prob = torch.where(x < -0.999, upper.clamp(min=1e-12).log(),
                           torch.where(x > 0.999, (1.0 - lower).clamp(min=1e-12).log(),
                                       (upper - lower).clamp(min=1e-12).log()))
    return -log_prob


def vb_term(scheduler, z0: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
            values: torch.Tensor) -> torch.Tensor:
    """Per sample, in bits per dimension: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0 and
    the decoder's negative log-likelihood at t = 0, where p's mean comes from ``eps`` (pass it
    detached: the bound trains only the variance) and its log variance interpolates, by
    ``values`` in [-1, 1], between the clipped posterior variance and beta_t (DiT's learned range)."""
    a = scheduler.alphas_cumprod.to(z0.device, torch.float64)
    a_prev = torch.cat([a.new_ones(1), a[:-1]])
    beta = 1 - a / a_prev
    posterior_var = beta * (1 - a_prev) / (1 - a)
    clipped_log_var = torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]]))
    coef_x0, coef_xt = beta * a_prev.sqrt() / (1 - a), (1 - a_prev) * (1 - beta).sqrt() / (1 - a)

    def at(v: torch.Tensor) -> torch.Tensor:
        return v[t].view(-1, 1, 1, 1).to(z0.dtype)

    true_mean = at(coef_x0) * z0 + at(coef_xt) * noisy
    true_log_var = at(clipped_log_var)
    x0_hat = _x0_hat(noisy, eps, at(a).flatten())
    model_mean = at(coef_x0) * x0_hat + at(coef_xt) * noisy
    frac = (values + 1) / 2
    model_log_var = frac * at(torch.log(beta)) + (1 - frac) * true_log_var
    kl = 0.5 * (-1.0 + model_log_var - true_log_var + torch.exp(true_log_var - model_log_var)
                + (true_mean - model_mean).pow(2) * torch.exp(-model_log_var))
    nll = _discretised_nll(z0, model_mean, 0.5 * model_log_var)
    per_sample = torch.where(t.view(-1, 1, 1, 1) == 0, nll, kl).flatten(1).mean(1)
    return per_sample / math.log(2.0)


def finetune(model: nn.Module, latents: torch.Tensor, labels: torch.Tensor, scheduler_config: dict,
             config: FinetuneConfig, null_label: int, extra_loss: ExtraLoss | None = None,
             progress: ProgressFn = no_progress, checkpoint: LoopCheckpoint | None = None
             ) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of a class DiT on (latents, labels); returns the EMA model and a log."""
    from diffusers import DDPMScheduler

    fidelity = config.fidelity
    model = copy.deepcopy(model).train()
    own_label_dropout_off(model)  # the loop below drops labels with its own seeded generator
    device = next(model.parameters()).device
    model.requires_grad_(False)
    blocks = list(model.transformer_blocks)
    if fidelity.shared_embedder:
        share_embedder(blocks)
    params = trainable_parameters(model)
    for p in params.values():
        p.requires_grad_(True)
    scales = BlockScales(blocks[: math.ceil(len(blocks) * config.scaled_fraction)],
                         per_channel=fidelity.scales == "channel").to(device)
    scales.attach()
    trained = [*params.values(), *scales.factors()]
    opt = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA([p.detach().clone() for p in trained], config.ema_decay, ramp=not fidelity.ema_from_pretrained)
    scheduler = DDPMScheduler.from_config(scheduler_config)
    alphas = scheduler.alphas_cumprod.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    latents, labels = latents.to(device), labels.to(device)
    channels = latents.shape[1]
    history = LossHistory()
    losses = history.values
    checkpoint = checkpoint or LoopCheckpoint(None, "")
    parts = {"trained": trained, "optimizer": opt, "ema": ema, "generator": generator, "losses": history}
    if extra_loss is not None and hasattr(extra_loss, "state_dict"):
        parts["extra_loss"] = extra_loss
    first, _ = checkpoint.resume(parts)
    losses = history.values
    start = time.perf_counter()
    every = max(1, config.steps // 100)
    for step in range(first, config.steps):
        idx = torch.randint(latents.shape[0], (config.batch_size,), generator=generator).to(device)
        z0, y = latents[idx], labels[idx]
        batch = noised_batch(z0, scheduler, config.label_dropout, generator)
        out = model(batch.noisy, timestep=batch.t, class_labels=torch.where(batch.drop, torch.full_like(y, null_label), y),
                    return_dict=False)[0]
        eps = out[:, :channels]
        loss = F.mse_loss(eps, batch.noise)
        if fidelity.vb_term and out.shape[1] == 2 * channels:
            loss = loss + vb_term(scheduler, z0, batch.noisy, batch.t, eps.detach(), out[:, channels:]).mean()
        if extra_loss is not None:
            loss = loss + extra_loss(_x0_hat(batch.noisy, eps, alphas[batch.t]), z0, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(trained)
        losses.append(float(loss.detach()))
        checkpoint.after_step(step + 1, losses[-1], parts)
        if (step + 1) % every == 0 or step + 1 == config.steps:
            progress("fine-tune denoiser", step + 1, config.steps)
    checkpoint.finish()
    with torch.no_grad():
        for p, averaged in zip(trained, ema.shadow):
            p.copy_(averaged)
    scales.fold()
    model.eval().requires_grad_(False)
    log = {"seconds": time.perf_counter() - start, "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
           "first_loss": sum(losses[:50]) / max(1, len(losses[:50])),
           "trainable_params": sum(p.numel() for p in trained),
           "scales_attn": _summary(scales.attn), "scales_mlp": _summary(scales.mlp)}
    return model, log


def _summary(factors: torch.Tensor) -> list[float]:
    """Per block: the factor, or the mean of its per-channel factors."""
    factors = factors.detach().cpu()
    return (factors.mean(1) if factors.dim() == 2 else factors).tolist()


def finetuned_key(dctx: DiffusionContext, data, config: FinetuneConfig, loss_config: dict[str, Any]) -> str:
    """The cache key of the class denoiser of ``dctx``'s backbone fine-tuned on its hook's latents."""
    return content_key({"backbone": dctx.backbone.key, "hook": dctx.hook_id, "data": data.fingerprint(),
                        "config": dataclasses.asdict(config), "loss": loss_config, "version": VERSION})


def get_finetuned(dctx: DiffusionContext, data, config: FinetuneConfig, loss_config: dict[str, Any],
                  make_loss: Callable[[], ExtraLoss | None], latents: torch.Tensor, labels: torch.Tensor,
                  cache: ArtifactCache | None, progress: ProgressFn = no_progress) -> tuple[nn.Module, dict]:
    """The fine-tuned class denoiser of ``dctx``'s backbone: from the cache, or trained and cached.

    ``loss_config`` names the extra loss (it enters the key); ``make_loss`` builds a fresh one.
    """
    base = dctx.backbone.denoiser("class")
    key = finetuned_key(dctx, data, config, loss_config)
    keyed = cache is not None and bool(dctx.backbone.key)
    # one process trains it while any other that wants it waits, then loads it
    with cache.building(KIND, key, lambda note: progress(note, 0, 1)) if keyed else contextlib.nullcontext():
        state = cache.load(KIND, key) if keyed else None
        if state is None:
            model, log = finetune(base, latents, labels, dctx.backbone.scheduler_config, config,
                                  dctx.backbone.null_class, make_loss(), progress,
                                  LoopCheckpoint(cache, key) if keyed else None)
            state = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "log": log}
            if keyed:
                cache.save(KIND, key, state, meta={"dataset": data.name, "hook": dctx.hook_id, "loss": loss_config})
            return model, {**log, "key": key, "cached": False}
    model = copy.deepcopy(base)
    model.load_state_dict(state["state_dict"])
    return model.eval().requires_grad_(False), {**state["log"], "key": key, "cached": True}
