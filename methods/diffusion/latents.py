"""The hook's latents of a whole training split, cached: k-means prototypes and modes, the
fine-tuning data and the Minimax real memory all start from them.

The cache key holds the backbone's key, the hook's identity (``hook_id``: plain VAE means,
or a plug-in's latents) and the data fingerprint, so a plug-in never reads plain latents.
"""
from __future__ import annotations

import torch

from core.artifacts import ArtifactCache, content_key
from methods.diffusion.context import DiffusionContext

KIND = "hook-latents"
VERSION = 1


def train_latents(dctx: DiffusionContext, data, cache: ArtifactCache | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents N x C x h x w on the CPU, labels N) of ``data.train`` through ``dctx.encode_real``."""
    key = content_key({"backbone": dctx.backbone.key, "hook": dctx.hook_id, "data": data.fingerprint(),
                       "split": "train", "resolution": dctx.backbone.resolution, "version": VERSION})
    labels = data.train.labels.clone()
    state = cache.load(KIND, key) if cache is not None and dctx.backbone.key else None
    if state is not None:
        return state["latents"], labels
    images = data.train.float_images()
    latents = torch.cat([dctx.encode_real(chunk, chunk_labels).cpu()
                         for chunk, chunk_labels in zip(images.split(4096), labels.split(4096))])
    if cache is not None and dctx.backbone.key:
        cache.save(KIND, key, {"latents": latents}, meta={"dataset": data.name, "hook": dctx.hook_id})
    return latents, labels
