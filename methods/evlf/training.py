"""Training the EVLF fusion module on a data set's real training split, caching it
content-addressed, and the trained-module record whose `encode` becomes the plug-in's hook.

Loss: ``lambda1 * InfoNCE(P(F(z, text)), t) + l2(step) * MSE(F(z, text), z)`` with the VAE and
the text encoder frozen. A run is a pure function of the
backbone, the data and the options: batches, flips, text augmentation and posterior samples
come from one seeded generator, initialisation and dropout from a forked, seeded global RNG.
Training runs in float32 (the paper's mixed precision is a speed device, not part of the method).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from core.artifacts import ArtifactCache, content_key
from core.datasets.base import Dataset
from core.errors import BenchError
from methods.diffusion.backbone import ProgressFn, no_progress
from methods.checkpoint import Batches, GlobalRNG, LoopCheckpoint
from methods.diffusion.context import DiffusionContext
from methods.diffusion.text import TextEncoder
from methods.evlf.diagnostics import FusionDiagnostics, HeldOutFigures, LossCurve, held_out_figures
from methods.evlf.fusion import FusionConfig, FusionModule, Projector
from methods.evlf.losses import TEXT_POOLS, mse_weight, multi_positive_info_nce, pool_text

FUSION_VERSION = 1  # bump when training changes in a way the options do not capture
ARTIFACT_KIND = "evlf-fusion"
LATENTS: tuple[str, ...] = ("mean", "sample")
CURVE_POINTS = 200  # at most this many points per loss curve


@dataclass(frozen=True)
class EVLFOptions:
    """Every setting of the EVLF module and its training. Defaults are the paper's, except the
    amount of training (``train_steps`` x ``train_batch``), sized so that Fashion-MNIST on the small
    backbone trains in about four minutes on one CPU thread (the paper: 30 epochs of batch 8
    with 2 accumulation steps on 256-512 px ImageNet subsets)."""

    lambda1: float = 0.1  # weight of the InfoNCE term (the MSE weight ramps 0.05 -> 1.0)
    layers: int = 2
    width: int = 256
    heads: int = 4
    ffn: int = 512
    dropout: float = 0.1
    null_text_p: float = 0.2  # per batch: all text tokens zero with this probability
    text_dropout: float = 0.1  # otherwise: element dropout on the tokens ...
    text_noise: float = 0.01  # ... plus Gaussian noise of this std
    mask_padding: bool = False  # faithful: padded text tokens are attended to
    latent: str = "mean"  # "mean" (posterior mean, faithful) or "sample" (posterior sample)
    text_pool: str = "last"  # "last" padded position (the released code in practice) or "eot"
    temperature: float = 0.07
    fusion_lr: float = 3e-4
    projector_lr: float = 1e-4
    weight_decay: float = 1e-2
    clip_norm: float = 1.0
    flip: bool = True  # random horizontal flips of the training images
    train_steps: int = 800
    train_batch: int = 32
    fusion_seed: int = 0
    diag_images: int = 2000  # held-out (validation) images the diagnostics use; 0 = the whole split

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> BenchError:
            return BenchError(f"EVLF option '{name}' {rule}, got {getattr(self, name)!r}")

        if self.latent not in LATENTS:
            raise bad("latent", "must be 'mean' or 'sample'")
        if self.text_pool not in TEXT_POOLS:
            raise bad("text_pool", "must be 'last' or 'eot'")
        for name in ("layers", "width", "heads", "ffn", "train_steps"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        if self.train_batch < 2:
            raise bad("train_batch", "must be at least 2 (InfoNCE contrasts the samples of a batch)")
        if self.width % self.heads:
            raise BenchError(f"EVLF option 'width' ({self.width}) must be divisible by 'heads' ({self.heads})")
        for name in ("null_text_p",):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be a probability in [0, 1]")
        for name in ("dropout", "text_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, "must be in [0, 1)")
        for name in ("temperature", "fusion_lr", "projector_lr", "clip_norm"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be positive")
        for name in ("lambda1", "weight_decay", "text_noise", "diag_images"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative")

    def fusion_config(self, latent_channels: int, text_dim: int, tokens: int) -> FusionConfig:
        return FusionConfig(latent_channels, text_dim, tokens, self.width, self.layers, self.heads, self.ffn,
                            self.dropout)


# Seconds on `digits` with the `smoke` backbone recipe: for tests and smoke runs.
SMOKE_OPTIONS = EVLFOptions(width=32, heads=2, ffn=64, train_steps=60, train_batch=32, diag_images=200)


@dataclass(frozen=True)
class PromptText:
    """The class prompts' text conditioning: token states K x L x D, attention mask K x L
    (True for real tokens) and one pooled vector per prompt K x D."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


