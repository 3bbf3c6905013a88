"""Image-quality metrics of a distilled set, measured in a teacher's feature space (no student).

- ``recognizability``: the teacher's top-1 accuracy (%) on the distilled images with their labels.
- ``fd_teacher``: Frechet distance between Gaussians fitted to the teacher's penultimate features
  of the distilled images and of the real test images, ``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^1/2)``.
  Inception weights cannot be had offline and a domain teacher judges small grayscale data
  better; with fewer images than feature dimensions the estimate is biased upwards, so only
  compare it at equal IPC.
- ``diversity``: mean pairwise cosine distance (1 - cos) between teacher features of images of
  the same class, averaged over classes; None at IPC 1.
- ``coverage``: the fraction of real test images whose nearest distilled image (cosine
  similarity of teacher features) has the test image's class.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import linalg
from torch.nn import functional as F

from core.artifacts import ArtifactCache
from core.datasets.base import Dataset, normalise
from core.teachers import Teacher
from evaluators.protocols import Budget
from evaluators.teacher import quality_teacher


@dataclass(frozen=True)
class Quality:
    recognizability: float
    fd_teacher: float
    diversity: float | None
    coverage: float
    quality_teacher_acc: float

    def to_dict(self) -> dict:
        return asdict(self)


def _covariance(x: np.ndarray) -> np.ndarray:
    if x.shape[0] < 2:
        return np.zeros((x.shape[1], x.shape[1]))
    return np.atleast_2d(np.cov(x, rowvar=False))


# Above this many feature dimensions the d x d covariances are never formed (see `frechet_distance`).
DENSE_FD_MAX_DIM = 1024


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets (rows are samples).

    Up to ``DENSE_FD_MAX_DIM`` dimensions it takes the square root of ``C1 C2`` (scipy); above,
    where a d x d matrix would not fit or its square root would take minutes (a ConvNet at
    224 px has 25,088 features), it uses the same quantity in a form that never builds one:
    with ``C1 = A A^T`` and ``C2 = B B^T`` (A, B the centred features over sqrt(n - 1)),
    ``tr (C1 C2)^1/2`` is the sum of the singular values of ``A^T B``.
    """
    if a.shape[1] > DENSE_FD_MAX_DIM:
        return _frechet_distance_low_rank(a, b)
    a64, b64 = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a64.mean(0), b64.mean(0)
    c1, c2 = _covariance(a64), _covariance(b64)
    root = linalg.sqrtm(c1 @ c2)
    if np.iscomplexobj(root):
        root = root.real  # numerical noise from near-singular covariances
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, centred rows over sqrt(n - 1)); no spread for a single row."""
    x = x.double()
    mean = x.mean(0)
    if x.shape[0] < 2:
        return mean, torch.zeros_like(x)
    return mean, (x - mean) / math.sqrt(x.shape[0] - 1)


def _frechet_distance_low_rank(a: torch.Tensor, b: torch.Tensor) -> float:
    mu1, fa = _centred(a)
    mu2, fb = _centred(b)
    cross = torch.linalg.svdvals(fa @ fb.T).sum()  # tr (C1 C2)^1/2, as C1 C2 shares A^T B B^T A's eigenvalues
    return float((mu1 - mu2).pow(2).sum() + fa.pow(2).sum() + fb.pow(2).sum() - 2 * cross)


def within_class_diversity(features: torch.Tensor, labels: torch.Tensor) -> float | None:
    scores = []
    for c in labels.unique():
        f = F.normalize(features[labels == c], dim=1)
        n = f.shape[0]
        if n < 2:
            continue
        cos = f @ f.T
        scores.append(float((1 - cos)[~torch.eye(n, dtype=torch.bool)].mean()))
    return float(np.mean(scores)) if scores else None


def coverage(distilled: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor) -> float:
    sims = F.normalize(real, dim=1) @ F.normalize(distilled, dim=1).T
    nearest = labels[sims.argmax(1)]
    return 100.0 * float((nearest == real_labels).float().mean())


def measure(images: torch.Tensor, labels: torch.Tensor, data: Dataset, teacher: Teacher,
            device: torch.device) -> Quality:
    """All four metrics for one distilled set (images in [0, 1])."""
    model = teacher.model
    images = images.to(device, torch.float32)
    feats = teacher.features(images).cpu()
    x = normalise(images, data.mean, data.std)
    with torch.inference_mode():
        preds = torch.cat([model(chunk).argmax(1) for chunk in x.split(256)]).cpu()
    test_feats = teacher.features(data.test.float_images().to(device)).cpu()
    return Quality(
        recognizability=100.0 * float((preds == labels.cpu()).float().mean()),
        fd_teacher=frechet_distance(feats, test_feats),
        diversity=within_class_diversity(feats, labels.cpu()),
        coverage=coverage(feats, labels.cpu(), test_feats, data.test.labels),
        quality_teacher_acc=teacher.test_acc,
    )


def score_quality(images: torch.Tensor, labels: torch.Tensor, data: Dataset, budget: Budget, cache: ArtifactCache,
                  device: torch.device) -> Quality:
    """The four metrics of a distilled set, judged by the data set's quality teacher for ``budget``."""
    return measure(images, labels, data, quality_teacher(data, budget, cache, device), device)
