"""The unlabeled report on features of known geometry."""

from __future__ import annotations

import math

import pytest
import torch

from geoharmony.eval.unlabeled import feature_statistics, knn_cluster_summary, unlabeled_report


def _two_groups(sizes: tuple[int, int], dim: int = 8, spread: float = 1e-3) -> torch.Tensor:
    """Rows near e_0 (``sizes[0]`` of them) and near e_1 (``sizes[1]``), slightly jittered."""
    gen = torch.Generator().manual_seed(0)
    rows = []
    for axis, n in enumerate(sizes):
        centre = torch.zeros(dim)
        centre[axis] = 1.0
        rows.append(centre + spread * torch.randn(n, dim, generator=gen))
    return torch.cat(rows)


def test_feature_statistics_closed_forms() -> None:
    # Orthonormal rows: effective rank D, unit norms, every pair orthogonal.
    stats = feature_statistics(torch.eye(6))
    assert stats["effective_rank"] == pytest.approx(6.0)
    assert (stats["norm_mean"], stats["norm_std"]) == pytest.approx((1.0, 0.0))
    assert stats["mean_cosine"] == pytest.approx(0.0, abs=1e-12)
    # Collapsed features: one direction, constant dimensions are dead.
    collapsed = torch.zeros(5, 4)
    collapsed[:, 0] = torch.arange(1.0, 6.0)
    stats = feature_statistics(collapsed)
    assert stats["effective_rank"] == pytest.approx(1.0)
    assert stats["mean_cosine"] == pytest.approx(1.0)
    assert stats["dead_dims"] == 3


def test_knn_cluster_summary_finds_the_groups_and_their_imbalance() -> None:
    features = _two_groups((30, 6))
    summary = knn_cluster_summary(features, clusters=2, neighbours=5, seed=0)
    assert summary["sizes"] == [30, 6] and summary["imbalance_ratio"] == pytest.approx(5.0)
    shares = torch.tensor([30 / 36, 6 / 36], dtype=torch.float64)
    assert summary["effective_clusters"] == pytest.approx(math.exp(-(shares * shares.log()).sum()))
    # Every image's 5 nearest neighbours lie in its own group.
    assert summary["neighbour_agreement"] == 1.0
    assert summary["neighbour_agreement_per_cluster"] == [1.0, 1.0]
    assert summary["neighbour_cosine"] > 0.99


def test_unlabeled_report_samples_large_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    import geoharmony.eval.unlabeled as unlabeled

    monkeypatch.setattr(unlabeled, "MAX_SUMMARY_IMAGES", 20)
    report = unlabeled_report(_two_groups((40, 10)), clusters=3, neighbours=4, seed=1)
    assert report["features"]["images"] == 50 and report["clusters"]["sampled_images"] == 20
    assert sum(report["clusters"]["sizes"]) == 20 and report["clusters"]["clusters"] == 3
    with pytest.raises(ValueError, match="two or more images"):
        unlabeled_report(torch.ones(1, 3), clusters=2, neighbours=2, seed=0)
