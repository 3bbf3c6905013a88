"""Per-class k-means in latent space: D4M's prototypes and MGD3's modes.

Lloyd's algorithm with k-means++ seeding from a caller's generator, run on each class on its
own (the released D4M code feeds a mini-batch k-means across classes and lets the last
class's leftovers leak into the next; this does not). The returned centres are exactly the
means of the points assigned to them by the final assignment.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import BenchError


@dataclass(frozen=True)
class KMeansResult:
    centres: torch.Tensor  # k x D
    assignment: torch.Tensor  # N, values in 0..k-1, every value used
    iterations: int


def _plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    dist = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(dist.sum())
        if total <= 0:  # fewer distinct points than k: take any unused row
            pick = int(torch.randint(n, (1,), generator=generator))
        else:
            pick = int(torch.multinomial(dist / total, 1, generator=generator))
        centres.append(x[pick])
        dist = torch.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    return torch.stack(centres)


def _assign(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.cdist(x, centres)
    best, assign = d.min(1)
    return assign, best


def _means(x: torch.Tensor, assign: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, assign, x)
    counts = torch.bincount(assign, minlength=k)
    return sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype), counts


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, max_iter: int = 100) -> KMeansResult:
    """Cluster the rows of ``x`` (N x D, N >= k) into ``k`` non-empty clusters."""
    x = x.detach().to("cpu", torch.float64).flatten(1)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise BenchError(f"k-means needs 1 <= k <= number of points, got k={k} for {n} points")
    centres = _plus_plus(x, k, generator)
    assign, _ = _assign(x, centres)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        centres, counts = _means(x, assign, k)
        _, best = _assign(x, centres)
        # An empty cluster takes the point farthest from its centre (it then forms its own cluster).
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int(best.argmax())
            centres[empty] = x[far]
            best[far] = 0.0
        new_assign, _ = _assign(x, centres)
        if torch.equal(new_assign, assign) and bool((counts > 0).all()):
            break
        assign = new_assign
    centres, counts = _means(x, assign, k)
    if bool((counts == 0).any()):  # only when rows repeat: give each empty cluster one point
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            donors = torch.nonzero(torch.bincount(assign, minlength=k)[assign] > 1).flatten()
            assign[int(donors[0])] = empty
        centres, counts = _means(x, assign, k)
    return KMeansResult(centres.float(), assign, iterations)


def class_centres(latents: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` k-means centres per class, in class order, shaped like the latents; and their labels."""
    centres, centre_labels = [], []
    for c in range(num_classes):
        members = latents[labels == c]
        if members.shape[0] < k:
            raise BenchError(f"class {c} has {members.shape[0]} real images, fewer than the {k} clusters "
                             "k-means needs (lower the IPC)")
        result = kmeans(members, k, generator)
        centres.append(result.centres.view(k, *latents.shape[1:]))
        centre_labels.append(torch.full((k,), c, dtype=torch.long))
    return torch.cat(centres), torch.cat(centre_labels)
