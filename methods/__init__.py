"""Distillation methods: the registry, the `Distiller` interface and one file per method."""
from methods import full, herding, random  # noqa: F401  (registration side effects)
from methods.registry import METHODS, register_method, resolve_method

__all__ = ["METHODS", "register_method", "resolve_method"]
