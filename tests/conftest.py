"""Shared test fixtures: isolated store/cache directories and Ray kept on loopback."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def bench_env(tmp_path, monkeypatch):
    """Point the result store and the artifact cache at fresh temporary directories."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    monkeypatch.setenv("BENCH_STORE", str(store))
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return store, cache


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is as fast as two, and does not stall when other work shares the
    cores. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_backbone_parts():
    """``build(num_classes, key="")``: a randomly initialised backbone of the `smoke` recipe
    (8-px VAE frame, 1 channel, class DiT and MiniLM-conditioned UNet), not trained."""
    import torch

    from methods.diffusion.backbone import Backbone
    from methods.diffusion.small import RECIPES, build_models, scheduler_config
    from methods.diffusion.text import load_minilm

    text = load_minilm(8)

    def build(num_classes: int, key: str = "", vae_gain: float = 1.0) -> Backbone:
        torch.manual_seed(0)
        recipe = RECIPES.get("smoke")
        vae, dit, unet = build_models(recipe, channels=1, num_classes=num_classes, text_dim=text.dim)
        if vae_gain != 1.0:
            with torch.no_grad():
                vae.quant_conv.weight.mul_(vae_gain)
                vae.quant_conv.bias.mul_(vae_gain)
        return Backbone("tiny", "small", vae, 0.7, recipe.resolution, scheduler_config(recipe), class_denoiser=dit,
                        text_denoiser=unet, text_encoder=text, fit="pad-or-resize", key=key).eval()

    return build