def require_text_encoder(dctx: DiffusionContext) -> TextEncoder:
    encoder = dctx.backbone.text_encoder
    if encoder is None:
        raise BenchError(f"EVLF needs a text encoder and backbone '{dctx.backbone.name}' has none; "
                         "use a backbone with one, e.g. 'small' or 'sd15'")
    return encoder


def prompt_text(encoder: TextEncoder, prompts: tuple[str, ...] | list[str], text_pool: str,
                device: torch.device) -> PromptText:
    if not prompts:
        raise BenchError("EVLF needs one text prompt per class and this data set has none")
    tokens = encoder.encode(list(prompts)).to(device)
    mask = encoder.tokenizer(list(prompts), padding="max_length", max_length=encoder.max_length,
                             truncation=True, return_tensors="pt")["attention_mask"].bool().to(device)
    return PromptText(tokens, mask, pool_text(tokens, mask, text_pool))


@dataclass
class TrainedFusion:
    """A trained fusion module with what it was trained with and how it did.

    `encode` is the EVLF hook: scaled fused latents of real images and their labels.
    """

    key: str
    config: FusionConfig
    options: EVLFOptions
    state_dict: dict[str, torch.Tensor]
    diagnostics: FusionDiagnostics
    cached: bool = False
    _modules: dict[str, FusionModule] = field(default_factory=dict, repr=False, compare=False)

    def module(self, device: torch.device) -> FusionModule:
        """The module in eval mode on ``device`` (built once per device)."""
        name = str(device)
        if name not in self._modules:
            module = FusionModule(self.config)
            module.load_state_dict(self.state_dict)
            self._modules[name] = module.to(device).eval().requires_grad_(False)
        return self._modules[name]

    @torch.no_grad()
    def encode(self, dctx: DiffusionContext, images: torch.Tensor, labels: torch.Tensor | None = None
               ) -> torch.Tensor:
        """``s * F(z, T(p_y))`` for real images (N x C x H x W in [0, 1]) and their labels."""
        if labels is None:
            raise ValueError("the EVLF hook fuses each image with its class prompt: pass the labels")
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
        module = self.module(dctx.device)
        text = prompt_text(require_text_encoder(dctx), dctx.prompts, self.options.text_pool, dctx.device)
        generator = torch.Generator().manual_seed(self.options.fusion_seed) if self.options.latent == "sample" else None
        out = []
        for x, y in zip(images.split(dctx.vae_batch), labels.split(dctx.vae_batch)):
            z = dctx.vae_latents(x, generator)
            y = y.to(dctx.device)
            out.append(module(z, text.tokens[y], text.mask[y] if self.options.mask_padding else None))
        if not out:
            return images.new_zeros((0, *dctx.backbone.latent_shape))
        return torch.cat(out) * dctx.latent_scale

    def to_state(self) -> dict[str, Any]:
        return {"key": self.key, "config": self.config.to_dict(), "options": dataclasses.asdict(self.options),
                "state_dict": self.state_dict, "diagnostics": self.diagnostics.to_json(),
                "version": FUSION_VERSION}

    @classmethod
    def from_state(cls, state: dict[str, Any], cached: bool = True) -> TrainedFusion:
        return cls(state["key"], FusionConfig(**state["config"]), EVLFOptions(**state["options"]),
                   state["state_dict"], FusionDiagnostics.from_json(state["diagnostics"]), cached=cached)


