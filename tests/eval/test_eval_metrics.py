"""Per-class accuracy, Many/Medium/Few groups and group metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoharmony.eval import FEW, MANY, MEDIUM, class_groups, group_metrics, per_class_accuracy


def _lt_counts(num_classes: int, n_max: int = 500, rho: float = 100.0) -> list[int]:
    return [int(n_max * rho ** (-c / (num_classes - 1))) for c in range(num_classes)]


def test_per_class_accuracy_hand_case() -> None:
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    pred = torch.tensor([0, 0, 1, 0, 1, 0, 0, 0, 0])
    acc = per_class_accuracy(pred, target, num_classes=4)
    assert acc.dtype == np.float64
    np.testing.assert_allclose(acc[:3], [75.0, 50.0, 0.0])
    assert math.isnan(acc[3])  # class 3 has no test sample


def test_thirds_sizes_and_order() -> None:
    counts = _lt_counts(100)
    groups = class_groups(counts, "thirds")
    assert np.bincount(groups).tolist() == [34, 33, 33]
    # Counts fall with the class index, so the groups are contiguous blocks.
    assert (groups[:34] == MANY).all() and (groups[34:67] == MEDIUM).all()
    assert (groups[67:] == FEW).all()
    assert np.bincount(class_groups(_lt_counts(10), "thirds")).tolist() == [4, 3, 3]


def test_thirds_sorts_by_count_with_stable_ties() -> None:
    counts = [5, 50, 5, 500, 50, 5, 7]
    groups = class_groups(counts, "thirds")
    # Descending order, ties by index: 3(500) 1(50) 4(50) | 6(7) 0(5) | 2(5) 5(5).
    expected = np.empty(7, dtype=np.int64)
    expected[[3, 1, 4]] = MANY
    expected[[6, 0]] = MEDIUM
    expected[[2, 5]] = FEW
    np.testing.assert_array_equal(groups, expected)


def test_thresholds_boundaries() -> None:
    groups = class_groups([101, 100, 20, 19, 1000, 0], "thresholds")
    np.testing.assert_array_equal(groups, [MANY, MEDIUM, MEDIUM, FEW, MANY, FEW])


def test_bad_rule_and_too_few_classes() -> None:
    with pytest.raises(ValueError, match="thirds, thresholds"):
        class_groups([1, 2, 3], "quartiles")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 3"):
        class_groups([1, 2], "thirds")


def test_group_metrics_hand_case() -> None:
    # 10 classes, 4/3/3; unequal group sizes separate class- from group-averaging.
    acc = np.array([60, 40, 50, 50, 40, 40, 40, 30, 20, 40], dtype=float)
    groups = class_groups(_lt_counts(10), "thirds")
    m = group_metrics(acc, groups)
    assert m["many"] == pytest.approx(50.0)
    assert m["medium"] == pytest.approx(40.0)
    assert m["few"] == pytest.approx(30.0)
    assert m["std"] == pytest.approx(math.sqrt(200 / 3))  # population std of 50/40/30
    assert m["avg"] == pytest.approx(41.0)  # mean per-class accuracy, not (50+40+30)/3
    assert m["worst"] == pytest.approx(20.0)
    assert set(m) == {"many", "medium", "few", "std", "avg", "worst"}


def test_group_metrics_empty_group_is_nan() -> None:
    groups = class_groups([500, 200, 50, 30], "thresholds")  # no Few class
    m = group_metrics([80.0, 60.0, 50.0, 30.0], groups)
    assert m["many"] == pytest.approx(70.0) and m["medium"] == pytest.approx(40.0)
    assert math.isnan(m["few"])
    assert m["std"] == pytest.approx(15.0)  # population std over the two non-empty groups


def test_group_metrics_skips_classes_without_test_samples() -> None:
    m = group_metrics([90.0, float("nan"), 70.0, 10.0], [MANY, MANY, MEDIUM, FEW])
    assert m["many"] == pytest.approx(90.0)
    assert m["avg"] == pytest.approx(170 / 3)
    assert m["worst"] == pytest.approx(10.0)
