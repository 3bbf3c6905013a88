"""The hook latents of a training split: encoded a VAE batch at a time, cached as a memory-mapped
float32 file, and equal to encoding every image at once."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from methods.diffusion.context import DiffusionContext
from methods.diffusion.latents import KIND, train_latents


@pytest.mark.parametrize(("resolution", "expected"), [(8, 256), (32, 256), (64, 64), (128, 16), (256, 4), (512, 1)])
def test_the_vae_batch_shrinks_with_the_pixels(tiny_backbone_parts, resolution, expected):
    backbone = dataclasses.replace(tiny_backbone_parts(3), resolution=resolution)
    assert DiffusionContext(backbone, channels=1, image_size=8).vae_batch == expected
    assert DiffusionContext(backbone, channels=1, image_size=8, batch_size=2).vae_batch == min(2, expected)


def test_cached_latents_equal_one_encoding_of_the_whole_split(tiny_backbone_parts, tmp_path, monkeypatch):
    data = load_dataset("digits")
    dctx = DiffusionContext.for_dataset(tiny_backbone_parts(data.num_classes, key="tiny-key"), data, batch_size=64)
    whole = dctx.encode_real(data.train.float_images(), data.train.labels)

    batches: list[int] = []
    encode = dctx.encode_real

    def counting(images, labels=None):
        batches.append(images.shape[0])
        return encode(images, labels)

    monkeypatch.setattr(dctx, "encode_real", counting)
    cache = ArtifactCache(tmp_path)
    latents, labels = train_latents(dctx, data, cache)
    assert torch.equal(latents, whole) and torch.equal(labels, data.train.labels)
    assert sum(batches) == len(data.train) and max(batches) == 64  # never more than one VAE batch at once
    files = list((tmp_path / KIND).glob("*.npy"))
    assert len(files) == 1 and isinstance(cache.load_array(KIND, files[0].stem), np.memmap)

    batches.clear()
    again, _ = train_latents(dctx, data, cache)
    assert batches == [] and torch.equal(again, whole)  # read from the file, not encoded again
    assert torch.equal(train_latents(dctx, data, None)[0], whole)  # no cache: the same values in memory
