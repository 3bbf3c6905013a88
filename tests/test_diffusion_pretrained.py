"""Pretrained backbones: the real diffusers/transformers classes, built from tiny configs with
random weights, saved with ``save_pretrained`` in the expected layout, loaded back through the
real loaders, then sampled; and every way a source can be wrong."""
from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import DiTTransformer2DModel, UNet2DConditionModel

from core.datasets import load_dataset
from core.errors import BenchError
from methods.diffusion import DiffusionContext, get_backbone
from methods.diffusion.samplers import SamplerConfig, img2img, sample_class, sample_text
from miniatures import tiny_vae


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_dit_round_trip_and_class_sampling(dit_dirs, imagewoof_root):
    woof = load_dataset(f"imagewoof[root={imagewoof_root},size=16]")
    dit_dir, vae_dir = dit_dirs
    backbone = get_backbone(woof, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir))
    assert backbone.denoisers() == ["class"] and backbone.null_class == 1000
    assert isinstance(backbone.class_denoiser, DiTTransformer2DModel)
    ctx = DiffusionContext.for_dataset(backbone, woof)
    latents = sample_class(ctx, torch.tensor([3, 7]), SamplerConfig("ddpm", steps=3, guidance=4.0),
                           torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 8, 8)  # the variance half of the DiT output is dropped
    assert ctx.decode(latents).shape == (2, 3, 16, 16)
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


def test_the_dit_receives_the_imagenet_index_of_each_wnid(dit_dirs, imagewoof_root):
    from core.datasets.imagefolder import IMAGEWOOF
    from core.datasets.imagenet import imagenet_index

    woof = load_dataset(f"imagewoof[root={imagewoof_root},size=16]")
    dit_dir, vae_dir = dit_dirs
    backbone = get_backbone(woof, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir))
    ctx = DiffusionContext.for_dataset(backbone, woof)
    seen: list[torch.Tensor] = []
    hook = backbone.class_denoiser.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["class_labels"].clone()), with_kwargs=True)
    try:
        sample_class(ctx, torch.arange(10), SamplerConfig("ddpm", steps=2, guidance=4.0), torch.Generator())
    finally:
        hook.remove()
    expected = [imagenet_index(w) for w in IMAGEWOOF]
    assert expected[:3] == [193, 182, 258]  # Australian terrier, Border terrier, Samoyed in ImageNet-1k
    # every step: the ten ImageNet indices, then as many null labels (1000) for guidance
    assert seen and all(s.tolist() == expected + [1000] * 10 for s in seen)


def test_classes_that_are_not_imagenet_wnids_are_refused_on_the_dit(dit_dirs, digits):
    dit_dir, vae_dir = dit_dirs
    backbone = get_backbone(digits, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir))
    with pytest.raises(BenchError, match="classes of digits are not ImageNet wnids"):
        DiffusionContext.for_dataset(backbone, digits)


def test_clip_receives_the_imagenet_name_of_each_wnid(sd15_dir, imagewoof_root):
    woof = load_dataset(f"imagewoof[root={imagewoof_root},size=16]")
    backbone = get_backbone(woof, "sd15", source=str(sd15_dir))
    ctx = DiffusionContext.for_dataset(backbone, woof)
    tokenizer = backbone.text_encoder.tokenizer
    seen: list[str] = []

    def recording(texts, *args, **kwargs):
        seen.extend(texts)
        return tokenizer(texts, *args, **kwargs)

    backbone.text_encoder.tokenizer = recording
    try:
        latents = ctx.encode_real(woof.train.float_images()[:2], woof.train.labels[:2])
        img2img(ctx, latents, torch.tensor([0, 9]), 0.5, SamplerConfig(steps=2, guidance=8.0), torch.Generator())
    finally:
        backbone.text_encoder.tokenizer = tokenizer
    assert {"Australian terrier", "Old English sheepdog, bobtail"} <= set(seen)


def test_the_dit_loads_sd15_clip_for_plugins_that_read_prompts(dit_dirs, sd15_dir, imagewoof_root, monkeypatch):
    woof = load_dataset(f"imagewoof[root={imagewoof_root},size=16]")
    dit_dir, vae_dir = dit_dirs
    plain = get_backbone(woof, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir))
    assert plain.text_encoder is None
    monkeypatch.setenv("BENCH_SD15", str(sd15_dir))
    with_text = get_backbone(woof, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir), text_encoder="sd15")
    assert with_text.text_encoder.name == f"clip:{sd15_dir}" and with_text.key == plain.key  # the DiT is the same
    assert with_text.text_encoder.encode(["Australian terrier"]).shape == (1, 16, 32)  # padded to max length
    with pytest.raises(BenchError, match="text_encoder must be one of none, sd15"):
        get_backbone(woof, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir), text_encoder="t5")
    monkeypatch.delenv("BENCH_SD15")
    monkeypatch.delenv("BENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(BenchError, match="not in the local Hugging Face cache.*BENCH_SD15"):
        get_backbone(woof, "dit-xl-2-256", source=str(dit_dir), vae_source=str(vae_dir), text_encoder="sd15")
