import math

import pytest
import torch

from geoharmony.gh.anchors import (
    max_pairwise_cosine,
    simplex_etf,
    structure_report,
    uniform_structure,
)


@pytest.mark.parametrize(
    ("k", "d"), [(2, 1), (3, 2), (10, 128), (100, 128), (101, 100), (129, 128)]
)
def test_simplex_etf_closed_form(k: int, d: int) -> None:
    m = simplex_etf(k, d, seed=3).double()
    assert m.shape == (k, d)
    gram = m @ m.T
    expected = (k * torch.eye(k, dtype=torch.float64) - 1.0) / (k - 1)
    torch.testing.assert_close(gram, expected, atol=1e-6, rtol=0)
    # Centred: the anchors sum to zero, as a simplex must.
    torch.testing.assert_close(m.sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-5, rtol=0)


def test_simplex_etf_seeded() -> None:
    assert torch.equal(simplex_etf(10, 16, seed=1), simplex_etf(10, 16, seed=1))
    assert not torch.allclose(simplex_etf(10, 16, seed=1), simplex_etf(10, 16, seed=2))


@pytest.mark.parametrize(("k", "d"), [(102, 100), (1, 4)])
def test_simplex_etf_rejects_impossible_sizes(k: int, d: int) -> None:
    with pytest.raises(ValueError, match=r"num_anchors|dim >= "):
        simplex_etf(k, d)


def test_uniform_structure_is_etf_when_possible() -> None:
    assert torch.equal(uniform_structure(100, 128, seed=0), simplex_etf(100, 128, seed=0))
    assert structure_report(uniform_structure(11, 10)).is_etf


def test_uniform_structure_beyond_etf_is_deterministic_and_spread() -> None:
    k, d = 200, 16
    m = uniform_structure(k, d, seed=0, steps=300)
    assert torch.equal(m, uniform_structure(k, d, seed=0, steps=300))
    torch.testing.assert_close(m.norm(dim=1), torch.ones(k))
    generator = torch.Generator().manual_seed(0)
    random_points = torch.randn(k, d, generator=generator)
    reached = max_pairwise_cosine(m)
    # Random points of this size reach cosines ~0.8; the Welch bound is a floor on |cos|.
    welch = math.sqrt((k - d) / (d * (k - 1)))
    assert reached < 0.6 * max_pairwise_cosine(random_points)
    assert reached < welch + 0.2
    report = structure_report(m)
    assert not report.is_etf
    assert report.max_cosine == pytest.approx(reached)
