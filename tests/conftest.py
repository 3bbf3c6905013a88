"""Shared test fixtures: isolated store/cache directories and Ray kept on loopback."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Everything the tests cache (decoded image folders included) goes to a temporary directory,
    never to the user's cache; ``bench_env`` narrows it to one test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("session-cache")))
        yield


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


def write_wnid_tree(root, wnids) -> None:
    """An ImageNet-subset tree with these wnid folders (train/ and val/), three small images per
    class and split in mixed sizes, aspect ratios and formats: RGB and CMYK JPEG, greyscale and
    RGBA PNG. Class k is a flat colour, so a loaded label can be checked against its pixels."""
    import numpy as np
    from PIL import Image

    shapes = ((20, 16), (16, 28), (24, 24))
    for split in ("train", "val"):
        for k, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            colour = (25 * k, 255 - 25 * k, 128)
            for i, (w, h) in enumerate(shapes):
                img = Image.fromarray(np.full((h, w, 3), colour, dtype=np.uint8))
                if i == 0:
                    img.convert("CMYK" if k % 2 else "RGB").save(folder / f"{i}.JPEG", quality=95)
                else:
                    img.convert("L" if (k + i) % 3 == 0 else "RGBA").save(folder / f"{i}.png")


@pytest.fixture(scope="session")
def imagewoof_root(tmp_path_factory):
    """An ImageWoof tree with the real wnids (see `write_wnid_tree`)."""
    from core.datasets.imagefolder import IMAGEWOOF

    root = tmp_path_factory.mktemp("imagewoof")
    write_wnid_tree(root, IMAGEWOOF)
    return root


@pytest.fixture(scope="session")
def imagenette_root(tmp_path_factory):
    """An ImageNette tree with the real wnids (see `write_wnid_tree`)."""
    from core.datasets.imagefolder import IMAGENETTE

    root = tmp_path_factory.mktemp("imagenette")
    write_wnid_tree(root, IMAGENETTE)
    return root


IDC_CLASSES = ("n01749939", "n01773797", "n02091831", "n02107142", "n02488291",
               "n02869837", "n03062245", "n04517823", "n04589890", "n13037406")  # IDC's ImageNet subset


@pytest.fixture(scope="session")
def imageidc_root(tmp_path_factory):
    """An ImageIDC tree and its classes file (one wnid per line, as IDC's lists)."""
    root = tmp_path_factory.mktemp("imageidc")
    write_wnid_tree(root / "data", IDC_CLASSES)
    (root / "classes.txt").write_text("\n".join(IDC_CLASSES) + "\n")
    return root / "data", root / "classes.txt"


@pytest.fixture(scope="session")
def sd15_dir(tmp_path_factory):
    """A miniature Stable Diffusion v1.5 directory (see `miniatures.write_sd15`)."""
    from miniatures import write_sd15

    return write_sd15(tmp_path_factory.mktemp("sd15"))


@pytest.fixture(scope="session")
def dit_dirs(tmp_path_factory):
    """Miniature DiT-XL/2-256 and sd-vae-ft-mse directories (see `miniatures.write_dit`)."""
    from miniatures import write_dit

    return write_dit(tmp_path_factory.mktemp("dit"))
