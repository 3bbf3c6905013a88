"""The ``small`` backbone family: an AutoencoderKL, a class-conditional DiT and a
MiniLM-conditioned UNet trained by the harness on one data set, with named recipes, cached
content-addressed in the artifact cache (key: recipe, data fingerprint, recipe version,
text encoder)."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel, UNet2DConditionModel
from diffusers.models.embeddings import LabelEmbedding

from core.artifacts import ArtifactCache, content_key
from core.errors import BenchError
from core.registry import Registry
from methods.diffusion.backbone import FITS, Backbone, ProgressFn, check_resolution, downsampling, no_progress
from methods.diffusion.context import DiffusionContext
from methods.diffusion.text import TextEncoder, load_minilm, minilm_version
from methods.diffusion.training import Optim, train_denoiser, train_vae

RECIPE_VERSION = 1
ARTIFACT_KIND = "backbone"


@dataclass(frozen=True)
class VAERecipe:
    block_out_channels: tuple[int, ...] = (16, 32, 32)  # len - 1 = number of 2x down-samplings
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    kl_weight: float = 1e-6
    optim: Optim = Optim(steps=600, batch_size=64, lr=2e-3)


@dataclass(frozen=True)
class DiTRecipe:
    width: int = 128
    layers: int = 4
    heads: int = 4
    patch_size: int = 2
    label_dropout: float = 0.1
    ema_decay: float = 0.999
    optim: Optim = Optim(steps=1500, batch_size=64, lr=2e-3)


@dataclass(frozen=True)
class UNetRecipe:
    block_out_channels: tuple[int, ...] = (32, 64)
    # Attention (self and cross) at the coarser level only: 16 tokens instead of 64, cheaper
    # per step and no worse (DDIM teacher accuracy 89-95% over two seeds, 92% with it at 8x8).
    down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D")
    layers_per_block: int = 1
    attention_head_dim: int = 8  # diffusers reads this as the number of heads
    norm_num_groups: int = 16
    # Also pool the prompt's tokens into the time embedding (diffusers' "text" addition
    # embedding): a global text signal in every residual block besides cross-attention.
    text_time_embedding: bool = True
    text_dropout: float = 0.1
    ema_decay: float = 0.999
    # Many small steps at a high rate beat fewer large ones here: 2,000 x 64 at 2e-3 reached
    # 92% teacher accuracy where 1,000 x 128 at 1e-3 reached 70% (Fashion-MNIST, DDIM 50, g 4).
    optim: Optim = Optim(steps=1600, batch_size=64, lr=2e-3)


@dataclass(frozen=True)
class ReportConfig:
    """How `bench pretrain` judges a backbone; it keys the report, not the backbone."""

    samples_per_class: int = 50
    # The first sampler is the headline (and the grids): DDPM, the ancestral sampler DiT,
    # Minimax and MGD3 sample with. DDIM is reported beside it.
    samplers: tuple[str, ...] = ("ddpm", "ddim")
    steps: int = 50
    class_guidance: float = 4.0
    text_guidance: float = 4.0
    teacher_steps: int = 1500
    grid_per_class: int = 10
    seed: int = 0


@dataclass(frozen=True)
class SmallRecipe:
    name: str
    resolution: int = 32
    fit: str = "pad-or-resize"
    vae: VAERecipe = VAERecipe()
    dit: DiTRecipe = DiTRecipe()
    unet: UNetRecipe = UNetRecipe()
    text_max_length: int = 16
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_train_timesteps: int = 1000
    min_images_per_class: int = 20
    seed: int = 0
    report: ReportConfig = field(default=ReportConfig(), compare=False)

    def key_config(self) -> dict[str, Any]:
        """The recipe as it enters the backbone's cache key (the report settings do not)."""
        config = dataclasses.asdict(self)
        config.pop("report")
        return config


RECIPES: Registry[SmallRecipe] = Registry("backbone recipe", check=lambda r: isinstance(r, SmallRecipe))
RECIPES.add("small", SmallRecipe("small"))
RECIPES.add("smoke", SmallRecipe(
    "smoke", resolution=8,
    vae=VAERecipe(block_out_channels=(8, 16), optim=Optim(steps=60, batch_size=64, lr=3e-3, warmup=5)),
    dit=DiTRecipe(width=32, layers=2, heads=2, optim=Optim(steps=60, batch_size=64, lr=2e-3, warmup=5)),
    unet=UNetRecipe(block_out_channels=(32, 32), norm_num_groups=8, attention_head_dim=8,
                    optim=Optim(steps=40, batch_size=64, lr=2e-3, warmup=5)),
    min_images_per_class=5,
    report=ReportConfig(samples_per_class=4, steps=8, teacher_steps=150, grid_per_class=4),
))


