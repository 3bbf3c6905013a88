"""Batched, on-device augmentation for the student loop: DSA, the IDC recipe and the soft-label recipe.

Every op works on a whole batch at once with per-sample random parameters drawn from one
seeded generator, so a (set, protocol, seed) triple trains identically every time. Geometric
ops share one affine resampling (`affine_grid` + `grid_sample`). A recipe receives the
standardised batch the loop trains on and the data set's `Standardisation`: DSA acts on
standardised images (as the DSA code does); the IDC recipe's colour jitter and PCA lighting act
on [0, 1] images, before standardisation, as the IDC and Minimax data loaders order them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from core.datasets.base import normalise


@dataclass(frozen=True)
class Standardisation:
    """A data set's per-channel mean and std: between [0, 1] pixels and what students read."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(view)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(view)
        return x * std + mean

    def from_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.mean, self.std)


Augment = Callable[[torch.Tensor, torch.Generator, Standardisation], torch.Tensor]


def _rand(n: int, g: torch.Generator, device: torch.device, low: float = 0.0, high: float = 1.0,
          shared: bool = False) -> torch.Tensor:
    """``n`` uniforms in [low, high); ``shared``: one, repeated ``n`` times (the Siamese draw)."""
    return (torch.rand(1 if shared else n, generator=g) * (high - low) + low).expand(n).to(device)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _identity_theta(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).unsqueeze(0).repeat(n, 1, 1)


# --- DSA ops (parameters as in the DSA paper's evaluation settings) -------------------------
# Each draws its parameters per image, or with ``shared`` once for the whole batch (as the DSA
# code's Siamese mode does for the matching methods): the same number of draws whatever the
# batch size, so one generator state gives two batches the same transformation.

def dsa_color(x: torch.Tensor, g: torch.Generator, shared: bool = False) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + (_rand(n, g, dev, shared=shared) - 0.5).view(-1, 1, 1, 1) * 1.0  # brightness 1.0
    if x.shape[1] > 1:  # saturation 2.0 only means something with colour channels
        mean = x.mean(1, keepdim=True)
        x = (x - mean) * (_rand(n, g, dev, shared=shared) * 2.0).view(-1, 1, 1, 1) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, g, dev, shared=shared) + 0.5).view(-1, 1, 1, 1) + mean  # contrast 0.5


def dsa_crop(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125, shared: bool = False) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    theta = _identity_theta(n, dev)
    theta[:, 0, 2] = (_rand(n, g, dev, shared=shared) - 0.5) * 4 * ratio  # shift up to ratio of the size each way
    theta[:, 1, 2] = (_rand(n, g, dev, shared=shared) - 0.5) * 4 * ratio
    return _affine(x, theta)


def dsa_cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5, shared: bool = False) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = (_rand(n, g, torch.device("cpu"), shared=shared) * h).long().to(x.device).view(-1, 1, 1)
    cx = (_rand(n, g, torch.device("cpu"), shared=shared) * w).long().to(x.device).view(-1, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, -1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, -1)
    hole = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def flip(x: torch.Tensor, g: torch.Generator, p: float = 0.5, shared: bool = False) -> torch.Tensor:
    mask = (_rand(x.shape[0], g, torch.device("cpu"), shared=shared) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(3), x)


def dsa_scale(x: torch.Tensor, g: torch.Generator, ratio: float = 1.2, shared: bool = False) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    theta = _identity_theta(n, dev)
    theta[:, 0, 0] = _rand(n, g, dev, 1 / ratio, ratio, shared)
    theta[:, 1, 1] = _rand(n, g, dev, 1 / ratio, ratio, shared)
    return _affine(x, theta)


def dsa_rotate(x: torch.Tensor, g: torch.Generator, degrees: float = 15.0, shared: bool = False) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    angle = _rand(n, g, dev, -degrees, degrees, shared) * math.pi / 180
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
    return _affine(x, theta)


DSA_OPS: tuple[Augment, ...] = (dsa_color, dsa_crop, dsa_cutout, flip, dsa_scale, dsa_rotate)
NO_FLIP = tuple(op for op in DSA_OPS if op is not flip)  # for digits, where a mirrored 2 is no 2