def fusion_key(dctx: DiffusionContext, data: Dataset, options: EVLFOptions) -> str:
    """Content key: backbone, data and its class prompts, resolution (the position embedding is
    tied to it), text encoder, options and version."""
    encoder = dctx.backbone.text_encoder
    return content_key({
        "backbone": dctx.backbone.key, "resolution": dctx.backbone.resolution,
        "latent_shape": list(dctx.backbone.latent_shape), "data": data.fingerprint(), "prompts": list(data.prompts),
        "text_encoder": None if encoder is None else [encoder.name, encoder.max_length],
        "options": dataclasses.asdict(options), "version": FUSION_VERSION})


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG (initialisation, dropout) without disturbing the caller's stream."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def augment_text(tokens: torch.Tensor, options: EVLFOptions, generator: torch.Generator) -> torch.Tensor:
    """Per batch: all zeros with probability ``null_text_p``, else element dropout plus noise."""
    if float(torch.rand((), generator=generator)) < options.null_text_p:
        return torch.zeros_like(tokens)
    keep = (torch.rand(tokens.shape, generator=generator) >= options.text_dropout).to(tokens)
    noise = torch.randn(tokens.shape, generator=generator).to(tokens)
    return tokens * keep / (1 - options.text_dropout) + options.text_noise * noise