def scheduler_config(recipe: SmallRecipe) -> dict[str, Any]:
    """The training noise schedule, as a diffusers config that DDPM and DDIM schedulers share."""
    config = DDPMScheduler(num_train_timesteps=recipe.num_train_timesteps, beta_schedule=recipe.beta_schedule,
                           beta_start=recipe.beta_start, beta_end=recipe.beta_end, clip_sample=False).config
    return {k: v for k, v in config.items() if not k.startswith("_")}


def build_models(recipe: SmallRecipe, channels: int, num_classes: int, text_dim: int
                 ) -> tuple[AutoencoderKL, DiTTransformer2DModel, UNet2DConditionModel]:
    """Fresh, randomly initialised models of a recipe (seeded by the caller)."""
    v = recipe.vae
    vae = AutoencoderKL(in_channels=channels, out_channels=channels,
                        down_block_types=("DownEncoderBlock2D",) * len(v.block_out_channels),
                        up_block_types=("UpDecoderBlock2D",) * len(v.block_out_channels),
                        block_out_channels=v.block_out_channels, layers_per_block=v.layers_per_block,
                        latent_channels=v.latent_channels, norm_num_groups=v.norm_num_groups,
                        sample_size=recipe.resolution, mid_block_add_attention=False)
    side = recipe.resolution // downsampling(v.block_out_channels)
    d = recipe.dit
    dit = DiTTransformer2DModel(num_attention_heads=d.heads, attention_head_dim=d.width // d.heads,
                                in_channels=v.latent_channels, out_channels=v.latent_channels,
                                num_layers=d.layers, sample_size=side, patch_size=d.patch_size,
                                num_embeds_ada_norm=num_classes)
    u = recipe.unet
    up_types = tuple(t.replace("Down", "Up") for t in reversed(u.down_block_types))
    unet = UNet2DConditionModel(sample_size=side, in_channels=v.latent_channels, out_channels=v.latent_channels,
                                down_block_types=u.down_block_types, up_block_types=up_types,
                                block_out_channels=u.block_out_channels, layers_per_block=u.layers_per_block,
                                cross_attention_dim=text_dim, attention_head_dim=u.attention_head_dim,
                                norm_num_groups=u.norm_num_groups,
                                addition_embed_type="text" if u.text_time_embedding else None,
                                addition_embed_type_num_heads=u.attention_head_dim)
    return vae, dit, unet


def resolve_recipe(recipe: str | SmallRecipe) -> SmallRecipe:
    return RECIPES.get(recipe) if isinstance(recipe, str) else recipe


def validate(data, recipe: SmallRecipe) -> None:
    """Refuse data the recipe cannot train on, before any work starts."""
    if recipe.fit not in FITS:
        raise BenchError(f"recipe '{recipe.name}': fit must be one of {', '.join(FITS)}, got '{recipe.fit}'")
    factor = downsampling(recipe.vae.block_out_channels)
    patch = recipe.dit.patch_size
    unet_factor = downsampling(recipe.unet.block_out_channels)
    step = factor * max(patch, unet_factor)
    if recipe.resolution % step:
        raise BenchError(f"recipe '{recipe.name}': resolution {recipe.resolution} is not a multiple of {step} "
                         f"(VAE down-sampling x{factor} times the DiT patch / UNet down-sampling)")
    smallest = min(data.train.class_counts(data.num_classes))
    if smallest < recipe.min_images_per_class:
        raise BenchError(f"{data.name} has a class with only {smallest} training images; the '{recipe.name}' "
                         f"backbone recipe needs at least {recipe.min_images_per_class} per class to train")
    if len(data.prompts) != data.num_classes:
        raise BenchError(f"{data.name} has {len(data.prompts)} prompts for {data.num_classes} classes; "
                         "the text denoiser needs one prompt per class")


def backbone_key(data, recipe: SmallRecipe) -> str:
    return content_key({"recipe": recipe.key_config(), "data": data.fingerprint(), "version": RECIPE_VERSION,
                        "text_encoder": minilm_version()})


def _set_label_dropout(model: torch.nn.Module, prob: float) -> None:
    # The training loop drops labels itself with its seeded generator; the DiT's own dropout
    # (a fixed 0.1 from the global RNG) is switched off so it does not drop them twice.
    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = prob