def dsa(x: torch.Tensor, g: torch.Generator, stats: Standardisation | None = None) -> torch.Tensor:
    """One DSA op per batch, drawn uniformly, with per-sample parameters, on standardised images."""
    op = DSA_OPS[int(torch.randint(len(DSA_OPS), (1,), generator=g))]
    return op(x, g)


def dsa_siamese(batches: Sequence[torch.Tensor], g: torch.Generator,
                ops: Sequence[Callable[..., torch.Tensor]] = DSA_OPS) -> list[torch.Tensor]:
    """DSA as the matching methods (DSA, DM) apply it to a real batch and its synthetic
    counterpart: one op of ``ops`` drawn uniformly and one draw of its parameters, the same for
    every image of every batch (the DSA code's Siamese mode), differentiable in the images."""
    op = ops[int(torch.randint(len(ops), (1,), generator=g))]
    state = g.get_state()
    out = []
    for x in batches:
        g.set_state(state)
        out.append(op(x, g, shared=True))
    return out


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


GREY_WEIGHTS = (0.299, 0.587, 0.114)  # the luma weights IDC's `Grayscale` uses


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel grey level of [0, 1] images (one channel: the image itself), keeping the channels."""
    if x.shape[1] != 3:
        return x
    w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x)


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def _contrast(x: torch.Tensor) -> torch.Tensor:
    return _grey(x).mean((1, 2, 3), keepdim=True).expand_as(x)


JITTER_TARGETS = (_brightness, _contrast, _grey)  # IDC's Brightness, Contrast and Saturation


def color_jitter(x: torch.Tensor, g: torch.Generator, strength: float = 0.4) -> torch.Tensor:
    """IDC's `ColorJitter` on [0, 1] images: brightness, contrast and saturation, each a blend
    ``x + a * (target - x)`` with ``a`` uniform in [-strength, strength] per image, towards black,
    the image's mean grey level and its grey image. IDC shuffles their order per image; the three
    blends are linear and each keeps what the others blend towards (scaling commutes with both
    targets, a saturation blend keeps the grey image), so every order gives the same image and
    one fixed order is used. On one channel, saturation changes nothing."""
    alpha = _rand(x.shape[0] * len(JITTER_TARGETS), g, x.device, -strength, strength).view(x.shape[0], -1)
    for k, target in enumerate(JITTER_TARGETS):
        a = alpha[:, k].view(-1, 1, 1, 1)
        x = x + a * (target(x) - x)
    return x


# ImageNet RGB principal components (AlexNet's "PCA lighting"); only for 3-channel data.
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def pca_lighting(x: torch.Tensor, g: torch.Generator, std: float = 0.1) -> torch.Tensor:
    """Add ``EIGVEC @ (alpha * EIGVAL)`` to every pixel of an image, alpha ~ N(0, std) per image
    and component (on [0, 1] images, as IDC's `Lighting`)."""
    if x.shape[1] != 3:
        return x
    alpha = (torch.randn(x.shape[0], 3, generator=g) * std).to(x.device)
    shift = (alpha * EIGVAL.to(x.device)) @ EIGVEC.to(x.device).T
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


def idc_augment(x: torch.Tensor, g: torch.Generator, stats: Standardisation) -> torch.Tensor:
    """IDC's training transform: random resized crop (0.5 to 1), flip, then colour jitter 0.4 and
    PCA lighting 0.1 on [0, 1] images, standardised again at the end."""
    x = flip(random_resized_crop(x, g, (0.5, 1.0)), g)
    x = pca_lighting(color_jitter(stats.to_pixels(x), g, 0.4), g, 0.1)
    return stats.from_pixels(x)


def softlabel_augment(x: torch.Tensor, g: torch.Generator, stats: Standardisation | None = None) -> torch.Tensor:
    return flip(random_resized_crop(x, g, (0.08, 1.0)), g)


AUGMENTATIONS: dict[str, Augment] = {"dsa": dsa, "idc": idc_augment, "softlabel": softlabel_augment}
