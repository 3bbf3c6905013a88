"""Grid files: a grid is a TOML file under `grids/` (or any path), read with `tomllib`.

A grid file holds the fields of a `GridRequest` and a one-line description::

    description = "minimax and minimax+evlf at IPC 10 and 50"
    methods = ["minimax", "minimax+evlf"]     # required: one method spec per entry
    datasets = ["fashion-mnist"]               # default: fashion-mnist
    ipc = [10, 50]                             # default: 1, 10, 50
    archs = ["convnet3"]                       # default: convnet3
    protocol = "dc"                            # default: dc
    budget = "quick"                           # default: quick
    seeds = 3                                  # N (seeds 0..N-1) or a list; default: the budget's
    references = true                          # add the reference and base rows (default true)

A string may name an environment variable as ``${NAME}`` (a data root, a class file); an unset
one is refused in one line. Every value goes through the same parsers as the flags of
`bench run`, so a grid file and a command line cannot mean different things.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.grid.plan import GridRequest
from core.errors import BenchError
from core.spec import MAX_SEED, parse_int, parse_named_list, parse_positive_ints, parse_seeds, split_top_level

SUFFIX = ".toml"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# the keys of a grid file and the type each must have in TOML
_KEYS: dict[str, tuple[type, ...]] = {"description": (str,), "methods": (list,), "datasets": (list,),
                                      "ipc": (list,), "archs": (list,), "protocol": (str,), "budget": (str,),
                                      "seeds": (int, list), "references": (bool,)}


@dataclass(frozen=True)
class GridFile:
    """One grid file, read and checked: its name (the file's stem), where it is, what it says it
    is for and the request it makes."""

    name: str
    path: Path
    description: str
    request: GridRequest


def grids_dir() -> Path:
    """The folder of named grids: ``$BENCH_GRIDS``, else `grids/` at the root of the checkout."""
    chosen = os.environ.get("BENCH_GRIDS")
    return Path(chosen).expanduser() if chosen else Path(__file__).resolve().parents[2] / "grids"


def grid_paths() -> list[Path]:
    """The named grids, sorted by name."""
    folder = grids_dir()
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def find_grid(name_or_path: str) -> Path:
    """The file of a named grid, or the path itself when it names a file."""
    text = name_or_path.strip()
    if not text:
        raise BenchError("--grid is empty; name a grid (`bench list grids`) or give a .toml file")
    path = Path(text).expanduser()
    if text.endswith(SUFFIX) or os.sep in text:
        if not path.is_file():
            raise BenchError(f"grid file {path} does not exist")
        return path
    named = {p.stem: p for p in grid_paths()}
    if text not in named:
        raise BenchError(f"unknown grid '{text}' (valid: {', '.join(named) or 'none'} in {grids_dir()}; "
                         "or give a path to a .toml file)")
    return named[text]


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read grid file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"grid file {path} is not valid TOML: {exc}") from None


def load_grid(name_or_path: str, replaced: Iterable[str] = ()) -> GridFile:
    """Read and check a grid file; every fault is one `BenchError` line naming the file. The keys
    in ``replaced`` (those the command line gives) are checked for type only and keep their defaults."""
    path = find_grid(name_or_path)
    try:
        return GridFile(path.stem, path, *_checked(_read(path), frozenset(replaced)))
    except BenchError as exc:
        raise BenchError(f"grid file {path}: {exc}") from None


def grid_descriptions() -> list[tuple[str, str]]:
    """(name, description) of every named grid, for `bench list grids`: read, not expanded (a
    paper-scale grid's data root may be unset on this machine)."""
    out = []
    for path in grid_paths():
        description = _read(path).get("description")
        if not isinstance(description, str) or not description.strip():
            raise BenchError(f"grid file {path}: 'description' is missing; say in one line what the grid is for")
        out.append((path.stem, description.strip()))
    return out


def parse_methods(texts: Iterable[str]) -> tuple[str, ...]:
    """Method specs, canonical (options sorted); each text may hold a comma list."""
    return tuple(spec.canonical() for text in texts for spec in parse_named_list(text))


def parse_datasets(texts: Iterable[str]) -> tuple[str, ...]:
    from core.datasets import canonical_dataset

    return tuple(canonical_dataset(part) for text in texts for part in split_top_level(text))


def parse_archs(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(spec.name for text in texts for spec in parse_named_list(text))


def parse_ipcs(texts: Iterable[str], what: str = "--ipc") -> tuple[int, ...]:
    return tuple(ipc for text in texts for ipc in parse_positive_ints(text, what))


def _expanded(value: Any) -> Any:
    """``value`` with every ``${NAME}`` replaced by the environment's value (lists element-wise)."""
    if isinstance(value, list):
        return [_expanded(v) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if not os.environ.get(name):
            raise BenchError(f"'{value}' names ${{{name}}}, which is not set; set {name} first")
        return os.environ[name]

    return _VARIABLE.sub(lookup, value)


def _strings(key: str, values: list) -> list[str]:
    if not values:
        raise BenchError(f"'{key}' is an empty list; give at least one value or leave '{key}' out")
    if not all(isinstance(v, str) for v in values):
        raise BenchError(f"'{key}' must be a list of strings")
    return values


def _integers(key: str, values: list) -> list[int]:
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise BenchError(f"'{key}' must be a non-empty list of integers")
    return values


def _checked(table: dict[str, Any], replaced: frozenset[str] = frozenset()) -> tuple[str, GridRequest]:
    """The description and the request of a parsed grid file."""
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise BenchError(f"unknown key '{unknown[0]}' (valid: {', '.join(_KEYS)})")
    for key, types in _KEYS.items():
        if key in table and (not isinstance(table[key], types) or (bool not in types and isinstance(table[key], bool))):
            raise BenchError(f"'{key}' must be {' or '.join(t.__name__ for t in types)}, "
                             f"got {type(table[key]).__name__}")
    for key in ("description", "methods"):
        if key not in table:
            raise BenchError(f"'{key}' is missing")
    if not table["description"].strip():
        raise BenchError("'description' is empty; say in one line what the grid is for")
    t = {k: _expanded(v) for k, v in table.items() if k not in replaced or k in ("description", "methods")}
    default = GridRequest(methods=())
    seeds = t.get("seeds")
    if isinstance(seeds, list):  # explicit seeds, even a list of one
        seeds = tuple(sorted({parse_int(str(s), "a seed of 'seeds'", 0, MAX_SEED) for s in _integers("seeds", seeds)}))
    elif seeds is not None:  # N: seeds 0..N-1
        seeds = parse_seeds(str(seeds), "'seeds'")
    request = GridRequest(
        methods=parse_methods(_strings("methods", t["methods"])),
        datasets=parse_datasets(_strings("datasets", t["datasets"])) if "datasets" in t else default.datasets,
        ipcs=parse_ipcs([",".join(map(str, _integers("ipc", t["ipc"])))], "'ipc'") if "ipc" in t else default.ipcs,
        archs=parse_archs(_strings("archs", t["archs"])) if "archs" in t else default.archs,
        protocol=t.get("protocol", default.protocol),
        budget=t.get("budget", default.budget),
        seeds=seeds,
        references=t.get("references", default.references),
    )
    return t["description"].strip(), request
