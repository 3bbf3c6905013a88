"""The CIFAR-10 loader, reading torchvision's ``cifar-10-batches-py`` layout."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from core.datasets.base import Dataset, Split, register_dataset
from core.datasets.splits import carve_validation
from core.errors import DataMissingError

ENV_VAR = "BENCH_CIFAR10_ROOT"
DEFAULT_ROOT = Path("~/.cache/evlf-bench/data/cifar10")
BATCH_FOLDER = "cifar-10-batches-py"
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
PROMPTS = CLASS_NAMES


def _root(root: str | None) -> Path:
    path = Path(root or os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()
    # Accept the batch folder itself as well as the directory above it.
    return path.parent if path.name == BATCH_FOLDER else path


def _read(root: Path, train: bool, download: bool) -> Split:
    from torchvision.datasets import CIFAR10

    try:
        data = CIFAR10(str(root), train=train, download=download)
    except Exception as exc:  # torchvision raises RuntimeError when missing, URLError etc. offline
        if download:
            # torchvision's messages span lines; the error contract is one line.
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            what = f"downloading CIFAR-10 into {root / BATCH_FOLDER} failed, are you offline? ({reason})"
            fetch = ""
        else:
            # torchvision's own message suggests download=True, which is not our option name.
            what = f"CIFAR-10 not found or corrupt in {root / BATCH_FOLDER}"
            fetch = ", or add download=1 to fetch it"
        raise DataMissingError(
            f"{what}; pass cifar10[root=DIR] or set {ENV_VAR} "
            f"to a directory holding {BATCH_FOLDER}/ (from cifar-10-python.tar.gz){fetch}"
        ) from None
    images = torch.from_numpy(np.ascontiguousarray(data.data.transpose(0, 3, 1, 2)))
    return Split(images, torch.tensor(data.targets, dtype=torch.int64))


@register_dataset("cifar10")
def load_cifar10(root: str | None = None, download: bool = False) -> Dataset:
    """CIFAR-10: 45,000 train / 5,000 validation / 10,000 test images of 32x32x3."""
    path = _root(root)
    train, val = carve_validation("cifar10", _read(path, True, download))
    return Dataset(
        name="cifar10",
        class_names=CLASS_NAMES,
        prompts=PROMPTS,
        channels=3,
        image_size=32,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        train=train,
        val=val,
        # The first call already downloaded everything when download was asked for.
        test=_read(path, False, False),
        source=str(path / BATCH_FOLDER),
    )
