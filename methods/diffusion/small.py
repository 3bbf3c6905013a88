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

from core.artifacts import ArtifactCache, content_key
from core.errors import BenchError
from core.registry import Registry
from methods.diffusion.backbone import FITS, Backbone, ProgressFn, check_resolution, downsampling, no_progress
from methods.checkpoint import LoopCheckpoint
from methods.diffusion.context import DiffusionContext
from methods.diffusion.text import TextEncoder, load_minilm, minilm_version
from methods.diffusion.training import Optim, own_label_dropout_off, train_denoiser, train_vae

RECIPE_VERSION = 1
ARTIFACT_KIND = "backbone"  # the VAE, its latent scale and the recipe
DENOISER_KIND = "backbone-denoiser"  # each denoiser on its own: only the ones a method uses are trained


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


def _fresh_models(data, recipe: SmallRecipe, text: TextEncoder):
    """The recipe's three models as initialised before any training: whichever part is trained,
    and whenever, it starts from the same weights."""
    torch.manual_seed(recipe.seed)
    return build_models(recipe, data.channels, data.num_classes, text.dim)


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _vae_context(data, recipe: SmallRecipe, vae: AutoencoderKL, sched: dict, device: torch.device
                 ) -> DiffusionContext:
    """The data set's context with this VAE and latent scale 1 (unscaled latents)."""
    return DiffusionContext.for_dataset(Backbone("small", "small", vae.to(device), 1.0, recipe.resolution, sched,
                                                 fit=recipe.fit), data)


def _train_autoencoder(data, recipe: SmallRecipe, text: TextEncoder, device: torch.device,
                       progress: ProgressFn, checkpoint: LoopCheckpoint, encoded: list[torch.Tensor]) -> dict:
    """Train the VAE and fix its latent scale; returns the record the cache stores under the backbone
    key, and leaves the scaled training latents in ``encoded`` for the denoisers."""
    vae, _, _ = _fresh_models(data, recipe, text)
    sched = scheduler_config(recipe)
    ctx = _vae_context(data, recipe, vae, sched, device)
    images = torch.cat([ctx.to_vae_input(chunk) for chunk in data.train.float_images().split(4096)])
    vae_run = train_vae(vae, images, recipe.vae.optim, recipe.vae.kl_weight, recipe.seed, progress,
                        checkpoint=checkpoint)
    del images
    t0 = time.perf_counter()
    progress("encode", 0, 1)
    latents = ctx.encode_real(data.train.float_images())
    # Unit-variance latents, as Stable Diffusion's 0.18215 does for its VAE.
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    encoded.append(latents * float(vae.config.scaling_factor))
    progress("encode", 1, 1)
    return {
        "version": RECIPE_VERSION,
        "recipe": recipe.key_config(),
        "configs": {"vae": _config(vae), "scheduler": sched},
        "state_dicts": {"vae": _cpu_state(vae)},
        "text_encoder": {"name": text.name, "max_length": text.max_length},
        "train_seconds": {"vae": vae_run.seconds, "encode": time.perf_counter() - t0},
        "final_losses": {"vae": vae_run.final_loss},
        "dataset": data.name,
    }


def _train_denoiser(kind: str, data, recipe: SmallRecipe, text: TextEncoder, latents: torch.Tensor,
                    sched: dict, device: torch.device, progress: ProgressFn, checkpoint: LoopCheckpoint) -> dict:
    """Train the class DiT (``kind="class"``) or the MiniLM-conditioned UNet (``"text"``) on the
    scaled latents of the trained VAE; returns its record."""
    _, dit, unet = _fresh_models(data, recipe, text)
    noise_scheduler = DDPMScheduler.from_config(sched)
    labels = data.train.labels.to(device)
    if kind == "class":
        null = data.num_classes
        dit.to(device)
        own_label_dropout_off(dit)

        def forward(z, t, idx, drop):
            y = labels[idx.to(device)]
            y = torch.where(drop, torch.full_like(y, null), y)
            return dit(z, timestep=t, class_labels=y, return_dict=False)[0]

        model, part, dropout, seed, name = dit, recipe.dit, recipe.dit.label_dropout, recipe.seed + 1, "class DiT"
    else:
        unet.to(device)
        prompt_tokens = text.encode(list(data.prompts)).to(device)
        null_tokens = text.encode([""]).to(device)

        def forward(z, t, idx, drop):
            cond = prompt_tokens[labels[idx.to(device)]]
            cond = torch.where(drop.view(-1, 1, 1), null_tokens.expand_as(cond), cond)
            return unet(z, t, encoder_hidden_states=cond, return_dict=False)[0]

        model, part, dropout, seed, name = unet, recipe.unet, recipe.unet.text_dropout, recipe.seed + 2, "text UNet"
    ema, run = train_denoiser(model, latents, noise_scheduler, forward, part.optim, dropout, part.ema_decay, seed,
                              progress, name, checkpoint=checkpoint)
    return {"config": _config(ema), "state_dict": _cpu_state(ema), "seconds": run.seconds,
            "final_loss": run.final_loss}


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


