"""Plug-ins: modifications that compose with any diffusion method by replacing its one hook.

``X+P`` on the command line is method ``X`` with plug-in ``P``. A plug-in may replace the
shared diffusion context's ``encode_real`` (the hook through which every diffusion method
reaches real-image latents) and nothing else: it returns a context whose hook differs, and
the base method's code runs unchanged. Plug-ins compose left to right (``X+P+Q``).

A plug-in registers with ``@register_plugin("name")``. It may name default option values for
particular base methods (``method_defaults``), for methods whose plain variant never calls the
hook unless asked to (``dit`` adapts its denoiser on hook latents only when told to).
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from core.registry import Registry

if TYPE_CHECKING:
    from core.datasets.base import Dataset
    from methods.base import DistillContext
    from methods.diffusion.context import DiffusionContext


@dataclasses.dataclass(frozen=True)
class NoPluginOptions:
    """A plug-in without options."""


class Plugin(ABC):
    """Replaces the ``encode_real`` hook of a diffusion method's context.

    Subclasses set ``Options`` to a frozen dataclass (faithful defaults) and implement
    :meth:`wrap`. :meth:`prepare` trains what the plug-in needs (cached by the plug-in) before
    trials start; :meth:`wrap` must then only load it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoPluginOptions
    # base method name -> option values (strings, as on the command line) the plug-in implies
    method_defaults: ClassVar[dict[str, dict[str, str]]] = {}

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    def config(self) -> dict[str, Any]:
        """Everything that changes what the replaced hook returns."""
        return {"plugin": self.name, "options": dataclasses.asdict(self.options)}

    def prepare(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> None:
        """Train or load what the hook needs, once per grid, in the driver."""

    @abstractmethod
    def wrap(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> DiffusionContext:
        """A context like ``dctx`` whose ``encode_real`` (and ``hook_id``) are this plug-in's."""


PLUGINS: Registry[type[Plugin]] = Registry(
    "plug-in", check=lambda obj: isinstance(obj, type) and issubclass(obj, Plugin))


def register_plugin(name: str):
    """Class decorator that registers a `Plugin` subclass under ``name``."""
    return PLUGINS.named(name)
