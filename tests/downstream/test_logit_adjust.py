"""Logit-adjusted cross-entropy (Menon et al., ICLR 2021)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geoharmony.downstream import (
    LogitAdjustedLoss,
    class_prior_from_counts,
    logit_adjusted_loss,
)


def test_against_hand_computed_value() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    targets = torch.tensor([0, 2])
    prior = torch.tensor([0.5, 0.3, 0.2])
    tau = 1.5
    expected = []
    for row, t in zip(logits.tolist(), targets.tolist(), strict=True):
        adjusted = [z + tau * math.log(p) for z, p in zip(row, prior.tolist(), strict=True)]
        expected.append(-adjusted[t] + math.log(sum(math.exp(a) for a in adjusted)))
    loss = logit_adjusted_loss(logits, targets, prior, tau=tau, reduction="none")
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    mean = logit_adjusted_loss(logits, targets, prior, tau=tau)
    assert math.isclose(float(mean), sum(expected) / 2, rel_tol=1e-6)
    # The adjustment lowers the loss of a head-class target and raises that of a tail one
    # (a larger margin is demanded of rare classes).
    plain = F.cross_entropy(logits, targets, reduction="none")
    assert loss[0] < plain[0] and loss[1] > plain[1]


def test_tau_zero_and_uniform_prior_equal_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 7, generator=gen)
    targets = torch.randint(0, 7, (32,), generator=gen)
    prior = class_prior_from_counts([500, 300, 100, 50, 20, 5, 1])
    ce = F.cross_entropy(logits, targets)
    torch.testing.assert_close(logit_adjusted_loss(logits, targets, prior, tau=0.0), ce)
    uniform = torch.full((7,), 3.0)  # any positive multiple of a uniform prior
    torch.testing.assert_close(logit_adjusted_loss(logits, targets, uniform, tau=2.0), ce)
    # Scaling the prior shifts every logit equally: no effect.
    torch.testing.assert_close(
        logit_adjusted_loss(logits, targets, prior * 7.0, tau=1.0),
        logit_adjusted_loss(logits, targets, prior, tau=1.0),
    )


def test_gradient_is_adjusted_softmax_minus_one_hot() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float32, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0])
    prior = torch.tensor([0.6, 0.25, 0.1, 0.05])
    logit_adjusted_loss(logits, targets, prior, tau=1.0, reduction="sum").backward()
    expected = torch.softmax(logits.detach() + prior.log(), dim=1) - F.one_hot(targets, 4)
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, expected, rtol=1e-5, atol=1e-6)
    # Gradient check in float64 through the functional form.
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(
        lambda z: torch.log_softmax(z + prior.double().log(), 1)[range(3), targets[:3]].sum(), (x,)
    )


def test_module_matches_function_and_moves_with_to() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 5, generator=gen).bfloat16()
    targets = torch.randint(0, 5, (16,), generator=gen)
    counts = [100, 40, 10, 3, 1]
    module = LogitAdjustedLoss(torch.tensor(counts, dtype=torch.float32), tau=0.7)
    prior = class_prior_from_counts(counts)
    torch.testing.assert_close(
        module(logits, targets), logit_adjusted_loss(logits, targets, prior, tau=0.7)
    )
    assert module.to(torch.device("cpu")).offset.dtype == torch.float32
    assert "tau=0.7" in repr(module)


def test_class_prior_and_errors() -> None:
    prior = class_prior_from_counts([3, 0, 1])
    torch.testing.assert_close(prior, torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64))
    with pytest.raises(ValueError, match="non-negative"):
        class_prior_from_counts([3, -1])
    logits, targets = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="positive"):
        logit_adjusted_loss(logits, targets, torch.tensor([0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="one value per class"):
        logit_adjusted_loss(logits, targets, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"targets must be \[2\]"):
        logit_adjusted_loss(logits, torch.tensor([0]), torch.ones(3))
