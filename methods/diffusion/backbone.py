"""The `Backbone` bundle diffusion methods receive (VAE, denoisers, text encoder, scheduler) and
the registry of backbones: the ``small`` family trained per data set and the pretrained ones."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from core.datasets.imagenet import CLASS_SPACE
from core.errors import BenchError
from core.registry import Registry
from methods.diffusion.text import TextEncoder

DenoiserKind = Literal["class", "text"]
DENOISER_KINDS: tuple[str, ...] = ("class", "text")
FITS: tuple[str, ...] = ("pad-or-resize", "resize")

# (phase, done, total): training loops and samplers report through this; the CLI draws bars.
ProgressFn = Callable[[str, int, int], None]


def no_progress(phase: str, done: int, total: int) -> None:
    """The default progress callback: report nothing."""


@dataclass(frozen=True)
class BackboneSampling:
    """How the reference sampler of a backbone's authors reads its denoiser, where that differs
    from plain epsilon prediction with guidance on every channel (data, per backbone)."""

    learned_variance: bool = False  # the output's second half is a learned-range variance, used by DDPM
    guided_channels: int | None = None  # classifier-free guidance on the first this many channels; None: all
    timestep_spacing: str | None = None  # diffusers' spacing of the inference timesteps; None: the scheduler's

    def to_config(self) -> dict[str, Any]:
        """The non-default fields, for a method's config (empty for plain backbones)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(BackboneSampling, k)}


