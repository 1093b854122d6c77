import math

import pytest
import torch
import torch.nn.functional as F

from geoharmony.losses import focal_nt_xent, nt_xent


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Textbook SimCLR loss: cross-entropy over the masked 2B x 2B similarity matrix."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim - 1e9 * torch.eye(2 * n, dtype=z.dtype)
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, labels)


def test_nt_xent_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 12, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(nt_xent(z1, z2, 0.2), reference_nt_xent(z1, z2, 0.2))


def test_nt_xent_closed_form_on_orthogonal_views() -> None:
    # Both views identical one-hot vectors: partner cosine 1, the 2B-2 negatives cosine 0.
    b, tau = 4, 0.5
    z = torch.eye(b, 6)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (2 * b - 2)))
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)
    p = math.exp(-expected)
    focal = -((1 - p) ** 2) * math.log(p)
    assert focal_nt_xent(z, z.clone(), tau).item() == pytest.approx(focal, rel=1e-6)


def test_reductions() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(2, 10, 5, generator=g)
    per_image = nt_xent(z1, z2, reduction="none")
    assert per_image.shape == (10,)
    torch.testing.assert_close(per_image.mean(), nt_xent(z1, z2))
    torch.testing.assert_close(nt_xent(z1, z2, reduction="sum"), 2 * per_image.sum())
    with pytest.raises(ValueError, match="reduction"):
        nt_xent(z1, z2, reduction="avg")  # type: ignore[arg-type]


def test_focal_with_gamma_zero_is_nt_xent() -> None:
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(2, 10, 5, generator=g)
    torch.testing.assert_close(focal_nt_xent(z1, z2, gamma=0.0), nt_xent(z1, z2))
    assert focal_nt_xent(z1, z2) < nt_xent(z1, z2)


@pytest.mark.parametrize("loss", [nt_xent, focal_nt_xent])
def test_gradcheck(loss) -> None:
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, 0.3), (z1, z2))


def test_float32_under_bfloat16_autocast() -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(2, 16, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = nt_xent(z1, z2)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, nt_xent(z1, z2))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent(torch.zeros(4, 3), torch.zeros(5, 3))
