"""Tests of the data set loaders: split sizes and determinism, file discovery, and error messages."""
from __future__ import annotations

import gzip
import os
import random
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.datasets import clear_cache, dataset_names, load_dataset
from core.datasets.base import Split
from core.datasets.fashion_mnist import DEBIAN_DIR, FILES
from core.datasets.imagefolder import IMAGENETTE, IMAGEWOOF
from core.datasets.splits import stable_seed, stratified_holdout
from core.errors import BenchError, DataMissingError, UnknownNameError

REPO = Path(__file__).resolve().parents[1]
HAVE_FMNIST = all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILES.values())
needs_fmnist = pytest.mark.skipif(
    not HAVE_FMNIST, reason=f"Fashion-MNIST not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)"
)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    # Every test starts without memoised data sets and without the user's data env vars.
    for var in ("BENCH_FASHION_MNIST_DIR", "BENCH_CIFAR10_ROOT", "BENCH_IMAGEWOOF_ROOT",
                "BENCH_IMAGENETTE_ROOT", "BENCH_IMAGEIDC_ROOT"):
        monkeypatch.delenv(var, raising=False)
    clear_cache()
    yield
    clear_cache()


def _rows(split: Split) -> Counter:
    return Counter(
        (img.numpy().tobytes(), int(lab)) for img, lab in zip(split.images, split.labels)
    )


# ---------------------------------------------------------------- registry and specs


def test_names_are_registered():
    assert {"digits", "fashion-mnist", "cifar10", "imagefolder", "imagenette", "imagewoof", "imageidc"} <= set(
        dataset_names()
    )


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion-mnst")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(BenchError, match=r"no option 'colour' \(valid options: root, download\)"):
        load_dataset("fashion-mnist[colour=red]")
    with pytest.raises(BenchError, match=r"valid options: none"):
        load_dataset("digits[root=/x]")


def test_bad_option_values_are_bench_errors(tmp_path):
    with pytest.raises(BenchError, match="option 'size' of dataset 'imagefolder' must be int, got 'big'"):
        load_dataset(f"imagefolder:{tmp_path}[size=big]")
    with pytest.raises(BenchError, match="must be a positive integer, got '0'"):
        load_dataset(f"imagefolder:{tmp_path}[size=0]")
    with pytest.raises(BenchError, match=r"must be bool \(1 or 0\)"):
        load_dataset(f"cifar10[root={tmp_path},download=perhaps]")
    with pytest.raises(BenchError, match="needs a directory"):
        load_dataset("imagefolder")


# ---------------------------------------------------------------- split helpers


def test_stable_seed_is_a_fixed_function_of_its_inputs():
    assert stable_seed("digits", "val") == stable_seed("digits", "val")
    assert stable_seed("digits", "val") != stable_seed("digits", "test")
    assert stable_seed("digits", "val") != stable_seed("cifar10", "val")
    assert 0 <= stable_seed("x", "y") < 2**63


def test_holdout_caps_and_stratifies_balanced_classes():
    labels = torch.arange(10).repeat_interleave(6000)
    keep, held = stratified_holdout(labels, 0.1, 5000, seed=1)
    assert len(held) == 5000 and len(keep) == 55000
    assert torch.bincount(labels[held]).tolist() == [500] * 10
    # Disjoint and covering.
    assert torch.equal(torch.sort(torch.cat([keep, held])).values, torch.arange(60000))


def test_holdout_on_imbalanced_classes_is_proportional_and_exact():
    labels = torch.tensor([0] * 97 + [1] * 3 + [2] * 1 + [3] * 49)
    keep, held = stratified_holdout(labels, 0.2, None, seed=7)
    assert len(held) == 30
    counts = torch.bincount(labels[held], minlength=4).tolist()
    assert counts[2] == 0  # a single-image class is never held out entirely
    for c, n in enumerate([97, 3, 1, 49]):
        assert abs(counts[c] - 0.2 * n) <= 1.0
    assert set(keep.tolist()).isdisjoint(held.tolist())
    assert len(keep) + len(held) == len(labels)


