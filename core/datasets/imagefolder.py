"""Loaders for ImageFolder trees (``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``): a generic
one, and ImageNette / ImageWoof / ImageIDC, which pick fixed ImageNet wnid folders.

Classes whose folders are ImageNet-1k synset ids (wnids) take their names and prompts from the
ImageNet-1k class names, as the papers' pipelines do, and carry the wnids, so a class-conditional
ImageNet backbone can map them to its own class indices."""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.datasets.base import Dataset, Split, register_dataset
from core.datasets.imagenet import PROMPT_SOURCE, imagenet_name, is_imagenet_wnid
from core.datasets.splits import carve_validation
from core.errors import BenchError, DataMissingError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 128
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
TEST_FOLDERS = ("val", "test")

# The ten classes of each subset, in the fixed order of its original release.
IMAGEWOOF = ("n02096294", "n02093754", "n02111889", "n02088364", "n02086240",
             "n02089973", "n02087394", "n02115641", "n02099601", "n02105641")
IMAGENETTE = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
              "n03394916", "n03417042", "n03425413", "n03445777", "n03888257")


def prompt_for(class_name: str) -> str:
    """The class name as a plain lower-case phrase, the form the other loaders use."""
    return class_name.replace("_", " ").strip().lower()


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 ``size x size x 3``: RGB, shorter side resized to ``size``, center crop.

    The arithmetic follows torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on PIL images,
    so the pixels match what most published pipelines feed their models.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BenchError(f"cannot read image {path}: {exc}; remove or replace the file") from None
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _image_files(folder: Path) -> list[Path]:
    # Sorted, so the sample order (and with it the fixed validation split) is the same everywhere.
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _load_split(split_dir: Path, folders: Sequence[str], size: int) -> Split:
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        files = _image_files(split_dir / folder)
        if not files:
            raise DataMissingError(f"no images in {split_dir / folder}; each class folder needs at least one image")
        paths += files
        labels += [label] * len(files)
    # Decoding and resizing happen in C with the GIL released, so threads scale.
    workers = min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda p: load_image(p, size), paths))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(labels, dtype=torch.int64))


def _test_dir(root: Path) -> Path | None:
    for name in TEST_FOLDERS:
        if (root / name).is_dir():
            return root / name
    return None


def _check_size(size: int) -> int:
    if size < 8:
        raise BenchError(f"size={size} is too small; use an image size of at least 8 (default {DEFAULT_SIZE})")
    return size


def build(
    name: str,
    root: Path,
    folders: Sequence[str],
    size: int,
    split_key: str,
    how_to_fix: str,
) -> Dataset:
    """Load ``root/train`` and ``root/val`` (or ``root/test``) restricted to ``folders``.

    Folders that are all ImageNet-1k wnids name their classes by ImageNet; other folders name
    them by themselves. ``split_key`` seeds the fixed validation split; ``how_to_fix`` ends
    every missing-data message.
    """
    _check_size(size)
    if not root.is_dir():
        raise DataMissingError(f"{name}: directory {root} does not exist; {how_to_fix}")
    test_dir = _test_dir(root)
    if not (root / "train").is_dir():
        raise DataMissingError(f"{name}: folder {root / 'train'} is missing; {how_to_fix}")
    if test_dir is None:
        raise DataMissingError(f"{name}: folder {root / 'val'} (or {root / 'test'}) is missing; {how_to_fix}")
    for split_dir in (root / "train", test_dir):
        missing = [f for f in folders if not (split_dir / f).is_dir()]
        if missing:
            more = f" (and {len(missing) - 1} more class folders)" if len(missing) > 1 else ""
            raise DataMissingError(f"{name}: folder {split_dir / missing[0]} is missing{more}; {how_to_fix}")
    train, val = carve_validation(split_key, _load_split(root / "train", folders, size))
    wnids = tuple(folders) if all(is_imagenet_wnid(f) for f in folders) else None
    class_names = [imagenet_name(w) for w in wnids] if wnids else list(folders)
    return Dataset(
        name=name,
        class_names=tuple(class_names),
        prompts=tuple(class_names) if wnids else tuple(prompt_for(c) for c in class_names),
        wnids=wnids,
        prompt_source=PROMPT_SOURCE if wnids else "class folder names",
        channels=3,
        image_size=size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        train=train,
        val=val,
        test=_load_split(test_dir, folders, size),
        source=str(root),
    )


@register_dataset("imagefolder")
def load_imagefolder(root: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """Any ``ROOT/train/<class>/`` + ``ROOT/val/<class>/`` tree; classes are the sorted folder names."""
    how = "pass imagefolder:DIR (or imagefolder[root=DIR]) with DIR holding train/<class>/ and val/<class>/"
    if not root:
        raise BenchError(f"imagefolder needs a directory; {how}")
    path = Path(root).expanduser().resolve()
    train_dir = path / "train"
    if not train_dir.is_dir():
        raise DataMissingError(f"imagefolder: {train_dir} does not exist; {how}")
    folders = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise DataMissingError(f"imagefolder: {train_dir} has {len(folders)} class folders, need at least 2; {how}")
    # Seeded by the class list, not the path, so moving the tree keeps its validation split.
    return build(f"imagefolder:{path}", path, folders, size, "imagefolder:" + ",".join(folders), how)


def _subset(name: str, env_var: str, wnids: Sequence[str], root: str | None, size: int) -> Dataset:
    how = (
        f"point the harness at a copy with {name}[root=DIR] or {env_var}=DIR, "
        "DIR holding train/<wnid>/ and val/<wnid>/"
    )
    chosen = root or os.environ.get(env_var)
    if not chosen:
        raise DataMissingError(f"{name}: no data directory given; {how}")
    path = Path(chosen).expanduser()
    return build(name, path, list(wnids), size, name, how)


@register_dataset("imagewoof")
def load_imagewoof(root: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """ImageWoof: ten dog breeds from ImageNet, in the fixed wnid order of the original release."""
    return _subset("imagewoof", "BENCH_IMAGEWOOF_ROOT", IMAGEWOOF, root, size)


@register_dataset("imagenette")
def load_imagenette(root: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """ImageNette: ten easily told apart ImageNet classes, in the fixed wnid order."""
    return _subset("imagenette", "BENCH_IMAGENETTE_ROOT", IMAGENETTE, root, size)


def read_class_file(path: Path, count: int = 10) -> list[str]:
    """The first ``count`` distinct wnids of a text file with one ImageNet-1k wnid per line (the
    form of IDC's class lists); blank lines and ``#`` comments are skipped. Names and prompts
    come from ImageNet-1k, so a line holding anything after its wnid is refused."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BenchError(f"cannot read classes file {path}: {exc.strerror or exc}") from None
    wnids: list[str] = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 1 or not is_imagenet_wnid(fields[0]):
            raise BenchError(f"classes file {path}, line {number}: expected one ImageNet-1k wnid (e.g. n01440764), "
                             f"got '{line.strip()}'; class names and prompts come from ImageNet-1k")
        if fields[0] not in wnids:
            wnids.append(fields[0])
        if len(wnids) == count:
            return wnids
    raise BenchError(f"classes file {path} lists {len(wnids)} distinct wnids; it needs at least {count}")


@register_dataset("imageidc")
def load_imageidc(root: str | None = None, classes: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """An ImageNet subset of ten classes chosen by a user file (the first ten wnids in it)."""
    if not classes:
        raise BenchError("imageidc needs classes=FILE, a text file listing ImageNet wnids one per line")
    wnids = read_class_file(Path(classes).expanduser())
    return _subset("imageidc", "BENCH_IMAGEIDC_ROOT", wnids, root, size)
