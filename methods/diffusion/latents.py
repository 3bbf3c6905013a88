"""The hook's latents of a whole training split, cached: k-means prototypes and modes, the
fine-tuning data and the Minimax real memory all start from them.

Memory stays bounded by one batch: the uint8 images are converted and encoded a batch at a
time, and the latents go straight into a memory-mapped ``.npy`` file in the artifact cache,
which every later reader maps instead of loading (pages are read when touched). They are
kept in float32, so a cached latent is bit-identical to a freshly encoded one.

The cache key holds the backbone's key, the hook's identity (``hook_id``: plain VAE means,
or a plug-in's latents) and the data fingerprint, so a plug-in never reads plain latents.
"""
from __future__ import annotations

import numpy as np
import torch

from core.artifacts import ArtifactCache, content_key
from core.datasets.base import Split
from methods.diffusion.context import DiffusionContext

KIND = "hook-latents"
VERSION = 2  # 2: a memory-mapped .npy file (1 was a pickled tensor)


def encode_split(dctx: DiffusionContext, split: Split, out: np.ndarray | torch.Tensor) -> None:
    """Write ``dctx.encode_real`` of every image of ``split`` into ``out`` (N x C x h x w), one
    VAE batch at a time, so only one batch of float images exists at once."""
    step = dctx.vae_batch
    for start in range(0, len(split), step):
        end = min(len(split), start + step)
        images = split.images[start:end].float().div_(255.0)
        latents = dctx.encode_real(images, split.labels[start:end]).cpu()
        out[start:end] = latents.numpy() if isinstance(out, np.ndarray) else latents


def latents_key(dctx: DiffusionContext, data) -> str:
    """The cache key of the hook's latents of ``data.train``."""
    return content_key({"backbone": dctx.backbone.key, "hook": dctx.hook_id, "data": data.fingerprint(),
                        "split": "train", "resolution": dctx.backbone.resolution, "version": VERSION})


def train_latents(dctx: DiffusionContext, data, cache: ArtifactCache | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents N x C x h x w on the CPU, labels N) of ``data.train`` through ``dctx.encode_real``;
    memory-mapped from the cache when the backbone has a content key."""
    labels = data.train.labels.clone()
    shape = (len(data.train), *dctx.backbone.latent_shape)
    if cache is None or not dctx.backbone.key:  # a test's random backbone: nothing to key a file by
        latents = torch.empty(shape)
        encode_split(dctx, data.train, latents)
        return latents, labels
    key = latents_key(dctx, data)
    array = cache.load_array(KIND, key)
    if array is None:
        with cache.building(KIND, key):  # encoded once, however many processes want it
            array = cache.load_array(KIND, key)
            if array is None:
                cache.write_array(KIND, key, shape, np.float32, lambda out: encode_split(dctx, data.train, out),
                                  meta={"dataset": data.name, "hook": dctx.hook_id})
                array = cache.load_array(KIND, key)
    if array is None or array.shape != shape:
        raise RuntimeError(f"the cached latents {cache.path(KIND, key, '.npy')} cannot be read back")
    return torch.from_numpy(array), labels
