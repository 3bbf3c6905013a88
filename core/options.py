"""Options written on the command line (``name[key=value,...]``) turned into typed values.

Methods, plug-ins and data sets declare their options with types (dataclass fields or a
loader's signature); this is the one conversion from the strings a user typed to those types.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from core.errors import BenchError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def base_type(kind: Any) -> Any:
    """``"float | None"`` (a postponed annotation) or ``float | None`` -> ``float``; others pass through."""
    if isinstance(kind, str):
        parts = [p.strip() for p in kind.split("|") if p.strip() != "None"]
        return parts[0] if len(parts) == 1 else kind
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def convert(text: str, kind: Any, what: str) -> Any:
    """``text`` as a value of ``kind`` (bool, int, float or str); ``what`` names the option in errors,
    e.g. ``"option 'size' of dataset 'imagewoof'"``."""
    kind = base_type(kind)
    try:
        if kind in (bool, "bool"):
            lowered = text.lower()
            if lowered in TRUE:
                return True
            if lowered in FALSE:
                return False
            raise ValueError(text)
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            value = float(text)
            if not math.isfinite(value):
                raise BenchError(f"{what} must be a finite number, got '{text}'")
            return value
        return text
    except ValueError:
        type_name = getattr(kind, "__name__", str(kind))
        hint = " (1 or 0)" if type_name == "bool" else ""
        raise BenchError(f"{what} must be {type_name}{hint}, got '{text}'") from None


def normal_text(value: Any) -> str:
    """How a typed option value is written in a row name, one way per value: ``1_000``, ``01000``
    and ``1000`` are one name and one run hash; so are ``4`` and ``4.0`` for a float option."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    return str(value)


# Numeric options count steps, sizes, weights, rates and scales. None may be negative, and none
# needs to exceed this: a larger value (a typo, a digit too many) would train for weeks or never
# fit in memory, and is refused before anything runs.
MAX_OPTION = 1_000_000


def check_in_range(values: dict[str, Any], what: str) -> None:
    """Every numeric option in [0, MAX_OPTION]."""
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < 0:
                raise BenchError(f"option '{key}' of {what} must not be negative, got {normal_text(value)}")
            if value > MAX_OPTION:
                raise BenchError(f"option '{key}' of {what} must be at most {MAX_OPTION:,}, got {normal_text(value)}")


def option_names(options_type: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(options_type))


def parse_options(owner: str, options_type: type, raw: dict[str, str], kind: str = "method") -> Any:
    """Turn ``{"strength": "0.5"}`` into an options dataclass, refusing unknown names and bad values.

    A dataclass may check its values in ``__post_init__`` by raising ValueError; that becomes
    a one-line BenchError too.
    """
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "none"
        raise BenchError(f"{kind} '{owner}' has no option '{unknown[0]}' (its options: {valid})")
    values = {k: convert(v, fields[k].type, f"option '{k}' of {kind} '{owner}'") for k, v in raw.items()}
    check_in_range(values, f"{kind} '{owner}'")
    try:
        return options_type(**values)
    except ValueError as exc:
        raise BenchError(f"{kind} '{owner}': {exc}") from None


def fill_unset(options: Any, preset: dict[str, Any], missing_hint: str) -> Any:
    """``options`` (a frozen dataclass) with every field left ``None`` taken from ``preset``; a
    field that neither sets is refused with ``missing_hint``, formatted with ``{fields}`` and
    ``{first}`` (the unset names)."""
    values = {f.name: preset.get(f.name) for f in dataclasses.fields(options) if getattr(options, f.name) is None}
    missing = sorted(k for k, v in values.items() if v is None)
    if missing:
        raise BenchError(missing_hint.format(fields=", ".join(missing), first=missing[0]))
    return dataclasses.replace(options, **values)