@dataclass
class Backbone:
    """Everything a diffusion method needs from its generator, on one device.

    ``resolution`` is the VAE's input size in pixels; ``fit`` says how native images reach it
    (``pad-or-resize``: centred zero padding when they fit, else resizing; ``resize``: always
    resize). ``scheduler_config`` is a diffusers scheduler config that DDPM and DDIM schedulers
    are built from. The class denoiser's null label (for classifier-free guidance) is its
    number of class embeddings.
    """

    name: str
    family: str
    vae: nn.Module
    latent_scale: float
    resolution: int
    scheduler_config: dict[str, Any]
    class_denoiser: nn.Module | None = None
    text_denoiser: nn.Module | None = None
    text_encoder: TextEncoder | None = None
    fit: str = "resize"
    key: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    # The label space of the class denoiser: None when it was trained on the data set's own class
    # indices (the small family), "imagenet-1k" when it takes ImageNet-1k class indices.
    class_space: str | None = None
    sampling: BackboneSampling = field(default_factory=BackboneSampling)

    @property
    def image_channels(self) -> int:
        return int(self.vae.config.in_channels)

    @property
    def vae_factor(self) -> int:
        """How many pixels of each side one latent cell covers."""
        return downsampling(self.vae.config.block_out_channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.vae_factor
        return int(self.vae.config.latent_channels), side, side

    @property
    def null_class(self) -> int:
        return int(self.denoiser("class").config.num_embeds_ada_norm)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def denoisers(self) -> list[str]:
        """The kinds of denoiser this backbone has."""
        return [k for k in DENOISER_KINDS if getattr(self, f"{k}_denoiser") is not None]

    def denoiser(self, kind: str) -> nn.Module:
        """The class- or text-conditional denoiser; a BenchError if this backbone lacks it."""
        if kind not in DENOISER_KINDS:
            raise ValueError(f"denoiser kind must be one of {DENOISER_KINDS}, got {kind!r}")
        model = getattr(self, f"{kind}_denoiser")
        if model is None:
            has = ", ".join(self.denoisers()) or "none"
            raise BenchError(f"backbone '{self.name}' has no {kind}-conditional denoiser (it has: {has}); "
                             f"use a backbone with one, e.g. 'small' (both) or "
                             f"'{'sd15' if kind == 'text' else 'dit-xl-2-256'}'")
        if kind == "text" and self.text_encoder is None:
            raise BenchError(f"backbone '{self.name}' has a text denoiser but no text encoder")
        return model

    def to(self, device: torch.device) -> Backbone:
        for module in (self.vae, self.class_denoiser, self.text_denoiser):
            if module is not None:
                module.to(device)
        if self.text_encoder is not None:
            self.text_encoder.to(device)
        return self

    def eval(self) -> Backbone:
        """Inference mode for every part: no dropout, no label dropout, no gradients."""
        for module in (self.vae, self.class_denoiser, self.text_denoiser):
            if module is not None:
                module.eval().requires_grad_(False)
        return self

    def param_counts(self) -> dict[str, int]:
        def count(m: nn.Module | None) -> int:
            return 0 if m is None else sum(p.numel() for p in m.parameters())

        return {"params_vae": count(self.vae), "params_class_denoiser": count(self.class_denoiser),
                "params_text_denoiser": count(self.text_denoiser),
                "params_text_encoder": self.text_encoder.num_parameters() if self.text_encoder else 0}


def denoiser_factor(model: nn.Module) -> int:
    """The latent side length must be a multiple of this (DiT patch size, UNet down-sampling)."""
    cfg = model.config
    if "patch_size" in cfg and cfg.patch_size:
        return int(cfg.patch_size)
    return downsampling(cfg.block_out_channels)


def downsampling(block_out_channels: Sequence[int]) -> int:
    """How many pixels of each side one cell covers after a diffusers VAE encoder or UNet with
    these blocks: every block but the last halves the side."""
    return 2 ** (len(block_out_channels) - 1)


def check_resolution(name: str, resolution: int, vae_factor: int, denoisers: list[nn.Module]) -> None:
    """Refuse a resolution the VAE or a denoiser cannot take, in one line that says what fits."""
    step = vae_factor
    for model in denoisers:
        step = max(step, vae_factor * denoiser_factor(model))
    if resolution <= 0 or resolution % step:
        raise BenchError(f"backbone '{name}' cannot take resolution {resolution}: it must be a positive "
                         f"multiple of {step} (VAE down-sampling x{vae_factor} times the denoisers' "
                         "patch or down-sampling factor)")


def require_denoiser(method: object, backbone: Backbone) -> nn.Module:
    """The denoiser a method declares with ``needs_denoiser = "class" | "text"``.

    A method without the attribute needs none and gets a BenchError, since calling this means
    it is about to sample.
    """
    kind = getattr(method, "needs_denoiser", None)
    name = getattr(method, "name", "") or type(method).__name__
    if kind is None:
        raise BenchError(f"method '{name}' declares no denoiser (set needs_denoiser = 'class' or 'text')")
    try:
        return backbone.denoiser(kind)
    except BenchError as exc:
        raise BenchError(f"method '{name}' needs a {kind}-conditional denoiser: {exc}") from None


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: its family and a lazy ``"module:function"`` loader.

    The loader takes the data set and keyword options (``cache``, ``device``, ``progress`` and
    backbone-specific ones such as ``recipe`` or ``source``) and returns a `Backbone`.
    """

    family: str
    loader: str
    description: str
    denoisers: tuple[str, ...] = DENOISER_KINDS  # which kinds it provides, known without loading it
    class_space: str | None = None  # its class denoiser's label space (see `Backbone.class_space`)
    # loader options that add a text encoder to a backbone without one, for plug-ins that read text
    text_options: dict[str, str] = field(default_factory=dict)
    sampling: BackboneSampling = field(default_factory=BackboneSampling)

    def load(self) -> Callable[..., Backbone]:
        module, _, attr = self.loader.partition(":")
        return getattr(importlib.import_module(module), attr)


BACKBONES: Registry[BackboneEntry] = Registry("backbone", check=lambda e: isinstance(e, BackboneEntry))
BACKBONES.add("small", BackboneEntry(
    "small", "methods.diffusion.small:load_small_backbone",
    "trained by the harness on the data set (AutoencoderKL, class DiT, MiniLM-conditioned UNet); cached",
    ("class", "text")))
BACKBONES.add("sd15", BackboneEntry(
    "pretrained", "methods.diffusion.pretrained:load_sd15",
    "Stable Diffusion v1.5 (text UNet, CLIP); local diffusers directory or cached hub id", ("text",)))
BACKBONES.add("dit-xl-2-256", BackboneEntry(
    "pretrained", "methods.diffusion.pretrained:load_dit_xl_2_256",
    "DiT-XL/2 256 (class DiT) with the sd-vae-ft-mse VAE; local directories or cached hub ids", ("class",),
    class_space=CLASS_SPACE, text_options={"text_encoder": "sd15"},
    # DiT's own sampler (its models.py and diffusion/): the learned variance, guidance on the first 3
    # of the 4 latent channels, and the steps respaced evenly over the 1,000 (linspace)
    sampling=BackboneSampling(learned_variance=True, guided_channels=3, timestep_spacing="linspace")))


def get_backbone(data: Any, name: str = "small", *, cache: Any = None, device: torch.device | None = None,
                 progress: ProgressFn | None = None, **options: Any) -> Backbone:
    """The backbone ``name`` for data set ``data``, on ``device``, in eval mode.

    ``small`` trains on first use and is cached (options: ``recipe``); pretrained backbones
    load from a local directory or a cached hub id (options: ``source``, ``resolution``, ...).
    An option the backbone does not take is refused with the ones it does.
    """
    entry = BACKBONES.get(name)
    loader = entry.load()
    accepted = set(inspect.signature(loader).parameters) - {"data"}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted - {"cache", "device", "progress"})) or "none"
        raise BenchError(f"backbone '{name}' has no option '{unknown[0]}' (its options: {valid})")
    common = {"cache": cache, "device": device or torch.device("cpu"), "progress": progress or no_progress}
    kwargs = {k: v for k, v in common.items() if k in accepted}
    backbone = loader(data, **kwargs, **given)
    backbone.sampling = entry.sampling
    return backbone.eval()
