"""Pretrained backbones through diffusers and transformers: Stable Diffusion v1.5 and DiT-XL/2
256 (with the sd-vae-ft-mse VAE), from a local directory or a hub id already in the local
Hugging Face cache.

Nothing is downloaded unless the user sets ``BENCH_ALLOW_DOWNLOAD=1``; every way a source can
be wrong (missing path, missing part, wrong model class, hub id not cached) is one BenchError
line that says what was expected.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.artifacts import content_key
from core.datasets.imagenet import CLASS_SPACE
from core.errors import BenchError
from methods.diffusion.backbone import Backbone, check_resolution, downsampling
from methods.diffusion.text import TextEncoder

DOWNLOAD_ENV = "BENCH_ALLOW_DOWNLOAD"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class PretrainedSource:
    """Where a pretrained model is looked for: an environment variable, else a default hub id."""

    env: str
    default: str
    layout: str  # what a local directory must hold, for error messages

    def resolve(self, given: str | None) -> str:
        return given or os.environ.get(self.env) or self.default


SD15 = PretrainedSource("BENCH_SD15", "stable-diffusion-v1-5/stable-diffusion-v1-5",
                        "a diffusers Stable Diffusion directory with vae/, unet/, text_encoder/, tokenizer/, scheduler/")
DIT_XL_2_256 = PretrainedSource("BENCH_DIT_XL_2_256", "facebook/DiT-XL-2-256",
                                "a diffusers DiT directory with transformer/ and scheduler/")
SD_VAE_FT_MSE = PretrainedSource("BENCH_SD_VAE_FT_MSE", "stabilityai/sd-vae-ft-mse",
                                 "an AutoencoderKL directory (config.json and weights)")

# The schedule DiT was trained with, for a DiT directory without scheduler/.
DIT_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                "clip_sample": False}


def _allow_download() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "").lower() in ("1", "true", "yes", "on")


def _where(source: str) -> tuple[str, bool]:
    """(source as loaders take it, is_local); a BenchError for a path that does not exist."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BenchError(f"pretrained source '{source}' is a file; expected a directory")
        return str(path), True
    if _HUB_ID.match(source) and not source.startswith((".", "~")):
        return source, False
    raise BenchError(f"pretrained source '{source}' does not exist; expected a local directory or a hub id "
                     "(owner/name)")


def _read_config(source: str, local: bool, subfolder: str, filename: str) -> dict[str, Any] | None:
    """A component's config as JSON, or None when it cannot be found (locally or in the hub cache)."""
    if local:
        path = Path(source) / subfolder / filename if subfolder else Path(source) / filename
        if not path.is_file():
            return None
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(source, filename, subfolder=subfolder or None,
                                   local_files_only=not _allow_download())
        except Exception:  # noqa: BLE001 - not cached, no network, no such repo: all mean "not found"
            return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _not_found(name: str, source: str, local: bool, part: str, layout: str, env: str) -> BenchError:
    if local:
        return BenchError(f"backbone '{name}': {source} has no readable {part}; expected {layout}")
    how = ("downloads are on but it could not be fetched" if _allow_download()
           else f"downloads are off (set {DOWNLOAD_ENV}=1 where the network is reachable)")
    return BenchError(f"backbone '{name}': hub id '{source}' ({part}) is not in the local Hugging Face cache and "
                      f"{how}; or set {env} to {layout}")


def _load_diffusers(cls, classes: tuple[str, ...], name: str, src: PretrainedSource, source: str, local: bool,
                    subfolder: str) -> torch.nn.Module:
    """Load one diffusers model after checking that the directory holds the expected class."""
    part = f"{subfolder}/config.json" if subfolder else "config.json"
    config = _read_config(source, local, subfolder, "config.json")
    if config is None:
        raise _not_found(name, source, local, part, src.layout, src.env)
    found = config.get("_class_name")
    if found not in classes:
        raise BenchError(f"backbone '{name}': {source} {part} holds a {found or 'model of unknown class'}, "
                         f"expected {' or '.join(classes)}")
    try:
        return cls.from_pretrained(source, subfolder=subfolder or None, local_files_only=not _allow_download())
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad source, said in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"backbone '{name}': cannot load {cls.__name__} from {source} "
                         f"({subfolder or 'root'}): {reason[:200]}") from None


def _load_clip(name: str, source: str, local: bool, device: torch.device) -> TextEncoder:
    from transformers import CLIPTextModel, CLIPTokenizer

    config = _read_config(source, local, "text_encoder", "config.json")
    if config is None:
        raise _not_found(name, source, local, "text_encoder/config.json", SD15.layout, SD15.env)
    if config.get("model_type") not in ("clip_text_model", "clip"):
        raise BenchError(f"backbone '{name}': {source} text_encoder/ holds a '{config.get('model_type')}' model, "
                         "expected a CLIP text model (CLIPTextModel)")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=not _allow_download())
        model = CLIPTextModel.from_pretrained(source, subfolder="text_encoder",
                                              local_files_only=not _allow_download())
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"backbone '{name}': cannot load the CLIP tokenizer and text encoder from {source}: "
                         f"{reason[:200]}") from None
    max_length = min(int(tokenizer.model_max_length), int(model.config.max_position_embeddings))
    encoder = TextEncoder(tokenizer, model.eval().requires_grad_(False), max_length, name=f"clip:{source}",
                          pass_attention_mask=False)
    return encoder.to(device)


