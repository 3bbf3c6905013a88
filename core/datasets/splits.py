"""Fixed, stratified hold-out splits: the validation split carved from the training data,
and a test split for data sets that ship without one.

The choice depends only on the data set name and its labels, never on a run seed or the
clock, so every run and every process sees the same splits.
"""
from __future__ import annotations

import hashlib

import torch

from core.datasets.base import Split

VAL_FRACTION = 0.1
VAL_CAP = 5_000
TEST_FRACTION = 0.2


def stable_seed(name: str, purpose: str) -> int:
    """A seed derived from ``name`` and ``purpose`` that is the same in every process.

    Python's ``hash()`` is salted per process (PYTHONHASHSEED), hence sha256.
    """
    digest = hashlib.sha256(f"evlf-bench/{name}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _per_class_quota(counts: list[int], total: int) -> list[int]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder).

    The quotas sum to ``total`` exactly, which a per-class round() would not guarantee.
    """
    n = sum(counts)
    exact = [c * total / n for c in counts]
    quota = [int(e) for e in exact]
    # Ties go to the lower class index so the result never depends on sort stability.
    order = sorted(range(len(counts)), key=lambda k: (-(exact[k] - quota[k]), k))
    for k in order[: total - sum(quota)]:
        quota[k] += 1
    # Never hold out a whole class: training would then not see it at all.
    return [min(q, max(c - 1, 0)) for q, c in zip(quota, counts)]


def stratified_holdout(
    labels: torch.Tensor, fraction: float, cap: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(keep, held)`` with ``fraction`` of the samples (at most ``cap``) held out,
    in proportion to the class sizes. Both index tensors are sorted ascending."""
    n = int(labels.shape[0])
    total = int(fraction * n + 0.5)
    if cap is not None:
        total = min(total, cap)
    num_classes = int(labels.max().item()) + 1 if n else 0
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    quota = _per_class_quota(counts, total) if n else []
    gen = torch.Generator().manual_seed(seed)
    held = []
    for label, q in enumerate(quota):
        members = torch.nonzero(labels == label, as_tuple=False).flatten()
        # Draw a permutation for every class, even with q == 0, so one class's quota
        # never shifts the random stream seen by the classes after it.
        perm = torch.randperm(len(members), generator=gen)
        held.append(members[perm[:q]])
    held_idx = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.int64)
    mask = torch.ones(n, dtype=torch.bool)
    mask[held_idx] = False
    keep_idx = torch.nonzero(mask, as_tuple=False).flatten()
    return keep_idx, held_idx


def take(split: Split, idx: torch.Tensor) -> Split:
    """The samples of ``split`` at ``idx``, as a new split with contiguous storage."""
    return Split(split.images[idx].contiguous(), split.labels[idx].contiguous())


def validation_indices(name: str, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` indices: 10% of the original training data, at most 5,000 images, held
    out per class for model selection. Labels alone decide, so a loader can split before it
    decodes a single image."""
    return stratified_holdout(labels, VAL_FRACTION, VAL_CAP, stable_seed(name, "val"))


def carve_validation(name: str, train: Split) -> tuple[Split, Split]:
    """``(train, val)`` splits at :func:`validation_indices`."""
    keep, held = validation_indices(name, train.labels)
    return take(train, keep), take(train, held)


def carve_test(name: str, data: Split) -> tuple[Split, Split]:
    """``(rest, test)``: a fixed 20% stratified test split, for data sets without one.

    Carve this first; the validation split then comes out of ``rest``.
    """
    keep, held = stratified_holdout(data.labels, TEST_FRACTION, None, stable_seed(name, "test"))
    return take(data, keep), take(data, held)
