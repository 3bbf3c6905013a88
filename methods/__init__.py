"""Distillation methods: the registry, the `Distiller` interface and one file per method.

Methods that live outside this package register themselves when their modules are named in
the environment variable ``BENCH_METHOD_MODULES`` (comma-separated import paths); the
variable reaches Ray workers too, so such methods run in trials like built-in ones.
"""
import importlib
import os

from methods import d4m, dit, external, full, herding, mgd3, minimax, random  # noqa: F401  (registration side effects)
from methods.evlf import plugin as _evlf  # noqa: F401  (registers the `evlf` plug-in)
from methods.registry import METHODS, register_method, resolve_method

for _module in filter(None, (m.strip() for m in os.environ.get("BENCH_METHOD_MODULES", "").split(","))):
    importlib.import_module(_module)

__all__ = ["METHODS", "register_method", "resolve_method"]
