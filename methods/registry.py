"""The method registry: ``@register_method("name")`` on a `Distiller` subclass.

Method specs on the command line are ``name`` or ``name[option=value,...]``; the
canonical spec (options sorted) names the leaderboard row and enters the config hash.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import BenchError
from benchmark.registry import Registry
from benchmark.spec import NamedSpec, parse_named
from methods.base import Distiller

METHODS: Registry[type[Distiller]] = Registry(
    "method", check=lambda obj: isinstance(obj, type) and issubclass(obj, Distiller)
)


def register_method(name: str):
    """Class decorator that registers a `Distiller` subclass under ``name``."""

    def deco(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        METHODS.add(name, cls)
        return cls

    return deco


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: the registered name, its options, and the built distiller."""

    spec: NamedSpec
    distiller: Distiller

    @property
    def label(self) -> str:
        if self.spec.name == "external":  # rows name external sets by their name, not their hash
            return f"external:{self.spec.options.get('name', '')}"
        return self.spec.canonical()


def resolve_method(text: str) -> MethodSpec:
    """Parse and validate a method spec; errors are one line and name the valid choices."""
    spec = parse_named(text)
    if spec.name.startswith("external:"):
        spec = NamedSpec("external", {"name": spec.name.split(":", 1)[1], **spec.options})
    base, plus, plugin = spec.name.partition("+")
    if plus:
        raise BenchError(f"unknown plug-in '{plugin}' in '{spec.name}' (no plug-ins are registered yet)")
    cls = METHODS.get(base)
    return MethodSpec(spec, cls.with_options(spec.options))
