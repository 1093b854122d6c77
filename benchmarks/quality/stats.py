"""The statistics of the quality report: mean and sd, t statistics, critical values and the
Fieller-type share tests.

Every critical value is a quantile of Student's t (:data:`scipy.stats.t`) at the sample's own
degrees of freedom; none is typed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.stats import t as student_t

__all__ = [
    "LEVEL",
    "MIN_PAIRS_FOR_T",
    "correlation",
    "critical_t",
    "deficit_t",
    "largest_share_closed",
    "mean_sd",
    "paired_t",
    "reduction_beyond_noise",
    "share_ruled_out",
]

# The significance level of every test the report makes (one- or two-sided).
LEVEL = 0.05
# Fewest pairs (or runs) a t statistic is judged from: one degree of freedom is too wild.
MIN_PAIRS_FOR_T = 3
# An sd below this is a tie at the probes' resolution, not a spread to divide by.
_NO_SPREAD = 1e-9


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than 2 values), NaNs dropped."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def critical_t(df: int, level: float = LEVEL, sides: int = 2) -> float:
    """Critical |t| of a ``sides``-sided t-test at ``level`` with ``df`` degrees of freedom: the
    ``1 - level / sides`` quantile of Student's t (``critical_t(6)`` = t.ppf(0.975, 6))."""
    return float(student_t.ppf(1 - level / sides, df))


def paired_t(mean: float, sd: float, pairs: int) -> float:
    """Paired t statistic mean / (sd / sqrt(pairs)); NaN below ``MIN_PAIRS_FOR_T`` pairs (one
    degree of freedom gives wild values: two pairs that tie to the probe's 0.1-point resolution
    give sd ~ 0) or without spread."""
    if pairs < MIN_PAIRS_FOR_T or not sd > _NO_SPREAD:
        return math.nan
    return mean / (sd / math.sqrt(pairs))


def deficit_t(cell: dict[str, Any]) -> float:
    """How far a cell's Few deficit stands out of its spread: mean / (sd / sqrt(runs)), a
    one-sample t over the cell's runs (each run's deficit is already taken against its own
    seed's reference; runs of one seed share that reference, so they are not independent)."""
    return paired_t(cell["deficit_few_mean"], cell["deficit_few_sd"], cell["runs"])


def reduction_beyond_noise(t: float, pairs: int, level: float = LEVEL) -> bool:
    """One-sided paired t-test of a reduction: is ``t`` (over ``pairs`` pairs) below the lower
    ``level`` quantile of Student's t with ``pairs - 1`` degrees of freedom? False without a t."""
    return not math.isnan(t) and bool(t < student_t.ppf(level, pairs - 1))


def correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of paired samples."""
    return float(np.corrcoef(x, y)[0, 1])


def _share_test(changes: Sequence[float], baselines: Sequence[float], confidence: float) -> Any:
    """Means, covariance and k^2 = t^2 / n of the paired (change, baseline deficit) samples."""
    d = np.asarray(changes, dtype=np.float64)
    b = np.asarray(baselines, dtype=np.float64)
    k2 = float(student_t.ppf(confidence, d.size - 1)) ** 2 / d.size
    cov = np.cov(np.stack([d, b]), ddof=1)
    return float(d.mean()), float(b.mean()), cov, k2


def share_ruled_out(
    changes: Sequence[float],
    baselines: Sequence[float],
    share: float,
    confidence: float = 1 - LEVEL,
) -> bool:
    """Do paired runs rule out that +GH closes at least ``share`` of its baseline's Few deficit?

    ``changes[i]`` = +GH minus baseline Few deficit of pair i, ``baselines[i]`` = that
    baseline's own deficit. "Closes at least s" says the +GH deficit is at most (1 - s) times
    the baseline's: mean(x) <= 0 with x_i = changes[i] + s * baselines[i]. A one-sided t-test
    rules it out when mean(x) - t * se(x) > 0. The paired x_i carry the noise of both deficits
    and their correlation (a Fieller-type test)."""
    mean_d, mean_b, cov, k2 = _share_test(changes, baselines, confidence)
    mean_x = mean_d + share * mean_b
    var_x = cov[0, 0] + 2 * share * cov[0, 1] + share**2 * cov[1, 1]
    return bool(mean_x > 0 and mean_x**2 > k2 * var_x)


def largest_share_closed(
    changes: Sequence[float], baselines: Sequence[float], confidence: float = 1 - LEVEL
) -> float:
    """The largest share s that :func:`share_ruled_out` does not rule out: a one-sided upper
    confidence bound on the share of the baseline's Few deficit that +GH closes.

    With m(s) = mean(x(s)) increasing in s, the bound is the upper root of m(s)^2 = k^2
    var(x(s)), k = t / sqrt(n), a quadratic a s^2 + 2 h s + c. The shares not ruled out form an
    interval (-inf, bound] only when the baselines' mean deficit is itself beyond noise
    (a > 0); otherwise they reach to infinity (Fieller's unbounded case) and there is no
    bound to give: NaN, as below ``MIN_PAIRS_FOR_T`` pairs or for a baseline deficit <= 0.
    """
    if len(changes) < MIN_PAIRS_FOR_T:
        return math.nan
    mean_d, mean_b, cov, k2 = _share_test(changes, baselines, confidence)
    a = mean_b**2 - k2 * cov[1, 1]
    if not mean_b > 0 or a <= 0:
        return math.nan
    h = mean_d * mean_b - k2 * cov[0, 1]
    c = mean_d**2 - k2 * cov[0, 0]
    # m(s) = 0 at s0 = -mean_d / mean_b, where the quadratic is <= 0: its roots are real.
    return float((-h + math.sqrt(max(h**2 - a * c, 0.0))) / a)
