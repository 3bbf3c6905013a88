"""Tests for cell statistics against numbers computed by hand."""
from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from benchmark.report.stats import CellStats, summarize, welch_t_test


def t_pdf(x: float, df: float) -> float:
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return c * (1 + x * x / df) ** (-(df + 1) / 2)


def two_sided_p_by_simpson(t: float, df: float, steps: int = 2000) -> float:
    # p = 1 - 2 * integral_0^|t| of the t density; independent of scipy.
    h = abs(t) / steps
    s = t_pdf(0, df) + t_pdf(abs(t), df)
    s += sum((4 if i % 2 else 2) * t_pdf(i * h, df) for i in range(1, steps))
    return 1 - 2 * (s * h / 3)


def test_summarize_hand_computed() -> None:
    s = summarize([1, 2, 3, 4])
    assert s.mean == 2.5 and s.n == 4
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # 1.2910
    assert s.std == pytest.approx(1.2910, abs=1e-4)
    assert s.ci95 == pytest.approx(3.1824 * 1.2910 / 2, abs=1e-3)  # t_{0.975,3} = 3.1824


def test_summarize_single_value() -> None:
    s = summarize([74.3])
    assert (s.mean, s.std, s.n) == (74.3, 0.0, 1)
    assert math.isnan(s.ci95)


def test_summarize_two_values() -> None:
    s = summarize([70.0, 72.0])
    assert s.std == pytest.approx(math.sqrt(2))
    assert s.ci95 == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), abs=1e-3)  # t_{0.975,1}


def test_summarize_empty_refused() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_cellstats_is_frozen() -> None:
    s = CellStats(1.0, 0.0, 1, math.nan)
    with pytest.raises(AttributeError):
        s.mean = 2.0  # type: ignore[misc]


def test_welch_closed_form_df2() -> None:
    # a=[1,3], b=[4,6]: means 2 and 5, variances 2 and 2, se^2 = 2/2 + 2/2 = 2 -> t = -3/sqrt(2);
    # df = 2^2 / (1^2/1 + 1^2/1) = 2, where the t CDF has a closed form: p = 1 - |t| / sqrt(2 + t^2).
    t, p = welch_t_test([1, 3], [4, 6])
    assert t == pytest.approx(-3 / math.sqrt(2))
    assert p == pytest.approx(1 - (3 / math.sqrt(2)) / math.sqrt(2 + 4.5))  # 0.16795
    assert p == pytest.approx(0.16795, abs=1e-5)


def test_welch_unequal_sizes_and_variances_by_hand() -> None:
    a, b = [1, 2, 3, 4], [2, 4, 6, 8, 10]
    # mean_a 2.5, var_a 5/3; mean_b 6, var_b 10
    sa, sb = (5 / 3) / 4, 10 / 5
    t_hand = (2.5 - 6) / math.sqrt(sa + sb)  # -2.2514
    df_hand = (sa + sb) ** 2 / (sa**2 / 3 + sb**2 / 4)  # 5.52
    t, p = welch_t_test(a, b)
    assert t == pytest.approx(t_hand) and t == pytest.approx(-2.2514, abs=1e-4)
    assert p == pytest.approx(two_sided_p_by_simpson(t_hand, df_hand), abs=1e-7)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue))
    # symmetric in the sign of the difference
    t2, p2 = welch_t_test(b, a)
    assert t2 == pytest.approx(-t) and p2 == pytest.approx(p)


def test_welch_degenerate_cases() -> None:
    assert all(math.isnan(x) for x in welch_t_test([1.0], [1.0, 2.0]))
    assert all(math.isnan(x) for x in welch_t_test([1.0, 2.0], []))
    assert all(math.isnan(x) for x in welch_t_test([5.0, 5.0], [5.0, 5.0, 5.0]))
    t, p = welch_t_test([6.0, 6.0], [5.0, 5.0])
    assert t == math.inf and p == 0.0
