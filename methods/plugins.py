"""Plug-ins: modifications that compose with any diffusion method by replacing its one hook.

``X+P`` on the command line is method ``X`` with plug-in ``P``. A plug-in may replace the
shared diffusion context's ``encode_real`` (the hook through which every diffusion method
reaches real-image latents) and nothing else: it returns a context whose hook differs, and
the base method's code runs unchanged. Plug-ins compose left to right (``X+P+Q``).

A plug-in registers with ``@register_plugin("name")`` and describes itself: its options, how a
variant pairs with its base on the leaderboard (:meth:`Plugin.base_spec`), and the diagnostics
of what it trained as rows of (name, value, unit) and curves (:meth:`Plugin.diagnostics`), which
``bench show`` prints as they come.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.options import option_names
from core.registry import Registry
from core.search_space import Space
from core.spec import NamedSpec

if TYPE_CHECKING:
    from core.datasets.base import Dataset
    from core.stages import SharedStage
    from methods.distill_context import DistillContext
    from methods.diffusion.context import DiffusionContext


@dataclasses.dataclass(frozen=True)
class NoPluginOptions:
    """A plug-in without options."""


@dataclass(frozen=True)
class Diagnostic:
    """One figure of a plug-in's diagnostics, e.g. ("class retrieval, fused", 0.953, "")."""

    name: str
    value: float | int | str
    unit: str = ""


@dataclass
class Diagnostics:
    """What a plug-in reports about what it trained: figures, curves over training steps, and
    the raw record (for ``--json``)."""

    rows: list[Diagnostic]
    steps: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class PluginReport:
    """A plug-in of a method spec as ``bench show`` prints it: its status and, once trained, its diagnostics."""

    plugin: str
    status: str  # "trained", "not trained yet", "no diagnostics", or why it cannot tell
    diagnostics: Diagnostics | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"plugin": self.plugin, "status": self.status}
        if self.diagnostics is not None:
            d = self.diagnostics
            rows = [dataclasses.asdict(r) for r in d.rows]
            out |= {**d.record, "rows": rows, "curve_steps": d.steps, "curves": d.curves}
        return out


class Plugin(ABC):
    """Replaces the ``encode_real`` hook of a diffusion method's context.

    Subclasses set ``Options`` to a frozen dataclass (faithful defaults) and implement
    :meth:`wrap`. :meth:`prepare` trains what the plug-in needs (cached by the plug-in) before
    trials start; :meth:`wrap` must then only load it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoPluginOptions
    needs_text_encoder: ClassVar[bool] = False  # reads class prompts: the backbone must load a text encoder
    tunable: ClassVar[dict[str, Space]] = {}  # options a fair tuning may change, and their ranges

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    def config(self) -> dict[str, Any]:
        """Everything that changes what the replaced hook returns."""
        return {"plugin": self.name, "options": dataclasses.asdict(self.options)}

    @classmethod
    def base_spec(cls, variant: NamedSpec) -> NamedSpec:
        """The spec a variant is compared with on the leaderboard: ``X+P[o]`` without this plug-in
        (the last one) and without its options."""
        mine = set(option_names(cls.Options))
        name = variant.name.rsplit("+", 1)[0]
        return NamedSpec(name, {k: v for k, v in variant.options.items() if k not in mine})

    def prepare(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> None:
        """Train or load what the hook needs, once per grid, in the driver."""

    @abstractmethod
    def wrap(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> DiffusionContext:
        """A context like ``dctx`` whose ``encode_real`` (and ``hook_id``) are this plug-in's."""

    def shared_stage(self, dctx: DiffusionContext | None, data: Dataset) -> SharedStage | None:
        """What :meth:`prepare` builds, for `bench plan` to count (``dctx`` None: what it is
        built from is not built yet, so neither is it); None: nothing."""
        return None

    def diagnostics(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> Diagnostics | None:
        """What the trained hook is judged by, read from the cache (never trains); None if not trained."""
        return None


PLUGINS: Registry[type[Plugin]] = Registry(
    "plug-in", check=lambda obj: isinstance(obj, type) and issubclass(obj, Plugin))


def register_plugin(name: str):
    """Class decorator that registers a `Plugin` subclass under ``name``."""
    return PLUGINS.named(name)
