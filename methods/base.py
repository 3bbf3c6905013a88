"""The `Distiller` interface every method implements (the context the runner hands it is
`methods.distill_context.DistillContext`, imported here too)."""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.artifacts import ArtifactCache
from core.datasets.base import Dataset
from core.distilled import DistilledSet
from core.errors import BenchError
from core.options import normal_text, parse_options
from core.search_space import Space
from core.spec import NamedSpec
from core.stages import SharedStage
from methods.distill_context import DistillContext
from methods.plugins import Plugin, PluginReport

# Ranking groups, in leaderboard order: the whole-data reference, the random baseline, methods
# that select real images, methods that optimise images by matching (gradients, distributions,
# statistics), methods that generate them, sets made elsewhere.
GROUPS = ("reference", "baseline", "selection", "matching", "generative", "external", "other")


@dataclass(frozen=True)
class NoOptions:
    """A method without options."""


def check_ipc_fits(data: Dataset, ipc: int, method: str, why: str) -> None:
    """Refuse an IPC above the smallest class of the training split, saying why the method needs it."""
    smallest = min(data.train.class_counts(data.num_classes))
    if ipc > smallest:
        raise BenchError(f"IPC {ipc} is larger than the smallest class of {data.name} ({smallest} training "
                         f"images){why.format(method=method)}")


class Distiller(ABC):
    """A dataset-distillation method.

    Subclasses set ``Options`` to a frozen dataclass of their hyper-parameters (defaults are
    the faithful ones) and implement :meth:`distill`. Class flags tell the runner what the
    method needs and how to treat it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    group: ClassVar[str] = "other"  # one of GROUPS: where the leaderboard ranks it
    selects_real: ClassVar[bool] = False  # picks real images: IPC is bounded by class sizes
    reference: ClassVar[bool] = False  # independent of IPC (the `full` row)
    needs_encoder: ClassVar[bool] = False  # has an `encode_real` hook a plug-in may replace
    needs_denoiser: ClassVar[str | None] = None  # "class" or "text": the denoiser it samples with
    deterministic: ClassVar[bool] = False  # the seed does not change the set (only the student)
    # option values (as typed on the command line) this method takes when a plug-in replaces
    # its hook and the user did not set them: a method whose plain form never reads the hook
    # says here how it starts to (`dit` adapts its denoiser on the hook's latents)
    hook_defaults: ClassVar[dict[str, str]] = {}
    # options a fair tuning may change, and their ranges (`bench tune` searches exactly these)
    tunable: ClassVar[dict[str, Space]] = {}
    ceiling: ClassVar[bool] = False  # a reference row of real images through a backbone (`recon`), not a method

    @classmethod
    def ceiling_spec(cls, spec: NamedSpec) -> NamedSpec | None:
        """The row that shows the best this method's output format allows (its backbone's decoding
        of real images, for a generative method), or None."""
        return None

    def __init__(self, options: Any | None = None, plugins: Sequence[Plugin] = ()):
        self.options = options if options is not None else self.Options()
        self.plugins: tuple[Plugin, ...] = tuple(plugins)

    @classmethod
    def with_options(cls, raw: dict[str, str], plugins: Sequence[Plugin] = ()) -> Distiller:
        """Build from command-line option strings, converting each to its declared type."""
        return cls(parse_options(cls.name, cls.Options, raw), plugins)

    def label(self, spec: NamedSpec) -> str:
        """The row name of this method written as ``spec``: the canonical spec, each value written
        in its one normal form (see `normal_text`), so equal requests share one run hash."""
        owners = [self.options, *(plugin.options for plugin in self.plugins)]
        values = {}
        for key, raw in spec.options.items():
            owner = next((o for o in owners if any(f.name == key for f in dataclasses.fields(o))), None)
            values[key] = raw if owner is None else normal_text(getattr(owner, key))
        return NamedSpec(spec.name, values).canonical()

    def config(self) -> dict[str, Any]:
        """Everything that determines the distilled set besides data, IPC and seed."""
        config = {"method": self.name, "options": dataclasses.asdict(self.options)}
        if self.plugins:
            config["plugins"] = [plugin.config() for plugin in self.plugins]
        return config

    def validate(self, data: Dataset, ipc: int) -> None:
        """Refuse impossible requests before any work starts."""
        if self.selects_real:
            check_ipc_fits(data, ipc, self.name, " for the selection method '{method}'")

    def prepare(self, data: Dataset, ctx: DistillContext) -> None:
        """Build shared prerequisites (teachers, fine-tuned models) once, before the trials run."""

    def shared_stages(self, data: Dataset, cache: ArtifactCache) -> list[SharedStage]:
        """What :meth:`prepare` builds (cached or not), in order, for `bench plan` to count;
        reads the cache only (a stage after one not yet built has no key)."""
        return []

    def plugin_reports(self, data: Dataset, cache: ArtifactCache) -> list[PluginReport]:
        """Each plug-in's status and stored diagnostics (never trains anything)."""
        return [PluginReport(p.name, "no diagnostics") for p in self.plugins]

    @abstractmethod
    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        """Return exactly ``ipc`` images per class (all of them for a reference method)."""
