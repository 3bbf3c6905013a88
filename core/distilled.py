"""The distilled-set record every method returns, and the contract a set must meet before a
student trains on it (shape, labels, value range, every class present)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from core.datasets.base import Dataset
from core.errors import BenchError


@dataclass
class DistilledSet:
    """A distilled data set: images in [0, 1] (float32, N x C x H x W) and hard labels.

    ``nbytes`` counts what a user would have to store: one byte per pixel value and the
    labels as int64. No protocol trains on soft labels a set brings along, so a set has none.
    """

    images: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError("DistilledSet needs N x C x H x W images and N labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return self.images.numel() + self.labels.numel() * 8

    def to_state(self) -> dict[str, Any]:
        return {"images": self.images.contiguous(), "labels": self.labels.contiguous(), "meta": self.meta}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DistilledSet:
        return cls(state["images"], state["labels"], dict(state.get("meta", {})))


def check_distilled(images: torch.Tensor, labels: torch.Tensor, data: Dataset) -> None:
    """Refuse a set the student cannot be trained on, with a message naming the problem."""
    if images.dim() != 4 or images.shape[1:] != (data.channels, data.image_size, data.image_size):
        raise BenchError(f"distilled images have shape {tuple(images.shape[1:])}, "
                         f"{data.name} needs {(data.channels, data.image_size, data.image_size)}")
    if labels.shape != (images.shape[0],) or labels.dtype != torch.long:
        raise BenchError("distilled labels must be one int64 label per image")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= data.num_classes):
        raise BenchError(f"distilled labels fall outside 0..{data.num_classes - 1}")
    if not torch.isfinite(images).all():
        raise BenchError("distilled images hold NaN or infinite values")
    if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
        raise BenchError(f"distilled image values must lie in [0, 1] (got {float(images.min()):.3g} to "
                         f"{float(images.max()):.3g})")
    empty = sorted(set(range(data.num_classes)) - set(labels.unique().tolist()))
    if empty:
        raise BenchError(f"distilled set has no images for classes {empty[:5]}{'...' if len(empty) > 5 else ''}")