def _train(data, recipe: SmallRecipe, text: TextEncoder, device: torch.device, progress: ProgressFn) -> dict:
    """Train the three models; returns the state the cache stores."""
    torch.manual_seed(recipe.seed)
    vae, dit, unet = build_models(recipe, data.channels, data.num_classes, text.dim)
    sched = scheduler_config(recipe)
    backbone = Backbone("small", "small", vae.to(device), 1.0, recipe.resolution, sched, fit=recipe.fit)
    ctx = DiffusionContext.for_dataset(backbone, data)
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    images = torch.cat([ctx.to_vae_input(chunk) for chunk in data.train.float_images().split(4096)])
    vae_run = train_vae(vae, images, recipe.vae.optim, recipe.vae.kl_weight, recipe.seed, progress)
    seconds["vae"] = vae_run.seconds
    del images

    t0 = time.perf_counter()
    progress("encode", 0, 1)
    latents = ctx.encode_real(data.train.float_images())
    # Unit-variance latents, as Stable Diffusion's 0.18215 does for its VAE.
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    latents = latents * scale
    progress("encode", 1, 1)
    seconds["encode"] = time.perf_counter() - t0

    noise_scheduler = DDPMScheduler.from_config(sched)
    labels = data.train.labels.to(device)
    null = data.num_classes

    dit.to(device)
    _set_label_dropout(dit, 0.0)

    def dit_forward(z, t, idx, drop):
        y = labels[idx.to(device)]
        y = torch.where(drop, torch.full_like(y, null), y)
        return dit(z, timestep=t, class_labels=y, return_dict=False)[0]

    dit_ema, dit_run = train_denoiser(dit, latents, noise_scheduler, dit_forward, recipe.dit.optim,
                                      recipe.dit.label_dropout, recipe.dit.ema_decay, recipe.seed + 1, progress,
                                      "class DiT")
    seconds["class_denoiser"] = dit_run.seconds

    unet.to(device)
    prompt_tokens = text.encode(list(data.prompts)).to(device)
    null_tokens = text.encode([""]).to(device)

    def unet_forward(z, t, idx, drop):
        cond = prompt_tokens[labels[idx.to(device)]]
        cond = torch.where(drop.view(-1, 1, 1), null_tokens.expand_as(cond), cond)
        return unet(z, t, encoder_hidden_states=cond, return_dict=False)[0]

    unet_ema, unet_run = train_denoiser(unet, latents, noise_scheduler, unet_forward, recipe.unet.optim,
                                        recipe.unet.text_dropout, recipe.unet.ema_decay, recipe.seed + 2, progress,
                                        "text UNet")
    seconds["text_denoiser"] = unet_run.seconds
    seconds["total"] = time.perf_counter() - started

    def cpu_state(m: torch.nn.Module) -> dict:
        return {k: v.detach().cpu() for k, v in m.state_dict().items()}

    return {
        "version": RECIPE_VERSION,
        "recipe": recipe.key_config(),
        "configs": {"vae": _config(vae), "class_denoiser": _config(dit_ema),
                    "text_denoiser": _config(unet_ema), "scheduler": sched},
        "state_dicts": {"vae": cpu_state(vae), "class_denoiser": cpu_state(dit_ema),
                        "text_denoiser": cpu_state(unet_ema)},
        "text_encoder": {"name": text.name, "max_length": text.max_length},
        "train_seconds": seconds,
        "final_losses": {"vae": vae_run.final_loss, "class_denoiser": dit_run.final_loss,
                         "text_denoiser": unet_run.final_loss},
        "dataset": data.name,
    }


def _config(model: torch.nn.Module) -> dict:
    # diffusers' from_config resets keys listed in "_use_default_values" to their defaults,
    # which would undo the scaling factor registered after training.
    config = dict(model.config)
    config.pop("_use_default_values", None)
    return config


def _from_state(cls, config: dict, state: dict) -> torch.nn.Module:
    model = cls.from_config(config)
    model.load_state_dict(state)
    return model


def load_small_backbone(data, *, cache: ArtifactCache | None, device: torch.device,
                        progress: ProgressFn = no_progress, recipe: str | SmallRecipe = "small") -> Backbone:
    """The small backbone of ``data``: from the cache, or trained now and cached."""
    recipe = resolve_recipe(recipe)
    validate(data, recipe)
    key = backbone_key(data, recipe)
    text = load_minilm(recipe.text_max_length, device)
    state = cache.load(ARTIFACT_KIND, key) if cache is not None else None
    cached = state is not None
    if state is None:
        state = _train(data, recipe, text, device, progress)
        if cache is not None:
            cache.save(ARTIFACT_KIND, key, state, meta={"recipe": recipe.name, "dataset": data.name,
                                                        "family": "small"})
    configs, weights = state["configs"], state["state_dicts"]
    vae = _from_state(AutoencoderKL, configs["vae"], weights["vae"])
    dit = _from_state(DiTTransformer2DModel, configs["class_denoiser"], weights["class_denoiser"])
    unet = _from_state(UNet2DConditionModel, configs["text_denoiser"], weights["text_denoiser"])
    check_resolution("small", recipe.resolution, downsampling(vae.config.block_out_channels), [dit, unet])
    backbone = Backbone(
        name=f"small[recipe={recipe.name}]", family="small", vae=vae, latent_scale=float(vae.config.scaling_factor),
        resolution=recipe.resolution, scheduler_config=dict(configs["scheduler"]), class_denoiser=dit,
        text_denoiser=unet, text_encoder=text, fit=recipe.fit, key=key,
        info={"recipe": recipe.name, "dataset": data.name, "train_seconds": state["train_seconds"],
              "final_losses": state["final_losses"], "cached": cached},
    )
    return backbone.to(device)
