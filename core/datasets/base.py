"""The data set record every loader returns, and the registry of loaders."""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from core.errors import SealedSplitError
from core.registry import Registry


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 N x C x H x W, ``labels`` int64 N."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("Split.images must be a uint8 N x C x H x W tensor")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError("Split.labels must be an int64 tensor of length N")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float().div_(255.0)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()

    def indices_of(self, label: int) -> torch.Tensor:
        return torch.nonzero(self.labels == label, as_tuple=False).flatten()


@dataclass(frozen=True)
class Dataset:
    """A classification data set with fixed train / validation / test splits.

    The validation split is carved from the original training data once per data set,
    independently of any run seed, so model selection never touches the test split.
    """

    name: str
    class_names: tuple[str, ...]
    prompts: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split
    test: Split
    source: str = ""
    # The ImageNet-1k synset id of each class, when the classes are ImageNet classes (None otherwise).
    wnids: tuple[str, ...] | None = None
    prompt_source: str = "class names"  # where `class_names` and `prompts` come from
    flips: bool = True  # a mirrored image keeps its class (False for digits: DSA then leaves flip out)
    _fingerprint: list = field(default_factory=list, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """A content hash of all three splits; keys every artifact derived from the data."""
        if not self._fingerprint:
            self._fingerprint.append(fingerprint_of(self.name, (self.train, self.val, self.test)))
        return self._fingerprint[0]


class SealedSplit:
    """A split that must not be read: every use raises `SealedSplitError` (the test split while
    a tuning study scores candidates on the validation split)."""

    def __init__(self, why: str):
        self.__dict__["why"] = why

    def __getattr__(self, name: str):
        raise SealedSplitError(f"the test split is sealed {self.__dict__['why']} (read: '{name}')")

    def __setattr__(self, name: str, value) -> None:
        raise SealedSplitError(f"the test split is sealed {self.__dict__['why']}")

    def __len__(self) -> int:
        raise SealedSplitError(f"the test split is sealed {self.__dict__['why']} (read: its length)")


def with_sealed_test(data: Dataset, why: str) -> Dataset:
    """``data`` whose test split raises on any use; its fingerprint (taken first) is unchanged,
    so every cached artifact of the data set is still found."""
    return dataclasses.replace(data, test=SealedSplit(why), _fingerprint=[data.fingerprint()])


def fingerprint_of(name: str, splits: tuple[Split, Split, Split]) -> str:
    """`Dataset.fingerprint` of a data set with this name and these (train, val, test) splits; a
    loader that has just written the splits computes it once and stores it beside them."""
    h = hashlib.sha256(name.encode())
    for split in splits:
        # The buffers themselves, not copies: a split at 256 px is gigabytes.
        h.update(memoryview(split.images.contiguous().numpy()).cast("B"))
        h.update(memoryview(split.labels.contiguous().numpy()).cast("B"))
    return h.hexdigest()[:16]


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Map [0, 1] images to a data set's standardised space."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


DatasetLoader = Callable[..., Dataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset", check=callable)
register_dataset = DATASETS.register
