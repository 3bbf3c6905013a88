"""Peak memory of the paper-scale path on the CPU, on a generated tree of ImageWoof's size.

The tree has ImageWoof's ten wnid folders, 900 training images per class (9,000) and 393 test
images per class (ImageWoof's 3,929, rounded), JPEGs of mixed sizes around 256 px. The models
are miniatures with the real classes and layouts (`tests/miniatures.py`): DiT-XL/2's transformer
at the 32 x 32 latent of 256 px, a four-block VAE that down-samples by 8 as sd-vae-ft-mse does,
and SD v1.5's CLIP text model for EVLF, all at tiny widths. Model weights and activations are
therefore tiny; what the figures measure is what grows with the data: the decoded split, the
hook latents, the float images and everything the harness derives from the whole split.

Each phase runs in a fresh process that reports its peak resident memory (``ru_maxrss``) and,
sampled every 20 ms, its peak anonymous memory (``RssAnon``: private, what the process really
costs) and peak file-backed memory (``RssFile``: pages of the memory-mapped decoded images and
latents, shared by every process on the machine and dropped by the kernel under pressure):

- ``load``: ``imagewoof[size=256]`` decoded (train, validation and test splits, uint8);
- ``encode``: the hook latents of the training split, written to the artifact cache;
- ``evlf``: EVLF's fusion module trained on the training split (``train_steps`` as given);
- ``mgd3``: ``mgd3`` on ``dit-xl-2-256`` at IPC 50 (k-means modes from the cached latents,
  500 images sampled and decoded).

    python benchmarks/memory_paper_scale.py [--work DIR] [--evlf-steps 10] [--evlf-batch 32]
        [--phases load,encode,evlf,mgd3] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN_PER_CLASS, TEST_PER_CLASS, SIZE = 900, 393, 256
PHASES = ("load", "encode", "evlf", "mgd3")


def write_tree(root: Path, train: int, test: int) -> None:
    """Smooth random JPEGs (small files, real decoding and resizing) in ImageWoof's folders."""
    import numpy as np
    from PIL import Image

    from core.datasets.imagefolder import IMAGEWOOF

    rng = np.random.default_rng(0)
    shapes = ((320, 256), (256, 341), (400, 300), (256, 256), (500, 375))
    for split, count in (("train", train), ("val", test)):
        for wnid in IMAGEWOOF:
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
                small.resize(shapes[i % len(shapes)], Image.Resampling.BILINEAR).save(folder / f"{i:04d}.JPEG", quality=80)
    (root / "complete").write_text("ok\n")


def prepare(work: Path, train: int, test: int) -> dict[str, str]:
    """The tree and the miniature checkpoints (written once), and the environment the phases read."""
    sys.path.insert(0, str(ROOT / "tests"))
    from miniatures import write_dit, write_sd15

    tree, models = work / "imagewoof", work / "models"
    if not (tree / "complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        start = time.perf_counter()
        write_tree(tree, train, test)
        print(f"wrote {10 * (train + test)} JPEGs in {time.perf_counter() - start:.0f} s", flush=True)
    if not (models / "complete").exists():
        shutil.rmtree(models, ignore_errors=True)
        write_sd15(models / "sd15")
        write_dit(models, sample_size=SIZE // 8, vae_blocks=(8, 8, 16, 16))
        (models / "complete").write_text("ok\n")
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # nothing cached: the encode phase really encodes
    return {"BENCH_IMAGEWOOF_ROOT": str(tree), "BENCH_SD15": str(models / "sd15"),
            "BENCH_DIT_XL_2_256": str(models / "dit"), "BENCH_SD_VAE_FT_MSE": str(models / "vae"),
            "BENCH_CACHE": str(cache)}


def run_phase(phase: str, evlf_steps: int, evlf_batch: int) -> dict:
    """One phase in this process; returns its figures."""
    import torch

    from benchmark.grid.memory import PeakMemory, status_gib
    from core.artifacts import ArtifactCache, default_cache_root
    from core.datasets import load_dataset
    from methods.base import DistillContext
    from methods.diffusion.latents import train_latents
    from methods.registry import resolve_method

    baseline = status_gib("VmRSS").get("VmRSS", float("nan"))
    detail: dict = {}
    with PeakMemory("cpu", interval=0.02) as peak:
        start = time.perf_counter()
        data = load_dataset(f"imagewoof[size={SIZE}]")
        loaded = time.perf_counter()
        ctx = DistillContext(ArtifactCache(default_cache_root()), torch.device("cpu"))
        if phase == "encode":
            distiller = resolve_method("mgd3[backbone=dit-xl-2-256]").distiller
            detail["latents"] = list(train_latents(distiller.plain_context(data, ctx), data, ctx.cache)[0].shape)
        elif phase == "evlf":
            spec = f"mgd3+evlf[backbone=dit-xl-2-256,train_steps={evlf_steps},train_batch={evlf_batch}]"
            resolve_method(spec).distiller.prepare(data, ctx)
            detail["evlf_batch"] = evlf_batch
        elif phase == "mgd3":
            out = resolve_method("mgd3[backbone=dit-xl-2-256]").distiller.distill(data, 50, 0, ctx)
            detail["images"] = list(out.images.shape)
        done = time.perf_counter()
    splits = (data.train, data.val, data.test)
    return {"phase": phase, "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "peak_anon_gib": round(peak.peaks["RssAnon"], 2), "peak_file_gib": round(peak.peaks["RssFile"], 2),
            "after_imports_gib": round(baseline, 2), "load_s": round(loaded - start, 1),
            "phase_s": round(done - loaded, 1), "train_images": len(data.train), "val_images": len(data.val),
            "test_images": len(data.test), "uint8_gib": round(sum(s.images.numel() for s in splits) / 2**30, 2),
            **detail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/evlf-bench-memory", help="where the tree, models and cache go")
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    parser.add_argument("--evlf-steps", type=int, default=10, help="EVLF training steps (memory does not grow with them)")
    parser.add_argument("--evlf-batch", type=int, default=32, help="EVLF training batch (EVLFOptions: 32; the "
                        "authors' ImageIDC script: 16)")
    parser.add_argument("--phases", default=",".join(PHASES), help="which phases to run, in order (default: all)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.evlf_steps, args.evlf_batch)))
        return 0
    work = Path(args.work)
    env = {**os.environ, **prepare(work, args.train_per_class, args.test_per_class)}
    rows = []
    for phase in args.phases.split(","):
        done = subprocess.run([sys.executable, __file__, "--phase", phase, "--evlf-steps", str(args.evlf_steps),
                               "--evlf-batch", str(args.evlf_batch)],
                              env=env, capture_output=True, text=True)
        if done.returncode:
            print(f"phase {phase} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| phase | peak RSS (GiB) | peak anonymous (GiB) | peak file-backed (GiB) | after imports (GiB) "
          "| load (s) | phase (s) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['peak_gib']} | {r['peak_anon_gib']} | {r['peak_file_gib']} | "
              f"{r['after_imports_gib']} | {r['load_s']} | {r['phase_s']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
