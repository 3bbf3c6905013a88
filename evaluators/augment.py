"""Batched, on-device augmentation for the student loop: DSA, the IDC recipe and the soft-label recipe.

Every op works on a whole normalised batch at once with per-sample random parameters drawn
from one seeded generator, so a (set, protocol, seed) triple trains identically every time.
Geometric ops share one affine resampling (`affine_grid` + `grid_sample`).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _rand(n: int, g: torch.Generator, device: torch.device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return (torch.rand(n, generator=g) * (high - low) + low).to(device)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _identity_theta(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).unsqueeze(0).repeat(n, 1, 1)


# --- DSA ops (parameters as in the DSA paper's evaluation settings) -------------------------

def dsa_color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + (_rand(n, g, dev) - 0.5).view(-1, 1, 1, 1) * 1.0  # brightness 1.0
    if x.shape[1] > 1:  # saturation 2.0 only means something with colour channels
        mean = x.mean(1, keepdim=True)
        x = (x - mean) * (_rand(n, g, dev) * 2.0).view(-1, 1, 1, 1) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, g, dev) + 0.5).view(-1, 1, 1, 1) + mean  # contrast 0.5


def dsa_crop(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    theta = _identity_theta(n, dev)
    theta[:, 0, 2] = (_rand(n, g, dev) - 0.5) * 4 * ratio  # shift up to ratio of the size each way
    theta[:, 1, 2] = (_rand(n, g, dev) - 0.5) * 4 * ratio
    return _affine(x, theta)


def dsa_cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = (torch.rand(n, generator=g) * h).long().to(x.device).view(-1, 1, 1)
    cx = (torch.rand(n, generator=g) * w).long().to(x.device).view(-1, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, -1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, -1)
    hole = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def flip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=g) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(3), x)


def dsa_scale(x: torch.Tensor, g: torch.Generator, ratio: float = 1.2) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    theta = _identity_theta(n, dev)
    theta[:, 0, 0] = _rand(n, g, dev, 1 / ratio, ratio)
    theta[:, 1, 1] = _rand(n, g, dev, 1 / ratio, ratio)
    return _affine(x, theta)


def dsa_rotate(x: torch.Tensor, g: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    angle = _rand(n, g, dev, -degrees, degrees) * math.pi / 180
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
    return _affine(x, theta)


DSA_OPS: tuple[Augment, ...] = (dsa_color, dsa_crop, dsa_cutout, flip, dsa_scale, dsa_rotate)


def dsa(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One DSA op per batch, drawn uniformly, with per-sample parameters."""
    op = DSA_OPS[int(torch.randint(len(DSA_OPS), (1,), generator=g))]
    return op(x, g)


# --- crops and colour for the IDC and soft-label recipes ------------------------------------

def random_resized_crop(x: torch.Tensor, g: torch.Generator, scale: tuple[float, float]) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` (aspect 3/4 to 4/3) and resize it back."""
    n, dev = x.shape[0], x.device
    area = _rand(n, g, dev, *scale)
    log_ratio = _rand(n, g, dev, math.log(3 / 4), math.log(4 / 3))
    ratio = log_ratio.exp()
    sw = (area * ratio).sqrt().clamp(max=1.0)
    sh = (area / ratio).sqrt().clamp(max=1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = sw, sh
    theta[:, 0, 2] = (_rand(n, g, dev) * 2 - 1) * (1 - sw)
    theta[:, 1, 2] = (_rand(n, g, dev) * 2 - 1) * (1 - sh)
    return _affine(x, theta)


def color_jitter(x: torch.Tensor, g: torch.Generator, strength: float = 0.4) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    lo, hi = 1 - strength, 1 + strength
    x = x * _rand(n, g, dev, lo, hi).view(-1, 1, 1, 1)  # brightness
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * _rand(n, g, dev, lo, hi).view(-1, 1, 1, 1) + mean  # contrast
    if x.shape[1] > 1:
        grey = x.mean(1, keepdim=True)
        x = (x - grey) * _rand(n, g, dev, lo, hi).view(-1, 1, 1, 1) + grey  # saturation
    return x


# ImageNet RGB principal components (AlexNet's "PCA lighting"); only for 3-channel data.
_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def pca_lighting(x: torch.Tensor, g: torch.Generator, std: float = 0.1) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    alpha = (torch.randn(x.shape[0], 3, generator=g) * std).to(x.device)
    shift = (alpha * _EIGVAL.to(x.device)) @ _EIGVEC.to(x.device).T
    return x + shift.view(-1, 3, 1, 1)


def cutmix(x: torch.Tensor, g: torch.Generator, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix with one box per batch: returns the mixed batch, the partner permutation and the
    area fraction ``lam`` kept from the original images."""
    n, _, h, w = x.shape
    lam = _beta(beta, g)
    perm = torch.randperm(n, generator=g).to(x.device)
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, (1,), generator=g)), int(torch.randint(w, (1,), generator=g))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, perm, lam


def _beta(beta: float, g: torch.Generator) -> float:
    # torch.distributions cannot take a Generator; Beta(1, 1) is uniform (the protocols' value),
    # other shapes use Johnk's method on seeded uniforms.
    if beta == 1.0:
        return float(torch.rand(1, generator=g))
    while True:
        u, v = torch.rand(2, generator=g).tolist()
        a, b = u ** (1 / beta), v ** (1 / beta)
        if a + b <= 1 and a + b > 0:
            return a / (a + b)


def idc_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x = random_resized_crop(x, g, (0.5, 1.0))
    x = flip(x, g)
    x = color_jitter(x, g, 0.4)
    return pca_lighting(x, g, 0.1)


def softlabel_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return flip(random_resized_crop(x, g, (0.08, 1.0)), g)


AUGMENTATIONS: dict[str, Augment] = {"dsa": dsa, "idc": idc_augment, "softlabel": softlabel_augment}
