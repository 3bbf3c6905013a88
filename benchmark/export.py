"""Exporting a distilled set: a `.pt` file (images N x C x H x W in [0, 1], long labels) and a
PNG grid with one row per class."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.errors import BenchError
from core.runs import DistillJob
from benchmark.trial import distill_job
from methods import resolve_method


def class_grid_order(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, int]:
    """Indices that lay the set out one class per row, and the row length."""
    per_class = [torch.nonzero(labels == c, as_tuple=False).flatten() for c in range(num_classes)]
    return torch.cat(per_class), max(1, max(len(p) for p in per_class))


def export_set(method: str, dataset: str, ipc: int, seed: int, cache: ArtifactCache, out: Path) -> list[Path]:
    """Distil (or load from the cache) and write ``.pt`` and ``.png`` files under ``out``."""
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
    pt = out / f"{stem}.pt"
    torch.save({"images": dset.images.float().clamp(0, 1), "labels": dset.labels.long(),
                "meta": dset.meta}, pt)
    order, nrow = class_grid_order(dset.labels, data.num_classes)
    png = out / f"{stem}.png"
    save_image(dset.images[order], png, nrow=nrow, padding=1)
    return [pt, png]
