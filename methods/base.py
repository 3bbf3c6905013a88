"""The `Distiller` interface every method implements, and the `DistilledSet` it returns."""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from core.artifacts import ArtifactCache
from core.datasets.base import Dataset
from core.errors import BenchError

if TYPE_CHECKING:
    from methods.plugins import Plugin


@dataclass
class DistilledSet:
    """A distilled data set: images in [0, 1] (float32, N x C x H x W) and hard labels.

    ``soft_labels`` (N x classes, float32) is present only for methods that store them.
    ``nbytes`` counts what a user would have to store: one byte per pixel value, the hard
    labels as int64, and soft labels as float32.
    """

    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError("DistilledSet needs N x C x H x W images and N labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        soft = 0 if self.soft_labels is None else self.soft_labels.numel() * 4
        return self.images.numel() + self.labels.numel() * 8 + soft

    def to_state(self) -> dict[str, Any]:
        return {"images": self.images.contiguous(), "labels": self.labels.contiguous(),
                "soft_labels": self.soft_labels, "meta": self.meta}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DistilledSet:
        return cls(state["images"], state["labels"], state.get("soft_labels"), dict(state.get("meta", {})))


@dataclass
class DistillContext:
    """What the runner hands a method: the artifact cache, the device and a status callback."""

    cache: ArtifactCache
    device: torch.device
    report: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class NoOptions:
    """A method without options."""


class Distiller(ABC):
    """A dataset-distillation method.

    Subclasses set ``Options`` to a frozen dataclass of their hyper-parameters (defaults are
    the faithful ones) and implement :meth:`distill`. Class flags tell the runner what the
    method needs and how to treat it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    selects_real: ClassVar[bool] = False  # picks real images: IPC is bounded by class sizes
    reference: ClassVar[bool] = False  # independent of IPC (the `full` row)
    needs_encoder: ClassVar[bool] = False  # has an `encode_real` hook a plug-in may replace
    needs_denoiser: ClassVar[str | None] = None  # "class" or "text": the denoiser it samples with
    deterministic: ClassVar[bool] = False  # the seed does not change the set (only the student)

    def __init__(self, options: Any | None = None, plugins: Sequence[Plugin] = ()):
        self.options = options if options is not None else self.Options()
        self.plugins: tuple[Plugin, ...] = tuple(plugins)

    @classmethod
    def with_options(cls, raw: dict[str, str], plugins: Sequence[Plugin] = ()) -> Distiller:
        """Build from command-line option strings, converting each to its declared type."""
        return cls(parse_options(cls.name, cls.Options, raw), plugins)

    def config(self) -> dict[str, Any]:
        """Everything that determines the distilled set besides data, IPC and seed."""
        config = {"method": self.name, "options": dataclasses.asdict(self.options)}
        if self.plugins:
            config["plugins"] = [plugin.config() for plugin in self.plugins]
        return config

    def validate(self, data: Dataset, ipc: int) -> None:
        """Refuse impossible requests before any work starts."""
        if self.selects_real:
            smallest = min(data.train.class_counts(data.num_classes))
            if ipc > smallest:
                raise BenchError(
                    f"IPC {ipc} is larger than the smallest class of {data.name} ({smallest} training images) "
                    f"for the selection method '{self.name}'"
                )

    def prepare(self, data: Dataset, ctx: DistillContext) -> None:
        """Build shared prerequisites (teachers, fine-tuned models) once, before the trials run."""

    @abstractmethod
    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        """Return exactly ``ipc`` images per class (all of them for a reference method)."""


def _base_type(kind: Any) -> Any:
    """``"float | None"`` (a postponed annotation) -> ``"float"``; types pass through."""
    if isinstance(kind, str):
        parts = [p.strip() for p in kind.split("|") if p.strip() != "None"]
        return parts[0] if len(parts) == 1 else kind
    return kind


def _convert(method: str, name: str, kind: Any, text: str, owner: str = "method") -> Any:
    kind = _base_type(kind)
    try:
        if kind in (bool, "bool"):
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            return float(text)
        return text
    except ValueError:
        type_name = getattr(kind, "__name__", str(kind))
        raise BenchError(f"option '{name}' of {owner} '{method}' must be {type_name}, got '{text}'") from None


def option_names(options_type: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(options_type))


def parse_options(method: str, options_type: type, raw: dict[str, str], kind: str = "method") -> Any:
    """Turn ``{"strength": "0.5"}`` into an options dataclass, refusing unknown names and bad values.

    A dataclass may check its values in ``__post_init__`` by raising ValueError; that becomes
    a one-line BenchError too.
    """
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "none"
        raise BenchError(f"{kind} '{method}' has no option '{unknown[0]}' (its options: {valid})")
    values = {k: _convert(method, k, fields[k].type, v, kind) for k, v in raw.items()}
    try:
        return options_type(**values)
    except ValueError as exc:
        raise BenchError(f"{kind} '{method}': {exc}") from None
