"""A short check of the harness's CUDA paths, with timings: the student loop (the `dc` paper
recipe), stacked students against separate ones, and the samplers at paper scale (DiT-XL/2-256 and the Stable Diffusion v1.5 UNet with
their real configurations and random weights: the cost of a step does not depend on the
weights), in float32 and under bfloat16 autocast. It needs no data set or checkpoint.

    python benchmarks/gpu_check.py [--out results.json]

Each part runs on its own; a part that fails prints its error and the others still run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch


def _synced() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def _peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def synthetic_dataset(channels: int, size: int, train: int, test: int):
    """A 10-class data set of random images in the layout the evaluators read (Fashion-MNIST-like at 1x28x28)."""
    from core.datasets.base import Dataset, Split

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8),
                     torch.arange(n) % 10)

    return Dataset(name=f"synthetic-{channels}x{size}", class_names=tuple(str(i) for i in range(10)),
                   prompts=tuple(str(i) for i in range(10)), channels=channels, image_size=size,
                   mean=(0.5,) * channels, std=(0.25,) * channels, train=split(train), val=split(500), test=split(test))


def student_loop(device: torch.device) -> list[dict[str, Any]]:
    """`evaluate_set` under `dc/paper` (ConvNet-3 width 128, 300 + 1 epochs) at IPC 10 and 50."""
    from evaluators.evaluate import evaluate_set
    from evaluators.protocols import resolve

    data = synthetic_dataset(1, 28, 2000, 10000)
    protocol, budget = resolve("dc", "paper")
    rows = []
    for ipc in (10, 50):
        idx = torch.cat([torch.nonzero(data.train.labels == c).flatten()[:ipc] for c in range(10)])
        images, labels = data.train.float_images()[idx], data.train.labels[idx]
        torch.cuda.reset_peak_memory_stats()
        start = _synced()
        result = evaluate_set(images, labels, data, "convnet3", protocol, budget, 0, device, ipc=ipc)
        rows.append({"part": "student loop", "what": f"dc/paper convnet3 1x28x28 IPC {ipc}, {result.train_steps} steps",
                     "seconds": round(_synced() - start, 2), "train_s": round(result.train_s, 2),
                     "test_s": round(result.test_s, 2), "peak_gib": round(_peak_gib(), 2)})
    return rows


def _sampling_row(part: str, what: str, images: torch.Tensor, marks: tuple[float, float, float, float],
                  **extra: Any) -> dict[str, Any]:
    """A timing row from (start, encoded, sampled, end) clock marks, after checking the images."""
    start, encoded, sampled, end = marks
    assert images.dim() == 4 and torch.isfinite(images).all() and 0 <= float(images.min()) <= float(images.max()) <= 1
    return {"part": part, "what": what, "seconds": round(end - start, 2), "encode_s": round(encoded - start, 2),
            "sample_s": round(sampled - encoded, 2), "decode_s": round(end - sampled, 2),
            "images_per_s": round(images.shape[0] / (end - start), 2), "peak_gib": round(_peak_gib(), 2), **extra}


def _sd_vae(size: int):
    """An AutoencoderKL with sd-vae-ft-mse's (and SD v1.5's) configuration, random weights."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=size)


def _dit_backbone(device: torch.device):
    from diffusers import DiTTransformer2DModel

    from methods.diffusion.backbone import BACKBONES, Backbone
    from methods.diffusion.pretrained import DIT_SCHEDULE

    torch.manual_seed(0)
    # DiT-XL/2-256 and sd-vae-ft-mse as their released configs define them
    dit = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                num_layers=28, sample_size=32, patch_size=2, num_embeds_ada_norm=1000)
    vae = _sd_vae(256)
    return Backbone("dit-xl-2-256 (random weights)", "pretrained", vae, 0.18215, 256, dict(DIT_SCHEDULE),
                    class_denoiser=dit, fit="resize", sampling=BACKBONES.get("dit-xl-2-256").sampling).to(device).eval()


def dit_sampling(device: torch.device) -> list[dict[str, Any]]:
    """`sample_class` (DDPM 50 steps, guidance 4) plus decoding at 256 px, as `dit` runs it."""
    from methods.diffusion.context import DiffusionContext
    from methods.diffusion.samplers import SamplerConfig, sample_class

    backbone = _dit_backbone(device)
    size = backbone.resolution
    ctx = DiffusionContext(backbone, channels=3, image_size=size, batch_size=50)
    params = sum(p.numel() for p in backbone.class_denoiser.parameters())
    rows = []
    for precision, autocast in (("float32", contextlib.nullcontext()),
                                ("bfloat16 autocast", torch.autocast("cuda", dtype=torch.bfloat16))):
        for n in (10, 50):
            labels = torch.arange(n) % 10
            torch.cuda.reset_peak_memory_stats()
            start = _synced()
            with torch.no_grad(), autocast:
                latents = sample_class(ctx, labels, SamplerConfig("ddpm", steps=50, guidance=4.0),
                                       torch.Generator().manual_seed(0))
                sampled = _synced()
                images = ctx.decode(latents)
            end = _synced()
            rows.append(_sampling_row("DiT-XL/2 sampling", f"{n} images, DDPM 50, guidance 4, {precision}", images,
                                      (start, start, sampled, end), denoiser_params_m=round(params / 1e6, 1)))
    return rows


