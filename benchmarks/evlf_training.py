"""Train the EVLF fusion module for a data set on its cached small backbone and report what it
cost and how it did: training seconds, final loss terms, fused-vs-raw latent distance and
held-out class retrieval of fused against raw latents.

Usage: .venv/bin/python benchmarks/evlf_training.py [--dataset fashion-mnist] [--recipe small]
       [--threads 1] [--steps N] [--batch-size N] [--fusion-cache DIR]
The backbone comes from the default artifact cache (trained there first if absent); the fusion
module is always trained afresh (``--fusion-cache`` only says where to save it). Prints JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import torch

from core.artifacts import ArtifactCache, default_cache_root
from core.datasets import load_dataset
from methods.diffusion.backbone import get_backbone
from methods.diffusion.context import DiffusionContext
from methods.evlf.training import ARTIFACT_KIND, EVLFOptions, train_fusion


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--recipe", default="small")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: EVLFOptions)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--fusion-cache", default=None, help="where to save the module (default: a temp dir)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("train_steps", args.steps), ("train_batch", args.batch_size)) if v is not None}
    options = dataclasses.replace(EVLFOptions(), **overrides)

    data = load_dataset(args.dataset)
    start = time.perf_counter()
    backbone = get_backbone(data, "small", cache=ArtifactCache(default_cache_root()), recipe=args.recipe)
    load_seconds = time.perf_counter() - start
    dctx = DiffusionContext.for_dataset(backbone, data)
    start = time.perf_counter()
    trained = train_fusion(dctx, data, options)
    total_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        cache = ArtifactCache(args.fusion_cache or tmp)
        path = cache.save(ARTIFACT_KIND, trained.key, trained.to_state())
        size = path.stat().st_size
    print(json.dumps({
        "dataset": data.name, "backbone": backbone.name, "latent_shape": list(backbone.latent_shape),
        "text_encoder": backbone.text_encoder.name, "text_tokens": backbone.text_encoder.max_length,
        "threads": torch.get_num_threads(), "steps": options.train_steps, "batch_size": options.train_batch,
        "backbone_load_seconds": round(load_seconds, 2),
        "train_plus_diagnostics_seconds": round(total_seconds, 2),
        "module_params": sum(v.numel() for v in trained.state_dict.values()), "artifact_bytes": size,
        **trained.diagnostics.summary(),
        "first_info_nce": round(trained.diagnostics.curve.info_nce[0], 4),
        "first_mse": round(trained.diagnostics.curve.mse[0], 4),
    }, indent=1))


if __name__ == "__main__":
    main()
