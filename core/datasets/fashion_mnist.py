"""The Fashion-MNIST loader: reads the four IDX files from the first place that has them."""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from core.datasets.base import Dataset, Split, register_dataset
from core.datasets.splits import carve_validation
from core.errors import BenchError, DataMissingError

ENV_VAR = "BENCH_FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_ROOT = Path("~/.cache/evlf-bench/data/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
PROMPTS = (
    "t-shirt or top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
HOW_TO_GET = (
    "install them with `sudo apt-get install dataset-fashion-mnist` (or `make setup` as root), "
    f"or pass fashion-mnist[root=DIR] / set {ENV_VAR} to a directory holding "
    + ", ".join(f"{f}.gz" for f in FILES.values())
    + " (gzipped or not)"
)

_IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Parse one IDX file of unsigned bytes (gzipped or not) into a uint8 tensor.

    Any mismatch between the header and the payload is reported as a BenchError naming the
    file, because a half-downloaded file otherwise surfaces as a baffling reshape error.
    """
    try:
        with open(path, "rb") as fh:
            # Sniff the gzip magic instead of trusting the extension.
            gzipped = fh.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise BenchError(f"cannot read IDX file {path}: {exc}; the file is truncated or corrupt, replace it") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or data[3] != ndim:
        raise BenchError(
            f"{path} is not a {ndim}-d unsigned-byte IDX file (bad magic number); the file is corrupt, replace it"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise BenchError(
            f"{path} holds {len(data)} bytes but its header promises {expected} (shape {dims}); "
            "the file is truncated or corrupt, replace it"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def _find_file(directory: Path, stem: str) -> Path | None:
    # The uncompressed file wins when both exist (torchvision keeps both): no inflate cost.
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete(directory: Path) -> bool:
    return all(_find_file(directory, stem) is not None for stem in FILES.values())


def _candidates(root: str | None) -> list[Path]:
    """Directories to try, in order: the root option, else the env var, else the Debian
    package and the download cache. A root given either way is the only place looked at,
    so a typo in it is reported instead of silently reading some other copy."""
    chosen = root if root is not None else os.environ.get(ENV_VAR)
    if chosen:
        base = Path(chosen).expanduser()
        return [base, base / "FashionMNIST" / "raw"]
    return [DEBIAN_DIR, DOWNLOAD_ROOT.expanduser() / "FashionMNIST" / "raw"]


def _download(root: str | None) -> Path:
    target = Path(root).expanduser() if root is not None else DOWNLOAD_ROOT.expanduser()
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(target), download=True)
    except Exception as exc:  # any failure here (offline, proxy, disk) means the same to the user
        # torchvision's messages span lines; the error contract is one line.
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataMissingError(
            f"downloading Fashion-MNIST into {target} failed, are you offline? ({reason}); {HOW_TO_GET}"
        ) from None
    return target / "FashionMNIST" / "raw"


def _locate(root: str | None, download: bool) -> Path:
    candidates = _candidates(root)
    for directory in candidates:
        if _complete(directory):
            return directory
    if download:
        return _download(root)
    looked = ", ".join(str(d) for d in candidates)
    raise DataMissingError(f"Fashion-MNIST files not found (looked in {looked}); {HOW_TO_GET}")


def _read_split(directory: Path, which: str) -> Split:
    # Labels first: the small file fails fast when a copy is broken.
    labels = read_idx(_find_file(directory, FILES[f"{which}_labels"]), ndim=1)
    images = read_idx(_find_file(directory, FILES[f"{which}_images"]), ndim=3)
    if images.shape[0] != labels.shape[0] or tuple(images.shape[1:]) != (28, 28):
        raise BenchError(
            f"Fashion-MNIST {which} files in {directory} disagree: images {tuple(images.shape)}, "
            f"labels {tuple(labels.shape)}; replace them"
        )
    if int(labels.max()) >= len(CLASS_NAMES):
        raise BenchError(f"Fashion-MNIST {which} labels in {directory} go above 9; replace the file")
    return Split(images.unsqueeze(1), labels.long())


@register_dataset("fashion-mnist")
def load_fashion_mnist(root: str | None = None, download: bool = False) -> Dataset:
    """Fashion-MNIST: 55,000 train / 5,000 validation / 10,000 test images of 28x28."""
    directory = _locate(root, download)
    train, val = carve_validation("fashion-mnist", _read_split(directory, "train"))
    return Dataset(
        name="fashion-mnist",
        class_names=CLASS_NAMES,
        prompts=PROMPTS,
        channels=1,
        image_size=28,
        mean=(0.2861,),
        std=(0.3530,),
        train=train,
        val=val,
        test=_read_split(directory, "test"),
        source=str(directory),
    )