def _scheduler_config(source: str, local: bool, fallback: dict[str, Any] | None, name: str,
                      src: PretrainedSource) -> dict[str, Any]:
    config = _read_config(source, local, "scheduler", "scheduler_config.json")
    if config is None:
        if fallback is None:
            raise _not_found(name, source, local, "scheduler/scheduler_config.json", src.layout, src.env)
        return dict(fallback)
    # Only the noise schedule carries over; DDPM and DDIM are built from it by the samplers.
    return {k: v for k, v in config.items() if not k.startswith("_")}


def load_sd15(data, *, device: torch.device, source: str | None = None, resolution: int | None = None) -> Backbone:
    """Stable Diffusion v1.5: VAE, text UNet, CLIP text encoder and tokenizer, noise schedule."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    name = "sd15"
    source, local = _where(SD15.resolve(source))
    vae = _load_diffusers(AutoencoderKL, ("AutoencoderKL",), name, SD15, source, local, "vae")
    unet = _load_diffusers(UNet2DConditionModel, ("UNet2DConditionModel",), name, SD15, source, local, "unet")
    text = _load_clip(name, source, local, device)
    if unet.config.cross_attention_dim != text.dim:
        raise BenchError(f"backbone '{name}': the UNet attends to {unet.config.cross_attention_dim}-d text tokens "
                         f"but the text encoder gives {text.dim}-d ones; expected parts of one pipeline")
    sched = _scheduler_config(source, local, None, name, SD15)
    res = resolution or int(unet.config.sample_size) * downsampling(vae.config.block_out_channels)
    check_resolution(name, res, downsampling(vae.config.block_out_channels), [unet])
    backbone = Backbone(name, "pretrained", vae, float(vae.config.scaling_factor), res, sched,
                        text_denoiser=unet, text_encoder=text, fit="resize",
                        key=content_key({"backbone": name, "source": source, "resolution": res,
                                         "configs": [dict(vae.config), dict(unet.config)]}),
                        info={"source": source})
    return backbone.to(device)


TEXT_ENCODERS = ("none", "sd15")


def load_dit_xl_2_256(data, *, device: torch.device, source: str | None = None, vae_source: str | None = None,
                      resolution: int | None = None, text_encoder: str = "none") -> Backbone:
    """DiT-XL/2 256 (class-conditional, 1000 ImageNet classes) with the sd-vae-ft-mse VAE.

    ``text_encoder="sd15"`` adds Stable Diffusion v1.5's CLIP tokenizer and text model (from
    ``BENCH_SD15`` or its cached hub id), as the EVLF authors' MGD3 pipeline borrows them to
    fuse class prompts; the DiT itself never reads text, so the backbone's key ignores it.
    """
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    name = "dit-xl-2-256"
    source, local = _where(DIT_XL_2_256.resolve(source))
    vae_src, vae_local = _where(SD_VAE_FT_MSE.resolve(vae_source))
    # Older DiT checkpoints name the class Transformer2DModel; diffusers maps them to DiT.
    dit = _load_diffusers(DiTTransformer2DModel, ("DiTTransformer2DModel", "Transformer2DModel"), name, DIT_XL_2_256,
                          source, local, "transformer")
    vae = _load_diffusers(AutoencoderKL, ("AutoencoderKL",), name, SD_VAE_FT_MSE, vae_src, vae_local, "")
    if text_encoder not in TEXT_ENCODERS:
        raise BenchError(f"backbone '{name}': text_encoder must be one of {', '.join(TEXT_ENCODERS)}, got '{text_encoder}'")
    text = None
    if text_encoder == "sd15":
        text = _load_clip(name, *_where(SD15.resolve(None)), device)
    sched = _scheduler_config(source, local, DIT_SCHEDULE, name, DIT_XL_2_256)
    res = resolution or int(dit.config.sample_size) * downsampling(vae.config.block_out_channels)
    check_resolution(name, res, downsampling(vae.config.block_out_channels), [dit])
    backbone = Backbone(name, "pretrained", vae, float(vae.config.scaling_factor), res, sched,
                        class_denoiser=dit, text_encoder=text, fit="resize", class_space=CLASS_SPACE,
                        key=content_key({"backbone": name, "source": source, "vae": vae_src, "resolution": res,
                                         "configs": [dict(vae.config), dict(dit.config)]}),
                        info={"source": source, "vae_source": vae_src})
    return backbone.to(device)
