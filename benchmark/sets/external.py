"""Reading a distilled set made elsewhere: a `.safetensors` file (``images`` N x C x H x W in
[0, 1], ``labels`` int64; what `bench export` writes), a `.pt` file of the same dict when the user
trusts it (`--trust-pickle`: PyTorch's restricted loader; a pickle is never read otherwise), or an
ImageFolder tree of PNG/JPEG files (one folder per class, named by class index or class name)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.datasets.base import Dataset
from core.distilled import DistilledSet, check_distilled
from core.errors import BenchError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _read_tensors(path: Path, trust_pickle: bool) -> dict:
    """The file's named tensors: safetensors always; a pickled `.pt` only when trusted."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if not trust_pickle:
            raise BenchError(f"{path} is a pickle file, which can run code when read; save the set as safetensors "
                             "(what 'bench export' writes), or pass --trust-pickle to read it with PyTorch's "
                             "restricted loader")
        return torch.load(path, map_location="cpu", weights_only=True)
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, the answer is one line
        first = (str(exc).splitlines() or ["empty or truncated file"])[0]
        raise BenchError(f"{path}: not a readable tensor file ({type(exc).__name__}: {first})") from None


def _from_file(path: Path, trust_pickle: bool) -> DistilledSet:
    state = _read_tensors(path, trust_pickle)
    if not isinstance(state, dict) or "images" not in state or "labels" not in state:
        raise BenchError(f"{path}: expected a dict with 'images' and 'labels' tensors")
    images, labels = state["images"], state["labels"]
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise BenchError(f"{path}: 'images' and 'labels' must be tensors")
    if images.dim() != 4:
        raise BenchError(f"{path}: images must be N x C x H x W, got shape {tuple(images.shape)}")
    if labels.dtype.is_floating_point:
        raise BenchError(f"{path}: labels must be integer class indices")
    if labels.numel() != images.shape[0]:
        raise BenchError(f"{path}: {images.shape[0]} images but {labels.numel()} labels; give one label per image")
    if state.get("soft_labels") is not None:
        raise BenchError(f"{path}: holds 'soft_labels', which no protocol of this harness trains on; save hard "
                         "'labels' only (the softlabel protocol relabels every set with its own teacher)")
    return DistilledSet(images.float(), labels.long().flatten())


def _class_index(folder: str, data: Dataset) -> int:
    if folder.isdigit() and int(folder) < data.num_classes:
        return int(folder)
    lowered = [c.lower() for c in data.class_names]
    if folder.lower() in lowered:
        return lowered.index(folder.lower())
    raise BenchError(f"image folder '{folder}' is neither a class index below {data.num_classes} "
                     f"nor a class name of {data.name}")


def _from_folder(root: Path, data: Dataset) -> DistilledSet:
    images, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _class_index(folder.name, data)
        for file in sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            mode = "L" if data.channels == 1 else "RGB"
            try:
                with Image.open(file) as img:
                    arr = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise BenchError(f"{file}: cannot read the image ({exc}); remove or replace the file") from None
            if arr.shape[:2] != (data.image_size, data.image_size):
                raise BenchError(f"{file}: {arr.shape[1]}x{arr.shape[0]} pixels, {data.name} needs "
                                 f"{data.image_size}x{data.image_size}")
            images.append(torch.from_numpy(arr).view(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1))
            labels.append(label)
    if not images:
        raise BenchError(f"{root}: no class folders with PNG or JPEG images")
    return DistilledSet(torch.stack(images), torch.tensor(labels, dtype=torch.long))


def load_external(path: str | Path, data: Dataset, trust_pickle: bool = False) -> tuple[DistilledSet, int]:
    """Read and check a set; returns it and its IPC (images per class, equal for all classes)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BenchError(f"{path} does not exist")
    if not (path.is_dir() or path.is_file()):  # a FIFO or a device would block the read, or never end
        raise BenchError(f"{path} is neither a regular file nor a folder; give a .safetensors file or a folder of "
                         "class folders")
    dset = _from_folder(path, data) if path.is_dir() else _from_file(path, trust_pickle)
    try:
        check_distilled(dset.images, dset.labels, data)
    except BenchError as exc:
        raise BenchError(f"{path}: {exc}") from None
    counts = torch.bincount(dset.labels, minlength=data.num_classes).tolist()
    if len(set(counts)) != 1:
        raise BenchError(f"{path}: classes hold different numbers of images ({counts}); IPC must be equal")
    return dset, counts[0]


def content_hash(dset: DistilledSet) -> str:
    h = hashlib.sha256()
    for t in (dset.images.float().contiguous(), dset.labels.long().contiguous()):
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]
