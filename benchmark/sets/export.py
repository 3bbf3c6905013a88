"""Exporting a distilled set: a `.safetensors` file (``images`` N x C x H x W in [0, 1], int64
``labels``, the set's meta as JSON metadata; readable without unpickling) and a PNG grid with one
row per class."""
from __future__ import annotations

from pathlib import Path

import json

import torch
from safetensors.torch import save

from benchmark.report.sample_grids import save_class_grid
from benchmark.grid.trial import distill_job
from core.artifacts import ArtifactCache, json_default
from core.datasets import load_dataset
from core.errors import BenchError
from core.files import write_atomic
from core.runs import DistillJob
from methods import resolve_method


def export_set(method: str, dataset: str, ipc: int, seed: int, cache: ArtifactCache, out: Path) -> list[Path]:
    """Distil (or load from the cache) and write ``.safetensors`` and ``.png`` files under ``out``."""
    spec = resolve_method(method)
    if spec.distiller.reference:
        raise BenchError(f"'{method}' is the whole training split; there is no distilled set to export")
    data = load_dataset(dataset)
    spec.distiller.validate(data, ipc)
    job = DistillJob(spec.label, dataset, ipc, seed, runs=())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dset, _, _ = distill_job(job, cache, device, lambda metrics: None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot write to {out}: {exc.strerror or exc}") from None
    stem = f"{spec.label}_{dataset}_ipc{ipc}_seed{seed}".replace("/", "-").replace(":", "-")
    tensors = out / f"{stem}.safetensors"
    body = save({"images": dset.images.float().clamp(0, 1).contiguous(), "labels": dset.labels.long().contiguous()},
                metadata={META_KEY: json.dumps(dset.meta, default=json_default)})
    # safetensors' own writer makes the file 0600; an export is for sharing, readable as the PNG beside it
    write_atomic(tensors, lambda f: f.write(body))
    png = out / f"{stem}.png"
    save_class_grid(dset.images, dset.labels, png)
    return [tensors, png]


META_KEY = "evlf-bench/meta"  # the exported set's meta (method, seed, backbone, ...) as JSON
