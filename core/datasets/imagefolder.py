"""Loaders for ImageFolder trees (``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``): a generic
one, and ImageNette / ImageWoof / ImageIDC, which pick fixed ImageNet wnid folders."""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.datasets.base import Dataset, Split, register_dataset
from core.datasets.splits import carve_validation
from core.errors import BenchError, DataMissingError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 128
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
TEST_FOLDERS = ("val", "test")

IMAGEWOOF = {
    "n02096294": "Australian terrier",
    "n02093754": "Border terrier",
    "n02111889": "Samoyed",
    "n02088364": "Beagle",
    "n02086240": "Shih-Tzu",
    "n02089973": "English foxhound",
    "n02087394": "Rhodesian ridgeback",
    "n02115641": "Dingo",
    "n02099601": "Golden retriever",
    "n02105641": "Old English sheepdog",
}
IMAGENETTE = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}
# Readable names for wnid folders met in any tree, so a generic copy of a subset reads well.
WNID_NAMES = {**IMAGEWOOF, **IMAGENETTE}


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
    class_names: Sequence[str],
    size: int,
    split_key: str,
    how_to_fix: str,
) -> Dataset:
    """Load ``root/train`` and ``root/val`` (or ``root/test``) restricted to ``folders``.

    ``split_key`` seeds the fixed validation split; ``how_to_fix`` ends every missing-data message.
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
    return Dataset(
        name=name,
        class_names=tuple(class_names),
        prompts=tuple(prompt_for(c) for c in class_names),
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
    names = [WNID_NAMES.get(f, f) for f in folders]
    # Seeded by the class list, not the path, so moving the tree keeps its validation split.
    return build(f"imagefolder:{path}", path, folders, names, size, "imagefolder:" + ",".join(folders), how)


def _subset(name: str, env_var: str, wnids: dict[str, str], root: str | None, size: int) -> Dataset:
    how = (
        f"point the harness at a copy with {name}[root=DIR] or {env_var}=DIR, "
        "DIR holding train/<wnid>/ and val/<wnid>/"
    )
    chosen = root or os.environ.get(env_var)
    if not chosen:
        raise DataMissingError(f"{name}: no data directory given; {how}")
    path = Path(chosen).expanduser()
    return build(name, path, list(wnids), list(wnids.values()), size, name, how)


@register_dataset("imagewoof")
def load_imagewoof(root: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """ImageWoof: ten dog breeds from ImageNet, in the fixed wnid order of the original release."""
    return _subset("imagewoof", "BENCH_IMAGEWOOF_ROOT", IMAGEWOOF, root, size)


@register_dataset("imagenette")
def load_imagenette(root: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """ImageNette: ten easily told apart ImageNet classes, in the fixed wnid order."""
    return _subset("imagenette", "BENCH_IMAGENETTE_ROOT", IMAGENETTE, root, size)


def read_class_file(path: Path, count: int = 10) -> dict[str, str]:
    """The first ``count`` wnids of a text file, one per line, optionally followed by a name.

    Blank lines and ``#`` comments are skipped; a wnid without a name gets a known name or itself.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BenchError(f"cannot read classes file {path}: {exc.strerror or exc}") from None
    classes: dict[str, str] = {}
    for line in lines:
        fields = line.split("#", 1)[0].split(None, 1)
        if fields and fields[0] not in classes:
            wnid = fields[0]
            classes[wnid] = fields[1].strip() if len(fields) > 1 else WNID_NAMES.get(wnid, wnid)
        if len(classes) == count:
            return classes
    raise BenchError(f"classes file {path} lists {len(classes)} distinct wnids; it needs at least {count}")


@register_dataset("imageidc")
def load_imageidc(root: str | None = None, classes: str | None = None, size: int = DEFAULT_SIZE) -> Dataset:
    """An ImageNet subset of ten classes chosen by a user file (the first ten wnids in it)."""
    if not classes:
        raise BenchError("imageidc needs classes=FILE, a text file listing ImageNet wnids one per line")
    wnids = read_class_file(Path(classes).expanduser())
    return _subset("imageidc", "BENCH_IMAGEIDC_ROOT", wnids, root, size)
