"""Distillation methods: the registry, the `Distiller` interface and one file per method.

Every module of this package registers what it defines when imported, and importing the
package imports them all, by one rule (`discover_folder`): a name starting with ``_`` or ``.``
is machinery and skipped; every other ``<name>.py`` is imported; a folder is imported through
its ``plugin.py`` when it has one (a plug-in; ``__init__.py`` optional), else as a package when
it has ``__init__.py``; a folder of Python files with neither is refused in one line, never
skipped. Modules that define no method (``base``, ``registry``) register nothing. Nothing else
is edited to add a method or a plug-in.
Methods and plug-ins from other packages register the same way when their modules are named
by an entry point of the group ``evlf_bench.methods`` (a distribution's
``[project.entry-points."evlf_bench.methods"]``) or in the environment variable
``BENCH_METHOD_MODULES`` (comma-separated import paths); the variable reaches Ray workers too.
"""
import importlib
import os
from importlib.metadata import entry_points
from pathlib import Path

from core.errors import BenchError
from methods.registry import METHODS, register_method, resolve_method

ENTRY_POINT_GROUP = "evlf_bench.methods"


def discover_folder(folder: Path, package: str) -> list[str]:
    """Import the methods and plug-ins of ``folder``, the folder of the package ``package``, by
    the rule of this module's docstring; returns the modules imported, in order."""
    imported: list[str] = []
    for entry in sorted(Path(folder).iterdir()):
        name = entry.stem if entry.is_file() else entry.name
        if entry.name.startswith(("_", ".")) or (entry.is_file() and entry.suffix != ".py"):
            continue
        if not entry.is_file() and not entry.is_dir():
            continue
        if not name.isidentifier():
            raise BenchError(f"{entry}: '{name}' is not a Python module name; rename it (e.g. "
                             f"'{name.replace('-', '_')}'), or start it with '_' if it is not a method")
        if entry.is_file():
            module = f"{package}.{name}"
        elif (entry / "plugin.py").is_file():
            module = f"{package}.{name}.plugin"
        elif (entry / "__init__.py").is_file():
            module = f"{package}.{name}"
        elif any(entry.glob("*.py")):
            raise BenchError(f"{entry} holds Python files but neither plugin.py (a plug-in) nor __init__.py "
                             "(a package); add one, or start the folder's name with '_' if it is not a method")
        else:
            continue
        importlib.import_module(module)
        imported.append(module)
    return imported


def _discover() -> None:
    discover_folder(Path(__file__).parent, __name__)
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

__all__ = ["ENTRY_POINT_GROUP", "METHODS", "discover_folder", "register_method", "resolve_method"]
