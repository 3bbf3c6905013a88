"""Data sets of the harness: ``load_dataset("fashion-mnist[root=DIR]")`` resolves a spec through the
registry, checks and converts its options, and memoises the result per process."""
from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

from core.datasets import cifar10, digits, fashion_mnist, imagefolder  # noqa: F401  (they register)
from core.datasets.base import DATASETS, Dataset, Split
from core.errors import BenchError
from core.options import base_type, convert, normal_text
from core.spec import NamedSpec, parse_named

__all__ = ["Dataset", "Split", "DATASETS", "load_dataset", "canonical_dataset", "dataset_names", "clear_cache"]

_IMAGEFOLDER_PREFIX = "imagefolder:"
# The path may hold characters parse_named refuses (spaces, ~); only a trailing [...] is options.
_IMAGEFOLDER_SPEC = re.compile(r"^imagefolder:(?P<path>.*?)\s*(?P<opts>\[[^\[\]]*\])?\s*$", re.DOTALL)

_MEMO: dict[tuple, Dataset] = {}


def dataset_names() -> list[str]:
    """The registered data set names, sorted (``imagefolder`` takes a path: ``imagefolder:DIR``)."""
    return DATASETS.names()


def clear_cache() -> None:
    """Forget the memoised data sets (tests use it to force a fresh load)."""
    _MEMO.clear()


def _split_spec(spec: str) -> tuple[str, dict[str, str]]:
    text = spec.strip()
    if not text.startswith(_IMAGEFOLDER_PREFIX):
        parsed = parse_named(text)
        return parsed.name, dict(parsed.options)
    m = _IMAGEFOLDER_SPEC.match(text)
    path = m.group("path").strip() if m else ""
    if not m or not path:
        raise BenchError(f"cannot parse '{spec}': expected imagefolder:DIR or imagefolder:DIR[size=N]")
    options = dict(parse_named("imagefolder" + (m.group("opts") or "")).options)
    if "root" in options:
        raise BenchError(f"'{spec}' gives the directory twice; use imagefolder:DIR or imagefolder[root=DIR]")
    options["root"] = path
    return "imagefolder", options


def _convert(dataset: str, key: str, raw: str, hint: object) -> object:
    """Turn the option string into the type the loader's signature declares; sizes and counts
    (every integer option of a loader) must be positive."""
    if raw == "":
        raise BenchError(f"dataset '{dataset}': option {key} is empty; write {key}=VALUE")
    value = convert(raw, hint, f"option '{key}' of dataset '{dataset}'")
    if base_type(hint) is int and value <= 0:
        raise BenchError(f"option '{key}' of dataset '{dataset}' must be a positive integer, got '{raw}'")
    return value


def _options(dataset: str, loader: typing.Callable[..., Dataset], raw: dict[str, str]) -> dict[str, object]:
    params = {
        n: p for n, p in inspect.signature(loader).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    unknown = sorted(set(raw) - set(params))
    if unknown:
        valid = ", ".join(params) if params else "none"
        raise BenchError(f"dataset '{dataset}' has no option '{unknown[0]}' (valid options: {valid})")
    hints = typing.get_type_hints(loader)
    converted = {}
    for key, value in raw.items():
        converted[key] = _convert(dataset, key, value, hints.get(key, str))
    return converted


def _parsed(spec: str) -> tuple[str, typing.Callable[..., Dataset], dict[str, object]]:
    """(name, loader, typed options) of a data set spec; refuses unknown names and bad options."""
    name, raw = _split_spec(spec)
    loader = DATASETS.get(name)
    return name, loader, _options(name, loader, raw)


PATH_OPTIONS = frozenset({"root", "classes"})  # options that name a file or directory


def canonical_dataset(spec: str) -> str:
    """``spec`` as a row names it: options typed and written one way each (``size=0256`` is
    ``size=256``), sorted, and paths made absolute, because a trial runs in another working
    directory. Refuses what `load_dataset` would refuse about the options, in one line."""
    name, loader, options = _parsed(spec)
    written = {k: str(Path(str(v)).expanduser().resolve()) if k in PATH_OPTIONS else normal_text(v)
               for k, v in sorted(options.items())}
    if name == "imagefolder" and "root" in written:
        root = written.pop("root")
        rest = ",".join(f"{k}={v}" for k, v in written.items())
        return f"{_IMAGEFOLDER_PREFIX}{root}" + (f"[{rest}]" if rest else "")
    return NamedSpec(name, written).canonical()


def load_dataset(spec: str) -> Dataset:
    """The data set named by ``spec`` (``name`` or ``name[key=value,...]`` or ``imagefolder:DIR``).

    The same spec (options in any order) returns the same object within a process; callers must
    treat its tensors as read-only.
    """
    name, loader, options = _parsed(spec)
    key = (name, tuple(sorted(options.items())))
    if key not in _MEMO:
        _MEMO[key] = loader(**options)
    return _MEMO[key]
