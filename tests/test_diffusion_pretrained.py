"""Pretrained backbones: the real diffusers/transformers classes, built from tiny configs with
random weights, saved with ``save_pretrained`` in the expected layout, loaded back through the
real loaders, then sampled; and every way a source can be wrong."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from core.datasets import load_dataset
from core.errors import BenchError
from methods.diffusion import DiffusionContext, get_backbone
from methods.diffusion.samplers import SamplerConfig, img2img, sample_class, sample_text


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vae(channels: int = 3) -> AutoencoderKL:
    return AutoencoderKL(in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                         norm_num_groups=8, sample_size=16)


def write_tokenizer(directory) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters (no merges): enough to tokenise class prompts."""
    directory.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[f"{ch}</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                              pad_token="<|endoftext|>", model_max_length=16)
    for name in ("vocab.json", "merges.txt"):
        (directory / name).unlink()
    tokenizer.save_pretrained(str(directory))
    return tokenizer


@pytest.fixture(scope="module")
def sd15_dir(tmp_path_factory):
    """A Stable Diffusion v1.5 layout: vae/, unet/, text_encoder/, tokenizer/, scheduler/."""
    root = tmp_path_factory.mktemp("sd15")
    torch.manual_seed(0)
    tiny_vae().save_pretrained(root / "vae")
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                         cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")
    tokenizer = write_tokenizer(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(root / "text_encoder")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, skip_prk_steps=True,
                  steps_offset=1).save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def dit_dirs(tmp_path_factory):
    """A DiT layout (transformer/, scheduler/) and a separate AutoencoderKL directory."""
    root = tmp_path_factory.mktemp("dit")
    torch.manual_seed(1)
    # out_channels = 2 x latent channels: noise and variance, as DiT-XL/2 predicts them.
    DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=1,
                          sample_size=8, patch_size=2, num_embeds_ada_norm=1000).save_pretrained(root / "dit" / "transformer")
    DDIMScheduler(clip_sample=False).save_pretrained(root / "dit" / "scheduler")
    tiny_vae().save_pretrained(root / "vae")
    return root / "dit", root / "vae"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_sd15_round_trip_and_text_sampling(sd15_dir, digits):
    backbone = get_backbone(digits, "sd15", source=str(sd15_dir))
    assert backbone.family == "pretrained" and backbone.denoisers() == ["text"]
    assert isinstance(backbone.text_denoiser, UNet2DConditionModel)
    assert backbone.latent_scale == pytest.approx(0.18215)
    assert backbone.resolution == 16 and backbone.latent_shape == (4, 8, 8)  # UNet sample size x VAE factor
    saved = UNet2DConditionModel.from_pretrained(sd15_dir / "unet")
    assert torch.equal(saved.conv_in.weight, backbone.text_denoiser.conv_in.weight)  # the saved weights, not fresh
    assert backbone.scheduler_config["beta_schedule"] == "scaled_linear"

    ctx = DiffusionContext.for_dataset(backbone, digits)  # grey 8x8 images through an RGB VAE at 16 px
    cfg = SamplerConfig("ddim", steps=3, guidance=7.5)
    latents = sample_text(ctx, ["the digit one", "the digit two"], cfg, torch.Generator().manual_seed(0),
                          negative_prompt="cartoon, anime, painting")
    images = ctx.decode(latents)
    assert latents.shape == (2, 4, 8, 8) and images.shape == (2, 1, 8, 8)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1

    # D4M's path: real images -> latents through the hook -> img2img with the class prompt.
    real = digits.train.float_images()[:2]
    protos = ctx.encode_real(real, digits.train.labels[:2])
    out = img2img(ctx, protos, digits.train.labels[:2], 0.7, SamplerConfig(steps=4, guidance=8.0),
                  torch.Generator().manual_seed(0), negative_prompt="cartoon")
    assert out.shape == protos.shape


def test_sd15_source_from_environment(sd15_dir, digits, monkeypatch):
    monkeypatch.setenv("BENCH_SD15", str(sd15_dir))
    assert get_backbone(digits, "sd15", resolution=32).latent_shape == (4, 16, 16)


def test_dit_round_trip_and_class_sampling(dit_dirs, digits):
    dit_dir, vae_dir = dit_dirs
    backbone = get_backbone(digits, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir))
    assert backbone.denoisers() == ["class"] and backbone.null_class == 1000
    assert isinstance(backbone.class_denoiser, DiTTransformer2DModel)
    ctx = DiffusionContext.for_dataset(backbone, digits)
    latents = sample_class(ctx, torch.tensor([3, 7]), SamplerConfig("ddpm", steps=3, guidance=4.0),
                           torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 8, 8)  # the variance half of the DiT output is dropped
    assert ctx.decode(latents).shape == (2, 1, 8, 8)
    with pytest.raises(BenchError, match="no text-conditional denoiser"):
        sample_text(ctx, ["a dog"], SamplerConfig(steps=2), torch.Generator())


def test_missing_path(digits):
    with pytest.raises(BenchError, match="'/nonexistent/sd15' does not exist; expected a local directory or a hub id"):
        get_backbone(digits, "sd15", source="/nonexistent/sd15")


def test_wrong_model_class(sd15_dir, digits, tmp_path):
    bad = tmp_path / "sd15"
    shutil.copytree(sd15_dir, bad)
    shutil.rmtree(bad / "unet")
    tiny_vae().save_pretrained(bad / "unet")
    with pytest.raises(BenchError, match="unet/config.json holds a AutoencoderKL, expected UNet2DConditionModel"):
        get_backbone(digits, "sd15", source=str(bad))


def test_missing_part(sd15_dir, digits, tmp_path):
    bad = tmp_path / "sd15"
    shutil.copytree(sd15_dir, bad)
    shutil.rmtree(bad / "text_encoder")
    with pytest.raises(BenchError, match="has no readable text_encoder/config.json; expected a diffusers Stable"):
        get_backbone(digits, "sd15", source=str(bad))


def test_uncached_hub_id_offline(digits, monkeypatch):
    monkeypatch.delenv("BENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(BenchError, match="hub id 'nobody/no-such-dit' .* not in the local Hugging Face cache and "
                                         "downloads are off"):
        get_backbone(digits, "dit-xl-2-256", source="nobody/no-such-dit")


def test_bad_resolution_and_option(sd15_dir, digits):
    with pytest.raises(BenchError, match="cannot take resolution 10: it must be a positive multiple of 4"):
        get_backbone(digits, "sd15", source=str(sd15_dir), resolution=10)
    with pytest.raises(BenchError, match="backbone 'sd15' has no option 'recipe'"):
        get_backbone(digits, "sd15", source=str(sd15_dir), recipe="small")