def test_holdout_depends_on_its_seed_only():
    labels = torch.arange(5).repeat(40)
    torch.manual_seed(0)
    a = stratified_holdout(labels, 0.1, None, seed=3)[1]
    torch.manual_seed(99)
    b = stratified_holdout(labels, 0.1, None, seed=3)[1]
    c = stratified_holdout(labels, 0.1, None, seed=4)[1]
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_sizes():
    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1294, 144, 359)
    assert ds.num_classes == 10 and ds.channels == 1 and ds.image_size == 8
    assert ds.class_names[0] == "zero" and ds.prompts[9] == "the digit nine"
    for split in (ds.train, ds.val, ds.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert tuple(split.images.shape[1:]) == (1, 8, 8)
    assert int(ds.train.images.max()) == 255
    x = ds.train.float_images()
    assert abs(x.mean().item() - ds.mean[0]) < 1e-3 and abs(x.std().item() - ds.std[0]) < 1e-3


def test_digits_splits_are_disjoint_and_cover_the_data():
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = np.rint(raw.images * (255 / 16)).astype(np.uint8)
    everything = _rows(Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(raw.target).long()))
    ds = load_dataset("digits")
    assert _rows(ds.train) + _rows(ds.val) + _rows(ds.test) == everything


def test_digits_splits_are_stratified():
    ds = load_dataset("digits")
    total = Counter(ds.train.labels.tolist()) + Counter(ds.val.labels.tolist()) + Counter(ds.test.labels.tolist())
    rest = Counter(ds.train.labels.tolist()) + Counter(ds.val.labels.tolist())
    for c in range(10):
        assert abs(ds.test.class_counts(10)[c] - 0.2 * total[c]) <= 1.0
        assert abs(ds.val.class_counts(10)[c] - 0.1 * rest[c]) <= 1.0


