"""Loaders for ImageFolder trees (``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``): a generic
one, and ImageNette / ImageWoof / ImageIDC, which pick fixed ImageNet wnid folders.

Classes whose folders are ImageNet-1k synset ids (wnids) take their names and prompts from the
ImageNet-1k class names, as the papers' pipelines do, and carry the wnids, so a class-conditional
ImageNet backbone can map them to its own class indices.

A tree is decoded once into one uint8 ``.npy`` file in the artifact cache (keyed by every file's
path, size and modification time, and the image size) and memory-mapped from then on: a data set
of 256 px images takes gigabytes, which every process on a machine now shares through the page
cache instead of holding a private copy, and pages are read from disk when a batch touches them.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.artifacts import ArtifactCache, content_key, default_cache_root
from core.datasets.base import Dataset, Split, fingerprint_of, register_dataset
from core.datasets.imagenet import PROMPT_SOURCE, imagenet_name, is_imagenet_wnid
from core.datasets.splits import validation_indices
from core.errors import BenchError, DataMissingError

log = logging.getLogger("core.datasets")

DECODED_KIND = "decoded-images"
DECODED_VERSION = 1  # bump when decoding changes (resize, crop, colour conversion)
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
    return np.array(img.crop((left, top, left + size, top + size)), dtype=np.uint8)  # writable: torch takes it


def _image_files(folder: Path) -> list[Path]:
    # Sorted, so the sample order (and with it the fixed validation split) is the same everywhere.
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _list_split(split_dir: Path, folders: Sequence[str]) -> tuple[list[Path], torch.Tensor]:
    """The image files of a split in a fixed order, and their labels."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        files = _image_files(split_dir / folder)
        if not files:
            raise DataMissingError(f"no images in {split_dir / folder}; each class folder needs at least one image")
        paths += files
        labels += [label] * len(files)
    return paths, torch.tensor(labels, dtype=torch.int64)


def _decode_into(paths: Sequence[Path], size: int, out: np.ndarray | torch.Tensor) -> None:
    """Decode ``paths`` into ``out`` (N x 3 x size x size uint8), one image at a time in place."""
    target = torch.from_numpy(out) if isinstance(out, np.ndarray) else out

    def put(i: int) -> None:
        target[i] = torch.from_numpy(load_image(paths[i], size)).permute(2, 0, 1)

    # Decoding and resizing happen in C with the GIL released, so threads scale.
    workers = min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, range(len(paths))))


def _files_key(name: str, paths: Sequence[Path], size: int) -> str:
    """Names the decoded array of these files in this order: path, size and mtime of each."""
    h = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        h.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return content_key({"dataset": name, "files": h.hexdigest(), "size": size, "version": DECODED_VERSION})


def _decoded_cache() -> ArtifactCache | None:
    try:
        return ArtifactCache(default_cache_root())
    except BenchError as exc:
        log.warning("decoding images into memory: %s", exc)
        return None


def _splits(images: np.ndarray | torch.Tensor, parts: Sequence[tuple[list[Path], torch.Tensor]]) -> list[Split]:
    """Consecutive views of ``images``, one split per (files, labels) part."""
    out, start = [], 0
    for files, labels in parts:
        view = images[start:start + len(files)]
        out.append(Split(torch.from_numpy(view) if isinstance(view, np.ndarray) else view, labels.clone()))
        start += len(files)
    return out


def _decode_splits(name: str, parts: Sequence[tuple[list[Path], torch.Tensor]],
                   size: int) -> tuple[list[Split], str | None]:
    """The (train, val, test) splits of these (files, labels) parts, and the data set's
    fingerprint when it is known without reading the images again: memory-mapped from the
    decoded array in the cache (decoded into it first if absent), or in memory without a cache."""
    paths = [p for files, _ in parts for p in files]
    shape = (len(paths), 3, size, size)
    cache = _decoded_cache()
    if cache is None:
        images = torch.empty(shape, dtype=torch.uint8)
        _decode_into(paths, size, images)
        return _splits(images, parts), None
    key = _files_key(name, paths, size)
    array = cache.load_array(DECODED_KIND, key)
    if array is None:
        meta = {"dataset": name, "images": [len(files) for files, _ in parts]}

        def fill(out: np.ndarray) -> None:
            _decode_into(paths, size, out)
            meta["fingerprint"] = fingerprint_of(name, tuple(_splits(out, parts)))  # written with the file below

        cache.write_array(DECODED_KIND, key, shape, np.uint8, fill, meta=meta)
        array = cache.load_array(DECODED_KIND, key)
    record = cache.meta(DECODED_KIND, key)
    if array is None or record is None or array.shape != shape:
        raise BenchError(f"{name}: the decoded images {cache.path(DECODED_KIND, key, '.npy')} cannot be read back; "
                         "check the cache directory's disk")
    return _splits(array, parts), record["meta"].get("fingerprint")


def _test_dir(root: Path) -> Path | None:
    for name in TEST_FOLDERS:
        if (root / name).is_dir():
            return root / name
    return None


MAX_SIZE = 1024  # Stable Diffusion works at 512 px; a decoded folder of 10 classes at 1024 px is ~30 GB


def _check_size(size: int) -> int:
    if not 8 <= size <= MAX_SIZE:
        raise BenchError(f"size={size} is out of range; use an image size from 8 to {MAX_SIZE} (default {DEFAULT_SIZE})")
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
    paths, labels = _list_split(root / "train", folders)
    test_paths, test_labels = _list_split(test_dir, folders)
    keep, held = validation_indices(split_key, labels)  # split by label before decoding anything
    (train, val, test), fingerprint = _decode_splits(name, [([paths[i] for i in keep.tolist()], labels[keep]),
                                                            ([paths[i] for i in held.tolist()], labels[held]),
                                                            (test_paths, test_labels)], size)
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
        test=test,
        source=str(root),
        _fingerprint=[fingerprint] if fingerprint else [],
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
