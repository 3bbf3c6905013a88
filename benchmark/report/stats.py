"""Statistics for leaderboard cells: mean, sample std and 95% t interval, and Welch's t-test between two cells."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class CellStats:
    """Summary of one cell's values (one per student seed)."""

    mean: float
    std: float  # sample std (ddof=1); 0.0 for a single value
    n: int
    ci95: float  # half-width of the 95% t interval; nan for fewer than two values


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var


def summarize(values: Sequence[float]) -> CellStats:
    """Mean, sample std, n and 95% CI half-width ``t_{0.975, n-1} * std / sqrt(n)``."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    mean, var = _mean_var(values)
    std = math.sqrt(var)
    ci95 = float(_scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else math.nan
    return CellStats(mean=mean, std=std, n=n, ci95=ci95)


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Welch t-test of mean(a) == mean(b): returns (t, p).

    Degrees of freedom by Welch-Satterthwaite. Fewer than two values on either side gives
    (nan, nan); two constant samples give (nan, nan) if equal and (+-inf, 0.0) otherwise.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan, math.nan
    mean_a, var_a = _mean_var(a)
    mean_b, var_b = _mean_var(b)
    sa, sb = var_a / na, var_b / nb
    se2 = sa + sb
    diff = mean_a - mean_b
    if se2 == 0.0:
        if diff == 0.0:
            return math.nan, math.nan
        return math.copysign(math.inf, diff), 0.0
    t = diff / math.sqrt(se2)
    df = se2**2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
    p = 2.0 * float(_scipy_stats.t.sf(abs(t), df))
    return t, min(p, 1.0)
