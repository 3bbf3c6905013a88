"""Distillation methods: the registry, the `Distiller` interface and one file per method.

Every module of this package registers what it defines when imported, and importing the
package imports them all: a file ``methods/<name>.py`` is a method, a folder
``methods/<name>/`` with a ``plugin.py`` is a plug-in; nothing else is edited to add one.
Methods and plug-ins from other packages register the same way when their modules are named
by an entry point of the group ``evlf_bench.methods`` (a distribution's
``[project.entry-points."evlf_bench.methods"]``) or in the environment variable
``BENCH_METHOD_MODULES`` (comma-separated import paths); the variable reaches Ray workers too.
"""
import importlib
import importlib.util
import os
import pkgutil
from importlib.metadata import entry_points

from core.errors import BenchError
from methods.registry import METHODS, default_methods, register_method, resolve_method

ENTRY_POINT_GROUP = "evlf_bench.methods"
# modules of this package that define the interfaces rather than a method
_INTERFACES = frozenset({"base", "registry", "plugins"})


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg:
            if module.name not in _INTERFACES:
                importlib.import_module(f"methods.{module.name}")
        elif importlib.util.find_spec(f"methods.{module.name}.plugin") is not None:
            importlib.import_module(f"methods.{module.name}.plugin")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        _load(f"entry point '{entry.name}' ({entry.value}) of the group {ENTRY_POINT_GROUP}", entry.load)
    for name in filter(None, (m.strip() for m in os.environ.get("BENCH_METHOD_MODULES", "").split(","))):
        _load(f"module '{name}' named in BENCH_METHOD_MODULES", lambda name=name: importlib.import_module(name))


def _load(what: str, load) -> None:
    """Import a third-party module of methods; a broken one is a one-line error, not a traceback."""
    try:
        load()
    except Exception as exc:  # noqa: BLE001 - whatever the module raises, the user must see which one
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise BenchError(f"cannot load the {what}: {type(exc).__name__}: {message}") from None


_discover()

__all__ = ["ENTRY_POINT_GROUP", "METHODS", "default_methods", "register_method", "resolve_method"]
