"""Projector head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geoharmony.models import Projector


def test_projector_shape_and_layout() -> None:
    proj = Projector(512)
    layers = list(proj.layers)
    assert [type(m) for m in layers] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
    ]
    assert isinstance(proj.layers[-1], nn.BatchNorm1d)
    assert layers[0].in_features == 512 and layers[0].out_features == 512
    assert layers[3].out_features == 128
    z = proj(torch.randn(8, 512))
    assert z.shape == (8, 128)


def test_projector_output_is_batchnormed_not_normalised() -> None:
    torch.manual_seed(0)
    proj = Projector(32, hidden_dim=64, out_dim=16).train()
    z = proj(torch.randn(256, 32) * 5 + 3)
    # Training-mode BN as the last op: zero batch mean and unit (biased) std per dimension.
    torch.testing.assert_close(z.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    # ... and no L2 normalisation of the rows.
    assert not torch.allclose(z.norm(dim=1), torch.ones(256))


@pytest.mark.parametrize("num_layers", [1, 3])
def test_projector_depth(num_layers: int) -> None:
    proj = Projector(20, hidden_dim=None, out_dim=5, num_layers=num_layers)
    linears = [m for m in proj.layers if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert all(m.bias is None for m in linears)
    assert linears[0].out_features == (20 if num_layers > 1 else 5)
    assert isinstance(proj.layers[-1], nn.BatchNorm1d)
    assert proj(torch.randn(4, 20)).shape == (4, 5)


def test_projector_seed_and_errors() -> None:
    a, b = Projector(16, 32, 8, seed=3), Projector(16, 32, 8, seed=3)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    with pytest.raises(ValueError, match="num_layers"):
        Projector(16, num_layers=0)