def test_validation_split_ignores_run_seeds_and_memo():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    first = load_dataset("digits")
    assert load_dataset("digits") is first  # memoised
    clear_cache()
    torch.manual_seed(12345)
    random.seed(12345)
    np.random.seed(12345)
    torch.rand(1000)  # move the global stream along as a training run would
    second = load_dataset("digits")
    assert second is not first
    for a, b in ((first.val, second.val), (first.test, second.test), (first.train, second.train)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


_SPLIT_IN_CHILD = """
import torch
from core.datasets.splits import stable_seed, stratified_holdout
labels = torch.arange(7).repeat_interleave(50)
print(stratified_holdout(labels, 0.1, None, stable_seed("digits", "val"))[1].tolist())
"""


def test_splits_are_identical_in_another_process():
    # A different PYTHONHASHSEED catches a split seeded from Python's salted hash().
    env = {**os.environ, "PYTHONHASHSEED": "4321"}
    out = subprocess.run(
        [sys.executable, "-c", _SPLIT_IN_CHILD], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    labels = torch.arange(7).repeat_interleave(50)
    held = stratified_holdout(labels, 0.1, None, stable_seed("digits", "val"))[1]
    assert out.stdout.strip() == str(held.tolist())


# ---------------------------------------------------------------- fashion-mnist (real files)


@needs_fmnist
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    assert tuple(ds.train.images.shape[1:]) == (1, 28, 28) and ds.image_size == 28
    assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top" and ds.prompts[9] == "ankle boot"
    assert ds.test.class_counts(10) == [1000] * 10
    assert ds.val.class_counts(10) == [500] * 10
    assert ds.source == str(DEBIAN_DIR)
    assert ds.mean == (0.2861,) and ds.std == (0.3530,)


@needs_fmnist
def test_fashion_mnist_from_user_directory(tmp_path):
    for stem in FILES.values():
        shutil.copy(DEBIAN_DIR / f"{stem}.gz", tmp_path / f"{stem}.gz")
    ds = load_dataset(f"fashion-mnist[root={tmp_path}]")
    assert ds.source == str(tmp_path)
    reference = load_dataset("fashion-mnist")
    assert ds is not reference and ds.fingerprint() == reference.fingerprint()


# ---------------------------------------------------------------- fashion-mnist (synthetic IDX files)


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _fake_fashion(directory: Path, compress: bool = True, per_class: int = 20) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for which, n in (("train", per_class), ("t10k", 5)):
        labels = np.repeat(np.arange(10), n)
        images = rng.integers(0, 256, size=(len(labels), 28, 28))
        _write_idx(directory / f"{which}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(directory / f"{which}-labels-idx1-ubyte{suffix}", labels, compress)


def test_fashion_mnist_torchvision_raw_layout_uncompressed(tmp_path):
    _fake_fashion(tmp_path / "FashionMNIST" / "raw", compress=False)
    ds = load_dataset(f"fashion-mnist[root={tmp_path}]")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (180, 20, 50)
    assert ds.val.class_counts(10) == [2] * 10
    assert ds.source == str(tmp_path / "FashionMNIST" / "raw")


def test_fashion_mnist_env_var(tmp_path, monkeypatch):
    _fake_fashion(tmp_path)
    monkeypatch.setenv("BENCH_FASHION_MNIST_DIR", str(tmp_path))
    assert load_dataset("fashion-mnist").source == str(tmp_path)
    # A wrong env var is reported, not silently replaced by another copy.
    clear_cache()
    monkeypatch.setenv("BENCH_FASHION_MNIST_DIR", str(tmp_path / "typo"))
    with pytest.raises(DataMissingError, match="typo"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_missing_directory_says_how_to_get_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataMissingError) as info:
        load_dataset(f"fashion-mnist[root={missing}]")
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "fashion-mnist[root=DIR]" in message and "BENCH_FASHION_MNIST_DIR" in message
    assert "train-images-idx3-ubyte.gz" in message


@pytest.mark.parametrize("damage", ["truncate-gzip", "truncate-plain", "bad-magic"])
def test_corrupt_idx_file_is_a_bench_error(tmp_path, damage):
    compress = damage == "truncate-gzip"
    _fake_fashion(tmp_path, compress=compress)
    target = tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    data = target.read_bytes()
    if damage == "bad-magic":
        target.write_bytes(b"\x00\x00\x0d\x03" + data[4:])
    else:
        target.write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError) as info:
        load_dataset(f"fashion-mnist[root={tmp_path}]")
    assert not isinstance(info.value, DataMissingError)
    assert str(target) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- cifar10


def test_cifar10_missing_root_is_explained(tmp_path):
    with pytest.raises(DataMissingError) as info:
        load_dataset(f"cifar10[root={tmp_path}]")
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "BENCH_CIFAR10_ROOT" in message and "download=1" in message and "\n" not in message


# ---------------------------------------------------------------- image folders

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
           (255, 0, 255), (128, 0, 0), (0, 128, 0), (0, 0, 128), (128, 128, 0)]
SHAPES = [(20, 30), (40, 16), (17, 17), (64, 24)]


def _write_tree(root: Path, classes: list[str], per_split: dict[str, int]) -> None:
    """Class k's images are filled with COLOURS[k], in mixed sizes and PIL modes."""
    for split, n in per_split.items():
        for k, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = Image.new("RGB", SHAPES[i % len(SHAPES)], COLOURS[k % len(COLOURS)])
                if i % 3 == 1:
                    img = img.convert("RGBA")
                img.save(folder / f"img{i:02d}.png")


def _check_colours(split: Split) -> None:
    for img, label in zip(split.images, split.labels):
        assert img[:, 8, 8].tolist() == list(COLOURS[int(label)])


def test_imagefolder_tiny_tree(tmp_path):
    _write_tree(tmp_path, ["zebra", "apple", "mango_tree"], {"train": 12, "val": 4})
    ds = load_dataset(f"imagefolder:{tmp_path}[size=16]")
    assert ds.class_names == ("apple", "mango_tree", "zebra") and ds.wnids is None
    assert ds.prompts == ("apple", "mango tree", "zebra")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (32, 4, 12)
    assert ds.test.class_counts(3) == [4, 4, 4]
    for split in (ds.train, ds.val, ds.test):
        assert tuple(split.images.shape[1:]) == (3, 16, 16) and split.images.dtype == torch.uint8
    # Folder k in sorted order holds colour k in _write_tree's order: apple=1, mango_tree=2, zebra=0.
    remap = {0: 1, 1: 2, 2: 0}
    for img, label in zip(ds.train.images, ds.train.labels):
        assert img[:, 8, 8].tolist() == list(COLOURS[remap[int(label)]])
    assert load_dataset(f"imagefolder[root={tmp_path},size=16]") is ds


def test_imagefolder_center_crop_and_test_folder(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            # 48x16: left and right thirds red, middle third green; the crop keeps the middle.
            img = Image.new("RGB", (48, 16), (255, 0, 0))
            img.paste((0, 255, 0), (16, 0, 32, 16))
            for i in range(3):
                img.save(tmp_path / split / cls / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}[size=16]")
    assert len(ds.test) == 6
    green = torch.tensor([0, 255, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 16, 16)
    assert all(torch.equal(img, green) for img in ds.test.images)


def test_imagewoof_tiny_tree_in_wnid_order(tmp_path, monkeypatch):
    wnids = list(IMAGEWOOF)
    _write_tree(tmp_path, wnids, {"train": 3, "val": 1})
    monkeypatch.setenv("BENCH_IMAGEWOOF_ROOT", str(tmp_path))
    ds = load_dataset("imagewoof[size=16]")
    # names and prompts are ImageNet-1k's class names, as the papers prompt (timm's table)
    assert ds.class_names[:3] == ("Australian terrier", "Border terrier", "Samoyed, Samoyede")
    assert ds.prompts[9] == "Old English sheepdog, bobtail" and ds.wnids == IMAGEWOOF
    assert ds.prompt_source.startswith("ImageNet-1k class names")
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (30, 10)
    assert ds.mean == (0.485, 0.456, 0.406)
    _check_colours(ds.train)  # label k is wnid k of the fixed list, not of sorted folder names
    _check_colours(ds.test)


def test_imagewoof_missing_wnid_folder(tmp_path):
    _write_tree(tmp_path, list(IMAGEWOOF)[:9], {"train": 1, "val": 1})
    with pytest.raises(DataMissingError) as info:
        load_dataset(f"imagewoof[root={tmp_path},size=16]")
    message = str(info.value)
    assert str(tmp_path / "train" / "n02105641") in message
    assert "imagewoof[root=DIR]" in message and "BENCH_IMAGEWOOF_ROOT" in message


def test_imagenette_without_root_is_explained():
    with pytest.raises(DataMissingError, match="BENCH_IMAGENETTE_ROOT"):
        load_dataset("imagenette")


def test_imageidc_reads_class_file(tmp_path):
    wnids = list(IMAGENETTE)
    _write_tree(tmp_path / "data", wnids + ["n01443537"], {"train": 2, "val": 1})
    listing = ["# my subset", f"{wnids[0]}  # the fish", ""] + wnids[1:] + [wnids[1], "n01443537"]
    (tmp_path / "classes.txt").write_text("\n".join(listing) + "\n")
    ds = load_dataset(f"imageidc[root={tmp_path / 'data'},classes={tmp_path / 'classes.txt'},size=16]")
    assert ds.num_classes == 10 and ds.wnids == IMAGENETTE  # the first ten distinct wnids
    assert ds.class_names[:2] == ("tench, Tinca tinca", "English springer, English springer spaniel")
    (tmp_path / "bad.txt").write_text(f"{wnids[0]} small fish\n")
    with pytest.raises(BenchError, match=r"bad.txt, line 1: expected one ImageNet-1k wnid .* got 'n01440764 small fish'"):
        load_dataset(f"imageidc[root={tmp_path / 'data'},classes={tmp_path / 'bad.txt'},size=16]")
    (tmp_path / "bad.txt").write_text("n09999999\n")
    with pytest.raises(BenchError, match="line 1: expected one ImageNet-1k wnid"):
        load_dataset(f"imageidc[root={tmp_path / 'data'},classes={tmp_path / 'bad.txt'},size=16]")
    _check_colours(ds.test)


def _mapped_file(address: int) -> str:
    """The file mapped at ``address`` in this process ('' for anonymous memory)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 else ""
    return ""


def test_image_folder_is_decoded_once_then_memory_mapped(tmp_path, monkeypatch):
    """The second load (another process, after a memo clear) maps the decoded array: no image is
    decoded again, the pixels and the fingerprint are the same; a changed file is decoded afresh."""
    from core.datasets import clear_cache, imagefolder
    from core.datasets.base import fingerprint_of

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    _write_tree(tmp_path / "tree", ["b", "a"], {"train": 12, "val": 4})
    spec = f"imagefolder:{tmp_path / 'tree'}[size=16]"
    decoded: list[Path] = []
    real = imagefolder.load_image
    monkeypatch.setattr(imagefolder, "load_image", lambda path, size: decoded.append(path) or real(path, size))
    first = load_dataset(spec)
    assert len(decoded) == 32
    for split in (first.train, first.val, first.test):  # the pixels live in the cache's file, not in private memory
        assert _mapped_file(split.images.data_ptr()).startswith(str(tmp_path / "cache" / "decoded-images"))
    assert first.fingerprint() == fingerprint_of(first.name, (first.train, first.val, first.test))
    clear_cache()
    decoded.clear()
    second = load_dataset(spec)
    assert decoded == [] and second is not first and second.fingerprint() == first.fingerprint()
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(second, split).images, getattr(first, split).images)
        assert torch.equal(getattr(second, split).labels, getattr(first, split).labels)
    # sorted folders: label 0 is "a" (written second, colour 1), label 1 is "b" (colour 0)
    assert all(img[:, 8, 8].tolist() == list(COLOURS[1 - int(y)])
               for img, y in zip(second.train.images, second.train.labels))
    victim = tmp_path / "tree" / "train" / "a" / "img00.png"
    Image.new("RGB", (16, 16), (9, 9, 9)).save(victim)
    clear_cache()
    third = load_dataset(spec)
    assert len(decoded) == 32 and third.fingerprint() != first.fingerprint()
