"""Sample grids for leaderboard pages: for each method of a board, a PNG of the distilled set it
was scored on (one row per class), read back from the artifact cache.

The set shown is the one of the board's rows with the largest IPC up to ``max_ipc`` and the
lowest seed; the grid is a pure function of that set, so regenerating a page rewrites the
same image. A set no longer in the cache (another machine, a cleared cache) is skipped.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import torch
from torchvision.utils import save_image

from core.artifacts import ArtifactCache
from core.rows import ResultRow

MAX_IPC = 10


def file_name(text: str) -> str:
    """A method or data set name made safe as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("._") or "_"


def _chosen(rows: list[ResultRow], max_ipc: int) -> ResultRow | None:
    candidates = [r for r in rows if r.ipc is not None]
    if not candidates:
        return None
    small = [r for r in candidates if r.ipc <= max_ipc] or candidates
    return min(small, key=lambda r: (-r.ipc if r.ipc <= max_ipc else r.ipc, r.seed))


def class_rows(labels: torch.Tensor, per_class: int | None = None) -> list[torch.Tensor]:
    """Per class present, in class order: the indices of its first ``per_class`` images (all if None)."""
    return [torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique().sort().values.tolist()]


def save_class_grid(images: torch.Tensor, labels: torch.Tensor, target: Path | BinaryIO,
                    per_class: int | None = None) -> None:
    """A PNG with one row of up to ``per_class`` images per class (the largest class when None),
    classes in order; short rows are padded with white so that classes stay aligned."""
    rows = class_rows(labels, per_class)
    width = per_class or max(len(idx) for idx in rows)
    padded = []
    for idx in rows:
        block = images[idx]
        if len(idx) < width:
            block = torch.cat([block, torch.ones(width - len(idx), *images.shape[1:])])
        padded.append(block)
    save_image(torch.cat(padded), target, format="png", nrow=width, padding=1, pad_value=1.0)


def write_sample_grids(rows: Iterable[ResultRow], cache: ArtifactCache, out_dir: Path,
                       stem: str, max_ipc: int = MAX_IPC) -> dict[str, tuple[Path, int, int]]:
    """Write one PNG per method; returns method -> (path, ipc, seed) for those written."""
    by_method: dict[str, list[ResultRow]] = {}
    for r in rows:
        if r.ipc is not None:
            by_method.setdefault(r.method, []).append(r)
    written: dict[str, tuple[Path, int, int]] = {}
    for method in sorted(by_method):
        row = _chosen(by_method[method], max_ipc)
        key = row.metrics.get("distill_key") if row is not None else None
        state = cache.load("distilled", key) if key else None
        if state is None:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{stem}__{file_name(method)}.png"
        save_class_grid(state["images"].float(), state["labels"].long(), path, min(row.ipc, max_ipc))
        written[method] = (path, row.ipc, row.seed)
    return written
