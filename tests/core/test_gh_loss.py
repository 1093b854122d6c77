import numpy as np
import pytest
import torch

from geoharmony.gh import GHLoss, gh_diagnostics, swapped_cross_entropy
from geoharmony.gh.anchors import simplex_etf
from geoharmony.gh.loss import prior_weights
from geoharmony.gh.options import AllocationOptions
from geoharmony.gh.sinkhorn import sinkhorn


def _hand_gh(z1, z2, m, prior, eps, gamma):
    """GH with one Sinkhorn iteration, written out in numpy."""

    def logits(z):
        raw = z @ m.T
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)

    def one_step_plan(t):
        kernel = np.exp(t / eps)
        kernel = kernel * (prior / kernel.sum(axis=0))
        return kernel / kernel.sum(axis=1, keepdims=True)

    def log_softmax(t):
        s = t / gamma
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))

    t1, t2 = logits(z1), logits(z2)
    q1, q2 = one_step_plan(t1), one_step_plan(t2)
    return -(q1 * log_softmax(t2)).sum(1).mean() - (q2 * log_softmax(t1)).sum(1).mean()


def test_matches_hand_computation() -> None:
    m = simplex_etf(3, 2, seed=0).double()
    z1 = torch.tensor([[1.0, 0.2], [-0.3, 0.9]], dtype=torch.float64)
    z2 = torch.tensor([[0.8, -0.1], [-0.5, 0.7]], dtype=torch.float64)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    loss = GHLoss(m, temperature=0.1, allocation=AllocationOptions(epsilon=0.5, iterations=1))
    expected = _hand_gh(z1.numpy(), z2.numpy(), m.numpy(), prior.numpy(), 0.5, 0.1)
    assert loss(z1, z2, prior).item() == pytest.approx(expected, rel=1e-6)


