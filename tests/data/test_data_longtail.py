from __future__ import annotations

import itertools

import numpy as np
import pytest

from geoharmony.data.longtail import (
    PROFILES,
    balanced_indices,
    class_counts,
    exponential_counts,
    longtail_indices,
    profile_counts,
    seeded_class_order,
)


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    # Interleaved so that class members are not contiguous.
    return np.tile(np.arange(num_classes, dtype=np.int64), per_class)


@pytest.mark.parametrize(("rho", "total"), [(100, 10_847), (50, 12_608), (10, 19_573)])
def test_cifar100_lt_totals(rho: float, total: int) -> None:
    counts = exponential_counts(100, 500, rho)
    assert sum(counts) == total
    assert counts[0] == 500
    assert counts[-1] == int(500 / rho)
    assert all(a >= b for a, b in itertools.pairwise(counts))


def test_exponential_counts_formula() -> None:
    # C = 3, rho = 4: 100 * 4^0, 100 * 4^-0.5, 100 * 4^-1.
    assert exponential_counts(3, 100, 4) == [100, 50, 25]
    assert exponential_counts(5, 7, 1) == [7] * 5
    assert exponential_counts(1, 9, 100) == [9]
    with pytest.raises(ValueError, match="imbalance_ratio"):
        exponential_counts(10, 100, 0.5)


def test_profiles() -> None:
    assert sum(profile_counts("ldam", 100, 500, 100)) == 10_847
    sdclr = profile_counts("sdclr", 100, 500, 100)
    assert sdclr[0] == 450
    assert sum(sdclr) == 9_754  # SDCLR/BCL CIFAR-100-LT split size
    assert profile_counts("ldam", 10, 5000, 100)[0] == 5000
    assert set(PROFILES) == {"ldam", "sdclr"}
    with pytest.raises(ValueError, match=r"unknown long-tail profile 'bogus'.*ldam.*sdclr"):
        profile_counts("bogus", 100, 500, 100)


def test_longtail_indices_counts_and_determinism() -> None:
    labels = balanced_labels(10, 50)
    counts = exponential_counts(10, 50, 10)
    idx = longtail_indices(labels, counts, seed=3)
    assert idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
    assert class_counts(labels[idx], 10) == counts
    np.testing.assert_array_equal(idx, longtail_indices(labels, counts, seed=3))
    assert not np.array_equal(idx, longtail_indices(labels, counts, seed=4))


def test_longtail_indices_class_order() -> None:
    labels = balanced_labels(10, 50)
    counts = exponential_counts(10, 50, 10)
    order = seeded_class_order(10, seed=7)
    assert sorted(order) == list(range(10))
    assert order != list(range(10))  # this seed gives a non-trivial permutation
    assert order == seeded_class_order(10, seed=7)
    idx = longtail_indices(labels, counts, seed=0, class_order=order)
    got = class_counts(labels[idx], 10)
    for rank, cls in enumerate(order):
        assert got[cls] == counts[rank]


def test_longtail_splits_are_nested_across_ratios() -> None:
    labels = balanced_labels(5, 40)
    small = set(longtail_indices(labels, exponential_counts(5, 40, 20), seed=1).tolist())
    large = set(longtail_indices(labels, exponential_counts(5, 40, 2), seed=1).tolist())
    assert small < large


def test_longtail_indices_errors() -> None:
    labels = balanced_labels(4, 10)
    with pytest.raises(ValueError, match=r"class 0: 11 > 10"):
        longtail_indices(labels, [11, 5, 5, 5], seed=0)
    with pytest.raises(ValueError, match="permutation"):
        longtail_indices(labels, [5, 5, 5, 5], seed=0, class_order=[0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        longtail_indices(labels, [5, 5, 5], seed=0)
    with pytest.raises(ValueError, match="1-D integer"):
        longtail_indices(labels.astype(float), [5, 5, 5, 5], seed=0)


def test_balanced_indices() -> None:
    labels = balanced_labels(4, 30)
    assert len(balanced_indices(labels, None, seed=0)) == 120
    idx = balanced_indices(labels, 10, seed=0)
    assert class_counts(labels[idx], 4) == [10, 10, 10, 10]
    np.testing.assert_array_equal(idx, balanced_indices(labels, 10, seed=0))
    assert not np.array_equal(idx, balanced_indices(labels, 10, seed=1))

    pretrain = longtail_indices(labels, [25, 20, 15, 10], seed=0)
    probe = balanced_indices(labels, 5, seed=0, exclude=pretrain)
    assert not set(probe.tolist()) & set(pretrain.tolist())
    assert class_counts(labels[probe], 4) == [5, 5, 5, 5]
    rest = balanced_indices(labels, None, seed=0, exclude=pretrain)
    assert len(rest) == 120 - 70
    with pytest.raises(ValueError, match="class 0 has 5 selectable images, fewer than shots=6"):
        balanced_indices(labels, 6, seed=0, exclude=pretrain)


def test_class_counts() -> None:
    assert class_counts(np.array([0, 2, 2, 3]), 5) == [1, 0, 2, 1, 0]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        class_counts(np.array([0, 3]), 3)
