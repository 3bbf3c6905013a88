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
        if not eq and key.strip() in FLAGS:
            options[key.strip()] = ""
            continue
        if not eq or not key.strip():
            raise SpecError(f"option '{item}' in '{text}' is not key=value")
        options[key.strip()] = value.strip()
    return NamedSpec(name, options)


def parse_named_list(text: str) -> list[NamedSpec]:
    specs = [parse_named(p) for p in split_top_level(text)]
    if not specs:
        raise SpecError("empty list")
    return specs


def parse_positive_ints(text: str, what: str) -> list[int]:
    """Parse ``1,10,50`` into positive integers, refusing anything else."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise SpecError(f"{what} must be positive integers separated by commas, got '{text}'")
        values.append(int(part))
    return sorted(set(values))