def _sd15_backbone(device: torch.device):
    import tempfile
    from pathlib import Path

    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from methods.diffusion.backbone import Backbone
    from methods.diffusion.text import TextEncoder

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD v1.5's config
    vae = _sd_vae(512)
    # CLIP ViT-L/14's text tower at full size; a letter-level vocabulary stands in for its BPE files
    with tempfile.TemporaryDirectory() as tmp:
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for ch in "abcdefghijklmnopqrstuvwxyz":
            vocab[ch], vocab[f"{ch}</w>"] = len(vocab), len(vocab) + 1
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                                  pad_token="<|endoftext|>", model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77))
    encoder = TextEncoder(tokenizer, text.eval().requires_grad_(False), 77, "clip (random weights)",
                          pass_attention_mask=False)
    sched = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    return Backbone("sd15 (random weights)", "pretrained", vae, 0.18215, 512, sched, text_denoiser=unet,
                    text_encoder=encoder, fit="resize").to(device).eval()


def sd15_img2img(device: torch.device) -> list[dict[str, Any]]:
    """`img2img` at strength 0.7 (DDIM 50, 35 run), guidance 8 with a negative prompt, 512 px, as `d4m` runs it."""
    from methods.diffusion.context import DiffusionContext
    from methods.diffusion.samplers import SamplerConfig, img2img

    backbone = _sd15_backbone(device)
    size = backbone.resolution
    ctx = DiffusionContext(backbone, channels=3, image_size=size, prompts=[f"class {c}" for c in "abcdefghij"],
                           batch_size=10)
    rows = []
    for precision, autocast in (("float32", contextlib.nullcontext()),
                                ("bfloat16 autocast", torch.autocast("cuda", dtype=torch.bfloat16))):
        n = 10
        real = torch.rand(n, 3, size, size)
        labels = torch.arange(n)
        torch.cuda.reset_peak_memory_stats()
        start = _synced()
        with torch.no_grad(), autocast:
            latents = ctx.encode_real(real, labels)
            encoded = _synced()
            out = img2img(ctx, latents, labels, 0.7, SamplerConfig("ddim", steps=50, guidance=8.0),
                          torch.Generator().manual_seed(0), negative_prompt="cartoon, anime, painting")
            sampled = _synced()
            images = ctx.decode(out)
        end = _synced()
        rows.append(_sampling_row("SD v1.5 img2img", f"{n} images {size} px, DDIM 35 of 50, guidance 8, {precision}",
                                  images, (start, encoded, sampled, end)))
    return rows


def stacked_students(device: torch.device) -> list[dict[str, Any]]:
    """1, 5 and 25 ConvNet-3 students trained stacked against one by one (`benchmarks/stacked_students.py`)."""
    from stacked_students import rows  # benchmarks/ is this script's folder, first on sys.path

    return [{**row, "what": f"{row['shape']} x{row['students']}: {row['stacked_ms_per_step']} ms stacked, "
                            f"{row['separate_ms_per_step']} ms one by one ({row['speedup']}x)"}
            for row in rows(device, [1, 5, 25])]


PARTS: dict[str, Callable[[torch.device], list[dict[str, Any]]]] = {
    "student loop": student_loop, "stacked students": stacked_students, "DiT-XL/2 sampling": dit_sampling,
    "SD v1.5 img2img": sd15_img2img}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of: " + ", ".join(PARTS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; nothing to check")
        return 2
    device = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    for name in args.parts.split(","):
        try:
            rows += PARTS[name](device)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other parts
            rows.append({"part": name, "what": "FAILED", "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
        for row in rows[-4:]:
            print(json.dumps(row), flush=True)
    header = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(json.dumps(header))
    print("| part | what | seconds | images/s | peak GiB |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['part']} | {row['what']} | {row.get('seconds', '')} | {row.get('images_per_s', '')} | "
              f"{row.get('peak_gib', '')} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**header, "rows": rows}, f, indent=1)
    return 0 if all(row["what"] != "FAILED" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