def _flip_some(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


@torch.no_grad()
def _held_out(dctx: DiffusionContext, data: Dataset, module: FusionModule, projector: Projector, text: PromptText,
              options: EVLFOptions) -> HeldOutFigures:
    split = data.val  # never the test split: it is the students' alone (and sealed while tuning)
    idx = torch.arange(len(split))
    if options.diag_images and options.diag_images < len(split):
        # A fixed subset, independent of the training seed, so runs compare on the same images.
        idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[: options.diag_images].sort()[0]
    labels = split.labels[idx]
    generator = torch.Generator().manual_seed(options.fusion_seed) if options.latent == "sample" else None
    raws, fused, p_raw, p_fused = [], [], [], []
    for batch, y in zip(idx.split(dctx.vae_batch), labels.split(dctx.vae_batch)):
        z = dctx.vae_latents(split.images[batch].float().div_(255.0), generator)
        y = y.to(dctx.device)
        f = module(z, text.tokens[y], text.mask[y] if options.mask_padding else None)
        raws.append(z.cpu())
        fused.append(f.cpu())
        p_raw.append(projector(z).cpu())
        p_fused.append(projector(f).cpu())
    return held_out_figures(torch.cat(raws), torch.cat(fused), torch.cat(p_raw), torch.cat(p_fused),
                            text.pooled.cpu(), labels, "val")


def train_fusion(dctx: DiffusionContext, data: Dataset, options: EVLFOptions | None = None,
                 progress: ProgressFn = no_progress, checkpoint: LoopCheckpoint | None = None) -> TrainedFusion:
    """Train a fusion module (and its throw-away projector) on ``data.train``; measure it on
    held-out validation images. Encoder and text encoder stay frozen."""
    options = options or EVLFOptions()
    device = dctx.device
    encoder = require_text_encoder(dctx)
    channels, side, _ = dctx.backbone.latent_shape
    text = prompt_text(encoder, data.prompts, options.text_pool, device)
    config = options.fusion_config(channels, encoder.dim, side * side)
    images, labels = data.train.images, data.train.labels  # uint8; a batch at a time becomes float
    generator = torch.Generator().manual_seed(options.fusion_seed)
    curve, every = LossCurve(), max(1, options.train_steps // CURVE_POINTS)
    start = time.perf_counter()
    with _seeded_global_rng(options.fusion_seed, device):
        module = FusionModule(config).to(device).train()
        projector = Projector(channels, encoder.dim, side).to(device).train()
        optimizer = torch.optim.AdamW([{"params": module.parameters(), "lr": options.fusion_lr},
                                       {"params": projector.parameters(), "lr": options.projector_lr}],
                                      weight_decay=options.weight_decay)
        params = [*module.parameters(), *projector.parameters()]
        # a fresh permutation per epoch; a short remainder is dropped
        batches = Batches(len(labels), min(options.train_batch, len(labels)), generator, drop_last=True)
        checkpoint = checkpoint or LoopCheckpoint(None, "")
        parts = {"module": module, "projector": projector, "optimizer": optimizer, "generator": generator,
                 "batches": batches, "global_rng": GlobalRNG(), "curve": curve}
        first, _ = checkpoint.resume(parts)
        for step in range(first, options.train_steps):
            idx = next(batches)
            x = images[idx].float().div_(255.0)
            # Flip the images, then encode them, every step: the VAE is not flip-equivariant, so
            # flipping latents would be wrong, and encoding is a small part of a step's cost.
            if options.flip:
                x = _flip_some(x, generator)
            z = dctx.vae_latents(x, generator if options.latent == "sample" else None)
            y = labels[idx].to(device)
            cond = augment_text(text.tokens[y], options, generator)
            fused = module(z, cond, text.mask[y] if options.mask_padding else None)
            nce = multi_positive_info_nce(projector(fused), text.pooled[y], y, options.temperature)
            mse = F.mse_loss(fused, z)
            weight = mse_weight(step, options.train_steps)
            loss = options.lambda1 * nce + weight * mse
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, options.clip_norm)
            optimizer.step()
            if step % every == 0 or step + 1 == options.train_steps:
                curve.record(step, float(nce.detach()), float(mse.detach()), weight, float(loss.detach()))
            checkpoint.after_step(step + 1, float(loss.detach()), parts)
            if (step + 1) % every == 0 or step + 1 == options.train_steps:
                progress("EVLF fusion", step + 1, options.train_steps)
        checkpoint.finish()
        module.eval()
        projector.eval()
        seconds = time.perf_counter() - start
        held_out = _held_out(dctx, data, module, projector, text, options)
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    diagnostics = FusionDiagnostics(curve, held_out, seconds, options.train_steps)
    return TrainedFusion(fusion_key(dctx, data, options), config, options, state, diagnostics, cached=False)


def load_fusion(dctx: DiffusionContext, data: Dataset, options: EVLFOptions | None,
                cache: ArtifactCache | None) -> TrainedFusion | None:
    """The cached module for these inputs, or None (never trains)."""
    options = options or EVLFOptions()
    if cache is None or not dctx.backbone.key:
        return None
    state = cache.load(ARTIFACT_KIND, fusion_key(dctx, data, options))
    return None if state is None else TrainedFusion.from_state(state, cached=True)


def get_fusion(dctx: DiffusionContext, data: Dataset, options: EVLFOptions | None = None,
               cache: ArtifactCache | None = None, progress: ProgressFn = no_progress) -> TrainedFusion:
    """The fusion module for this backbone, data and options: from the cache, or trained now
    and saved. A backbone without a content key (a test's random one) is never cached."""
    options = options or EVLFOptions()
    trained = load_fusion(dctx, data, options, cache)
    if trained is not None:
        return trained
    if cache is None or not dctx.backbone.key:
        return train_fusion(dctx, data, options, progress, None)
    key = fusion_key(dctx, data, options)
    # trained once, however many processes want it at the same time
    with cache.building(ARTIFACT_KIND, key, lambda note: progress(note, 0, 1)):
        trained = load_fusion(dctx, data, options, cache)
        if trained is None:
            trained = train_fusion(dctx, data, options, progress, LoopCheckpoint(cache, key))
            cache.save(ARTIFACT_KIND, trained.key, trained.to_state(),
                       meta={"dataset": data.name, "backbone": dctx.backbone.name, **trained.diagnostics.summary()})
    return trained
