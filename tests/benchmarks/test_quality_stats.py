"""The report's statistics (benchmarks/quality/stats.py): mean and sd, t statistics, critical
values from scipy at the real degrees of freedom, and the Fieller-type share tests."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import formatting, stats  # noqa: E402


def test_critical_t_is_scipys_quantile_at_the_degrees_of_freedom() -> None:
    assert stats.critical_t(6) == student_t.ppf(0.975, 6)
    for df in (2, 3, 5, 9, 30):
        assert stats.critical_t(df) == student_t.ppf(0.975, df)
        assert stats.critical_t(df, sides=1) == student_t.ppf(0.95, df)
        assert stats.critical_t(df, level=0.01) == student_t.ppf(0.995, df)


def test_critical_value_notes_give_the_values_once_typed_in() -> None:
    # The notes under the paired and regime tables once typed these values in by hand; from
    # scipy at df = n - 1 they come out the same to the two decimals shown.
    assert formatting.critical_t_list((4, 6, 8, 10), "pairs") == (
        "3.18 with 4 pairs, 2.57 with 6, 2.36 with 8, 2.26 with 10"
    )
    assert (
        formatting.critical_t_list((3, 4, 7), "runs")
        == "4.30 with 3 runs, 3.18 with 4, 2.45 with 7"
    )


def test_reduction_beyond_noise_is_a_one_sided_test_at_the_pairs_degrees_of_freedom() -> None:
    edge = student_t.ppf(0.05, 3)  # 4 pairs: -2.35
    assert stats.reduction_beyond_noise(edge - 0.01, 4)
    assert not stats.reduction_beyond_noise(edge + 0.01, 4)
    # With 8 pairs (df 7, edge -1.89) the same t is beyond noise.
    assert stats.reduction_beyond_noise(edge + 0.01, 8)
    assert not stats.reduction_beyond_noise(math.nan, 8)


def test_deficit_t_is_the_cells_one_sample_t() -> None:
    cell = {"deficit_few_mean": 3.0, "deficit_few_sd": 1.0, "runs": 4}
    assert stats.deficit_t(cell) == pytest.approx(6.0)
    assert math.isnan(stats.deficit_t({**cell, "runs": 2}))


def test_correlation_is_pearsons() -> None:
    assert stats.correlation([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) == pytest.approx(
        float(np.corrcoef([1.0, 2.0, 3.0], [2.0, 4.0, 6.5])[0, 1])
    )
    assert stats.correlation([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_mean_sd_is_sample_sd_and_drops_nan() -> None:
    m, s = stats.mean_sd([1.0, 2.0, 3.0, math.nan])
    assert m == 2.0 and s == pytest.approx(1.0)
    m, s = stats.mean_sd([5.0])
    assert m == 5.0 and math.isnan(s)
    assert all(math.isnan(v) for v in stats.mean_sd([]))


def test_paired_t_needs_three_pairs_and_spread() -> None:
    assert math.isnan(stats.paired_t(-0.7, 0.02, 2))  # one degree of freedom: not judged
    assert math.isnan(stats.paired_t(-0.1, 1e-15, 4))  # a tie at the probe's resolution
    assert stats.paired_t(-1.0, 1.0, 4) == pytest.approx(-2.0)


def test_share_bound_is_the_largest_share_the_paired_test_keeps() -> None:
    def lower_bound(d: np.ndarray, b: np.ndarray, share: float) -> float:
        x = d + share * b  # > 0 rules out "closes at least `share`"
        return x.mean() - student_t.ppf(0.95, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)

    rng = np.random.default_rng(0)
    bounded = 0
    for _ in range(200):
        n = int(rng.integers(3, 9))
        b = rng.normal(rng.uniform(0.5, 6.0), rng.uniform(0.1, 3.0), n)
        d = rng.normal(rng.uniform(-3.0, 1.0), rng.uniform(0.1, 2.0), n) + 0.3 * (b - b.mean())
        for share in (0.0, 0.5, 1.0):
            ruled_out = stats.share_ruled_out(list(d), list(b), share)
            assert ruled_out == (lower_bound(d, b, share) > 0)
        bound = stats.largest_share_closed(list(d), list(b))
        if math.isnan(bound):  # the baselines' deficit is within noise: no share is ruled out
            assert b.mean() <= 0 or lower_bound(d, b, 1e4) <= 0
            continue
        bounded += 1
        assert lower_bound(d, b, bound) == pytest.approx(0.0, abs=1e-9)
        assert lower_bound(d, b, bound + 1e-3) > 0
        assert all(lower_bound(d, b, s) <= 1e-12 for s in np.linspace(bound - 20, bound, 200))
    assert bounded > 100
    assert math.isnan(stats.largest_share_closed([-1.0, -2.0], [4.0, 5.0]))  # 2 pairs