def test_gradcheck_with_frozen_targets() -> None:
    # The targets are a no-grad function of z, so finite differences of the full loss would see
    # them move; the gradient GH defines is that of the loss with the targets held fixed.
    g = torch.Generator().manual_seed(0)
    m = simplex_etf(5, 6, seed=1)
    z1 = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    loss_fn = GHLoss(m, allocation=AllocationOptions(epsilon=0.1, iterations=50))
    out = loss_fn.compute(z1, z2)
    assert not out.targets1.requires_grad and not out.targets2.requires_grad

    def frozen(a, b):
        return swapped_cross_entropy(
            loss_fn.logits(a), loss_fn.logits(b), out.targets1, out.targets2, 0.1
        )

    assert torch.autograd.gradcheck(frozen, (z1, z2))
    for a, b in zip(
        torch.autograd.grad(out.loss, (z1, z2)),
        torch.autograd.grad(frozen(z1, z2), (z1, z2)),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    # The targets are the plan of both views' logits, solved in one batched call.
    q = sinkhorn(torch.stack([out.logits1, out.logits2]), epsilon=0.1, num_iters=50)
    torch.testing.assert_close(out.targets1, q[0])
    torch.testing.assert_close(out.targets2, q[1])


def test_cosine_logits_option() -> None:
    m = simplex_etf(4, 8, seed=0)
    z = torch.randn(3, 8)
    cos = GHLoss(m, logits="cosine").logits(z)
    expected = torch.nn.functional.normalize(z, dim=1) @ m.T
    torch.testing.assert_close(cos, expected)
    proj = GHLoss(m).logits(z)
    torch.testing.assert_close(proj.norm(dim=1), torch.ones(3))


def test_uniform_prior_default_and_structure_is_buffer() -> None:
    m = simplex_etf(4, 8, seed=0)
    loss_fn = GHLoss(m)
    assert "structure" in dict(loss_fn.named_buffers())
    assert not list(loss_fn.parameters())
    z1, z2 = torch.randn(2, 10, 8)
    torch.testing.assert_close(loss_fn(z1, z2), loss_fn(z1, z2, torch.full((4,), 0.25)))


def test_bfloat16_autocast_keeps_float32_math() -> None:
    m = simplex_etf(10, 16, seed=0)
    loss_fn = GHLoss(m)
    z1, z2 = torch.randn(2, 32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss_fn(z1, z2)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss_fn(z1, z2))


def test_diagnostics_ranges() -> None:
    m = simplex_etf(10, 16, seed=0)
    loss_fn = GHLoss(m)
    out = loss_fn.compute(*torch.randn(2, 64, 16))
    stats = gh_diagnostics(out, loss_fn.temperature)
    assert 0 <= stats["assignment_entropy"] <= np.log(10) + 1e-6
    # Uniform prior: the surrogate mass is spread over all anchors.
    assert stats["target_effective_anchors"] == pytest.approx(10, rel=1e-3)
    assert 1 <= stats["prediction_effective_anchors"] <= 10
    assert 0.1 <= stats["prediction_confidence"] <= 1


def test_argument_errors() -> None:
    m = simplex_etf(4, 8)
    with pytest.raises(ValueError, match="structure"):
        GHLoss(torch.zeros(8))
    with pytest.raises(ValueError, match="logits"):
        GHLoss(m, logits="dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[B, 8\]"):
        GHLoss(m)(torch.zeros(3, 7), torch.zeros(3, 7))


def test_given_targets_replace_the_sinkhorn_plan() -> None:
    g = torch.Generator().manual_seed(3)
    m = simplex_etf(4, 8, seed=0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    loss = GHLoss(m, temperature=0.2)
    given = torch.nn.functional.one_hot(torch.tensor([0, 3, 3, 1, 2]), 4).float()
    out = loss.compute(z1, z2, targets=given)
    assert torch.equal(out.targets1, given) and torch.equal(out.targets2, given)
    expected = swapped_cross_entropy(out.logits1, out.logits2, given, given, 0.2)
    torch.testing.assert_close(out.loss, expected)
    # ... and they are not what Sinkhorn would have chosen for these embeddings.
    assert not torch.allclose(loss.compute(z1, z2).loss, out.loss)
    with pytest.raises(ValueError, match="targets"):
        loss.compute(z1, z2, targets=given[:, :3])


def test_prior_weights_are_class_balanced_under_the_true_shares() -> None:
    """Three images of a class with share 0.75 and one of share 0.25: raw weights 4/3 and 4,
    scaled to mean 1: each class's images then weigh 2 in all, as in a class-balanced loss."""
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    weights = prior_weights(targets, torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(weights, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    # A uniform prior (None) weighs full rows alike; a row without mass (partial's dummy) gets 0.
    soft = torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(prior_weights(soft, None), torch.tensor([1.5, 1.5, 0.0]))
    with pytest.raises(ValueError, match=r"prior must be \[K\] = \[2\]"):
        prior_weights(targets, torch.ones(3) / 3)


def test_inverse_prior_weighting_weighs_each_term_by_its_targets() -> None:
    torch.manual_seed(0)
    m = simplex_etf(3, 4, seed=0).double()
    z1, z2 = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    prior = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    given = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2, 0]), 3).double()
    plain = GHLoss(m, temperature=0.2)
    weighted = GHLoss(m, temperature=0.2, target_weighting="inverse_prior")
    t1, t2 = plain.logits(z1), plain.logits(z2)
    w = prior_weights(given, prior)
    log_q1, log_q2 = (torch.log_softmax(t / 0.2, dim=1) for t in (t1, t2))
    expected = -(w * (given * log_q2).sum(1)).mean() - (w * (given * log_q1).sum(1)).mean()
    got = weighted.compute(z1, z2, prior, targets=given).loss
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain.compute(z1, z2, prior, targets=given).loss)
    # Under a uniform prior every full row weighs 1: the paper's loss, Sinkhorn targets too.
    torch.testing.assert_close(weighted(z1, z2), plain(z1, z2))
    with pytest.raises(ValueError, match="target_weighting must be one of none, inverse_prior"):
        GHLoss(m, target_weighting="balanced")
