"""Search spaces of tunable options, declared as data by methods and plug-ins.

A method (or plug-in) lists in ``tunable`` the options a fair tuning may change and the range
each may take, e.g. ``{"guidance": Range(1.0, 6.0)}``; `bench tune` searches exactly that space
for every method with the same number of trials. Values leave a space as the text a user would
type in a spec (`core.options.normal_text`), so a tuned choice is an ordinary set of options.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.options import normal_text


@dataclass(frozen=True)
class Range:
    """A number in [low, high]; ``log`` samples its logarithm uniformly, ``integer`` rounds it."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"a range needs low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")

    def domain(self) -> Any:
        """The Ray Tune domain of this range."""
        from ray import tune

        if self.integer:
            return tune.lograndint(int(self.low), int(self.high) + 1) if self.log else \
                tune.randint(int(self.low), int(self.high) + 1)
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)

    def text(self, value: Any) -> str:
        """A drawn value as option text: integers exact, floats to 4 significant digits (a
        search cannot tell 2.31415 from 2.314, and the row name stays readable)."""
        if self.integer:
            return str(int(round(value)))
        return normal_text(float(f"{float(value):.4g}"))

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high and math.isfinite(value)

    def describe(self) -> str:
        kind = "integer " if self.integer else ""
        return f"{kind}[{normal_text(self.low)}, {normal_text(self.high)}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    """One of a few values (written as option text)."""

    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ValueError("a choice needs at least two values")

    def domain(self) -> Any:
        from ray import tune

        return tune.choice(list(self.values))

    def text(self, value: Any) -> str:
        return str(value)

    def describe(self) -> str:
        return "{" + ", ".join(self.values) + "}"


Space = Range | Choice


def describe_space(space: dict[str, Space]) -> dict[str, str]:
    """``{"guidance": "[1, 6]"}``: a space as text, for the study's record and the pages."""
    return {name: dim.describe() for name, dim in sorted(space.items())}
