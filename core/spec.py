"""Parsing of command-line specs: ``name[key=value,...]`` entries and comma lists of integers."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.errors import SpecError

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.:/+\-]+)\s*(?:\[(.*)\])?\s*$")
# Options written without a value: ``d4m[tuned]`` (the method with its stored tuned choice).
FLAGS = frozenset({"tuned"})


@dataclass(frozen=True)
class NamedSpec:
    """A registry name with options, e.g. ``d4m[strength=0.5]``."""

    name: str
    options: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> str:
        """The spec written back with sorted options: a stable row name."""
        if not self.options:
            return self.name
        body = ",".join(k if k in FLAGS and v == "" else f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}[{body}]"


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ']' in '{text}'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise SpecError(f"unbalanced '[' in '{text}'")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_named(text: str) -> NamedSpec:
    """Parse one ``name[key=value,...]`` entry."""
    m = _SPEC.match(text)
    if not m:
        raise SpecError(f"cannot parse '{text}': expected name or name[key=value,...]")
    name, body = m.group(1), m.group(2)
    options: dict[str, str] = {}
    for item in split_top_level(body or ""):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key in options:
            raise SpecError(f"option '{key}' is given twice in '{text}'; give it once")
        if not eq and key in FLAGS:
            options[key] = ""
            continue
        if not eq or not key:
            raise SpecError(f"option '{item}' in '{text}' is not key=value")
        options[key] = value.strip()
    return NamedSpec(name, options)


def parse_named_list(text: str) -> list[NamedSpec]:
    specs = [parse_named(p) for p in split_top_level(text)]
    if not specs:
        raise SpecError("empty list")
    return specs


_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also takes '²' and '٣'
MAX_COUNT = 1_000_000  # images per class, and the like: far above any data set's class size
MAX_SEED = 2**32 - 1  # what NumPy's and Python's seeding accept everywhere
MAX_SEEDS = 1_000  # seeds in one cell


def parse_int(text: str, what: str, low: int, high: int) -> int:
    """One integer of ASCII digits in [low, high] (``what`` names it in the error)."""
    text = text.strip()
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise SpecError(f"{what} must be an integer from {low} to {high:,}, got '{text}'")
    return int(text)


def parse_positive_ints(text: str, what: str, high: int = MAX_COUNT) -> list[int]:
    """Parse ``1,10,50`` into positive integers (at most ``high``), refusing anything else."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not _DIGITS.fullmatch(part) or not 0 < int(part) <= high:
            raise SpecError(f"{what} must be positive integers (at most {high:,}) separated by commas, got '{text}'")
        values.append(int(part))
    return sorted(set(values))


def parse_seeds(text: str, what: str = "--seeds") -> tuple[int, ...]:
    """``3`` means seeds 0, 1, 2; ``0,4,7`` lists seeds explicitly."""
    text = text.strip()
    if _DIGITS.fullmatch(text):
        if not 0 < int(text) <= MAX_SEEDS:
            raise SpecError(f"{what} N runs seeds 0..N-1 and needs 1 <= N <= {MAX_SEEDS}; to list seeds use commas, "
                            "e.g. --seeds 0,3")
        return tuple(range(int(text)))
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(_DIGITS.fullmatch(p) for p in parts):
        raise SpecError(f"{what} must be a positive number of seeds or a comma list of seeds, got '{text}'")
    return tuple(sorted({parse_int(p, f"a seed of {what}", 0, MAX_SEED) for p in parts}))
