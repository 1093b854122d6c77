"""Representation-geometry metrics against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoharmony.eval import (
    alignment,
    class_mean_cosines,
    class_means,
    cosine_summary,
    effective_rank,
    etf_deviation,
    prior_agreement,
    uniformity,
)


def _simplex_etf(c: int, d: int, seed: int = 0) -> torch.Tensor:
    """C unit vectors in R^d with pairwise cosine -1/(C-1) (C <= d)."""
    gauss = torch.randn(d, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    u = torch.linalg.qr(gauss).Q.T  # [C, d] orthonormal rows
    return math.sqrt(c / (c - 1)) * (torch.eye(c, dtype=torch.float64) - 1.0 / c) @ u


def test_perfect_etf() -> None:
    c = 6
    etf = _simplex_etf(c, 10)
    labels = torch.arange(c).repeat(3)
    scales = torch.linspace(0.5, 3.0, len(labels), dtype=torch.float64).unsqueeze(1)
    means = class_means(etf[labels] * scales, labels, c)  # features normalised inside
    torch.testing.assert_close(means, etf)
    cos = class_mean_cosines(means)
    off = cos[~torch.eye(c, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1 / (c - 1)))
    assert etf_deviation(means) == pytest.approx(0.0, abs=1e-12)
    groups = np.array([0, 0, 1, 1, 2, 2])
    summary = cosine_summary(cos, groups)
    for key in ("mean_cos", "max_cos", "cos_many_many", "cos_many_few", "cos_medium_few"):
        assert summary[key] == pytest.approx(-1 / (c - 1))
    assert summary["min_angle_deg"] == pytest.approx(math.degrees(math.acos(-1 / (c - 1))))


def test_etf_deviation_closed_forms() -> None:
    # Centred standard basis vectors form a simplex ETF: centring matters.
    assert etf_deviation(torch.eye(4)) == pytest.approx(0.0, abs=1e-12)
    # Square (C = 4): opposite pairs cos -1, neighbours 0; target -1/3 off-diagonal.
    # ||G - G*||^2 = 4 (2/3)^2 + 8 (1/3)^2 = 24/9, ||G*||^2 = C^2/(C-1) = 48/9 -> sqrt(1/2).
    square = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert etf_deviation(square) == pytest.approx(math.sqrt(0.5))
    # Scale and rotation invariant.
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    assert etf_deviation(5 * square @ rot) == pytest.approx(math.sqrt(0.5))


def test_cosine_summary_groups_and_empty_class() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    means = class_means(feats, torch.tensor([0, 1, 2]), num_classes=4)  # class 3 empty
    assert torch.isnan(means[3]).all()
    s = cosine_summary(class_mean_cosines(means), [0, 0, 2, 1])
    # Valid pairs: (0,1) cos 0, (0,2) and (1,2) cos 1/sqrt(2).
    assert s["mean_cos"] == pytest.approx((0 + 2 * 2 / math.sqrt(2)) / 6)
    assert s["max_cos"] == pytest.approx(1 / math.sqrt(2))
    assert s["min_angle_deg"] == pytest.approx(45.0)
    assert s["cos_many_many"] == pytest.approx(0.0)
    assert s["cos_many_few"] == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(s["cos_many_medium"])  # class 3 (Medium) has no samples
    assert etf_deviation(means) >= 0


def test_alignment_and_uniformity_hand_values() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 0.0], [5.0, 0.0]])
    assert alignment(z1, z2) == pytest.approx(1.0)  # (0 + 2) / 2
    assert alignment(z1, z2, alpha=1) == pytest.approx(math.sqrt(2) / 2)
    assert uniformity(torch.tensor([[1.0, 0.0], [0.0, 3.0]])) == pytest.approx(-4.0)
    three = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])  # squared distances 4, 2, 2
    expected = math.log((math.exp(-8) + 2 * math.exp(-4)) / 3)
    assert uniformity(three) == pytest.approx(expected)
    assert uniformity(three, t=1) == pytest.approx(math.log((math.exp(-4) + 2 * math.exp(-2)) / 3))


def test_uniformity_chunked_matches_pdist() -> None:
    z = torch.randn(300, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = torch.nn.functional.normalize(z, dim=1)
    ref = torch.pdist(u).pow(2).mul(-2).exp().mean().log().item()
    assert uniformity(z, chunk_size=7) == pytest.approx(ref, rel=1e-10)


def test_effective_rank() -> None:
    assert effective_rank(torch.eye(7)) == pytest.approx(7.0)
    q = torch.linalg.qr(torch.randn(9, 9, generator=torch.Generator().manual_seed(1))).Q
    assert effective_rank(3 * q[:5]) == pytest.approx(5.0, rel=1e-5)
    assert effective_rank(torch.diag(torch.tensor([2.0, 2.0, 0.0, 0.0]))) == pytest.approx(2.0)
    assert effective_rank(torch.ones(6, 4)) == pytest.approx(1.0)
    # Two singular values 3 and 1: p = (3/4, 1/4).
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(math.exp(h))


def test_prior_agreement() -> None:
    p = [0.5, 0.3, 0.15, 0.05]
    same = prior_agreement(p, p)
    assert same["kl"] == pytest.approx(0.0, abs=1e-9)
    assert same["spearman"] == pytest.approx(1.0)
    assert same["effective_number_estimated"] == pytest.approx(same["effective_number_true"])
    assert prior_agreement([1, 1, 1, 1], p)["effective_number_estimated"] == pytest.approx(4.0)
    # Hand KL(true || est) for p = (1/2, 1/2), q = (1/4, 3/4).
    kl = prior_agreement(torch.tensor([0.25, 0.75]), [0.5, 0.5])["kl"]
    assert kl == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    reversed_rank = prior_agreement([0.1, 0.2, 0.7], [0.6, 0.3, 0.1])
    assert reversed_rank["spearman"] == pytest.approx(-1.0)
    # K != C: compared sorted and zero-padded; a permuted copy with extra empty anchors matches.
    padded = prior_agreement([0.0, 0.05, 0.5, 0.0, 0.15, 0.3], p)
    assert padded["kl"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(padded["spearman"])
    assert padded["effective_number_true"] == pytest.approx(
        math.exp(-sum(x * math.log(x) for x in p))
    )
    with pytest.raises(ValueError, match="K == C"):
        prior_agreement([0.5, 0.5], p, align="index")