def denoiser_key(backbone: str, kind: str) -> str:
    """The cache key of one denoiser of the small backbone with key ``backbone``."""
    return content_key({"backbone": backbone, "denoiser": kind})


def _cached_part(cache: ArtifactCache | None, kind: str, key: str, train, meta: dict) -> tuple[dict, bool]:
    if cache is None:
        return train(), False
    state = cache.load(kind, key)
    if state is not None:
        return state, True
    with cache.building(kind, key):
        state = cache.load(kind, key)  # another process may have built it meanwhile
        if state is not None:
            return state, True
        state = train()
        cache.save(kind, key, state, meta=meta)
    return state, False


def load_small_backbone(data, *, cache: ArtifactCache | None, device: torch.device,
                        progress: ProgressFn = no_progress, recipe: str | SmallRecipe = "small",
                        denoisers: tuple[str, ...] = ("class", "text")) -> Backbone:
    """The small backbone of ``data`` with the ``denoisers`` asked for: each part (the VAE, each
    denoiser) from the cache, or trained now and cached; a denoiser nobody asks for is never trained."""
    recipe = resolve_recipe(recipe)
    validate(data, recipe)
    key = backbone_key(data, recipe)
    text = load_minilm(recipe.text_max_length, device)
    meta = {"recipe": recipe.name, "dataset": data.name, "family": "small"}
    encoded: list[torch.Tensor] = []  # the scaled training latents, encoded once whatever parts train
    state, cached = _cached_part(cache, ARTIFACT_KIND, key, lambda: _train_autoencoder(
        data, recipe, text, device, progress, LoopCheckpoint(cache, f"{key}-vae"), encoded),
                                  meta | {"denoisers": "separate"})
    configs, weights = state["configs"], state["state_dicts"]
    vae = _from_state(AutoencoderKL, configs["vae"], weights["vae"])

    def latents() -> torch.Tensor:
        if not encoded:
            ctx = _vae_context(data, recipe, vae, configs["scheduler"], device)
            encoded.append(ctx.encode_real(data.train.float_images()) * float(vae.config.scaling_factor))
        return encoded[0]

    seconds, losses = dict(state["train_seconds"]), dict(state["final_losses"])
    models: dict[str, torch.nn.Module] = {}
    for kind in denoisers:
        name = f"{kind}_denoiser"
        if name in weights:  # a record of harness versions that trained both denoisers with the VAE
            part = {"config": configs[name], "state_dict": weights[name], "seconds": seconds.get(name),
                    "final_loss": losses.get(name)}
        else:
            part, from_cache = _cached_part(
                cache, DENOISER_KIND, denoiser_key(key, kind),
                lambda: _train_denoiser(kind, data, recipe, text, latents(), configs["scheduler"], device, progress,
                                        LoopCheckpoint(cache, denoiser_key(key, kind))),
                meta | {"backbone": key, "denoiser": kind})
            cached = cached and from_cache
        model_class = DiTTransformer2DModel if kind == "class" else UNet2DConditionModel
        models[kind] = _from_state(model_class, part["config"], part["state_dict"])
        seconds[name], losses[name] = part["seconds"], part["final_loss"]
    seconds["total"] = sum(v for k, v in seconds.items() if k != "total" and v is not None)
    check_resolution("small", recipe.resolution, downsampling(vae.config.block_out_channels), list(models.values()))
    backbone = Backbone(
        name=f"small[recipe={recipe.name}]", family="small", vae=vae, latent_scale=float(vae.config.scaling_factor),
        resolution=recipe.resolution, scheduler_config=dict(configs["scheduler"]), class_denoiser=models.get("class"),
        text_denoiser=models.get("text"), text_encoder=text, fit=recipe.fit, key=key,
        info={"recipe": recipe.name, "dataset": data.name, "train_seconds": seconds, "final_losses": losses,
              "cached": cached},
    )
    return backbone.to(device)
