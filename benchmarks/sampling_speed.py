"""Measure batched against one-image-at-a-time sampling: images per second of each denoiser of
the small backbone, with the same sampler, steps and guidance, decoding included.

Usage: .venv/bin/python benchmarks/sampling_speed.py [--dataset fashion-mnist] [--recipe small]
       [--batch 200] [--single 10] [--steps 50] [--threads N]
Uses the cached backbone when there is one, else the recipe's architecture with random
weights (speed does not depend on the weights). Prints one JSON object per denoiser.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from core.artifacts import ArtifactCache, default_cache_root
from core.datasets import load_dataset
from methods.diffusion.backbone import Backbone
from methods.diffusion.context import DiffusionContext
from methods.diffusion.samplers import SamplerConfig, sample_class, sample_text
from methods.diffusion.small import ARTIFACT_KIND, RECIPES, backbone_key, build_models, load_small_backbone
from methods.diffusion.small import scheduler_config
from methods.diffusion.text import load_minilm


def backbone_for(data, recipe_name: str) -> tuple[Backbone, str]:
    recipe = RECIPES.get(recipe_name)
    cache = ArtifactCache(default_cache_root())
    if cache.meta(ARTIFACT_KIND, backbone_key(data, recipe)) is not None:
        return load_small_backbone(data, cache=cache, device=torch.device("cpu"), recipe=recipe).eval(), "cached"
    text = load_minilm(recipe.text_max_length)
    vae, dit, unet = build_models(recipe, data.channels, data.num_classes, text.dim)
    return Backbone("small", "small", vae, 1.0, recipe.resolution, scheduler_config(recipe), class_denoiser=dit,
                    text_denoiser=unet, text_encoder=text, fit=recipe.fit).eval(), "random weights"


def images_per_second(ctx: DiffusionContext, kind: str, labels: torch.Tensor, cfg: SamplerConfig,
                      one_at_a_time: bool) -> float:
    generator = torch.Generator().manual_seed(0)

    def run(y: torch.Tensor) -> torch.Tensor:
        if kind == "class":
            return ctx.decode(sample_class(ctx, y, cfg, generator))
        return ctx.decode(sample_text(ctx, ctx.class_prompts(y), cfg, generator))

    run(labels[:2])  # warm-up: first-call allocations and prompt embeddings
    start = time.perf_counter()
    if one_at_a_time:
        for y in labels:
            run(y.view(1))
    else:
        run(labels)
    return len(labels) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--recipe", default="small")
    parser.add_argument("--batch", type=int, default=200, help="images sampled as one batch")
    parser.add_argument("--single", type=int, default=10, help="images sampled one at a time")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    backbone, weights = backbone_for(data, args.recipe)
    ctx = DiffusionContext.for_dataset(backbone, data, batch_size=max(args.batch, 1))
    cfg = SamplerConfig("ddim", args.steps, args.guidance)
    for kind in ("class", "text"):
        labels = torch.arange(args.batch) % data.num_classes
        batched = images_per_second(ctx, kind, labels, cfg, one_at_a_time=False)
        single = images_per_second(ctx, kind, labels[: args.single], cfg, one_at_a_time=True)
        print(json.dumps({"denoiser": kind, "weights": weights, "sampler": f"ddim {args.steps} steps",
                          "guidance": args.guidance, "threads": torch.get_num_threads(),
                          "batched_images_per_s": round(batched, 2), "batch": args.batch,
                          "single_images_per_s": round(single, 2), "speedup": round(batched / single, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
