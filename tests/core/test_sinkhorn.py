import numpy as np
import ot
import pytest
import torch

from geoharmony.gh.sinkhorn import sinkhorn


def official_plain_sinkhorn(logits: torch.Tensor, prior: torch.Tensor, epsilon: float, iters: int):
    """The official GH code's iteration, transcribed as a test oracle (K x B layout)."""
    q = torch.exp(logits / epsilon).T
    q = q / q.sum()
    num_samples = q.shape[1]
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True)
        q = q * prior.unsqueeze(1)
        q = q / q.sum(dim=0, keepdim=True)
        q = q / num_samples
    return (q * num_samples).T


def official_scaling_sinkhorn(
    logits: torch.Tensor, prior: torch.Tensor, epsilon: float, iters: int
) -> torch.Tensor:
    """The official code's scaling form (``r = inv_K / (Q @ c); c = inv_N / (Q.T @ r)``), which
    also runs with zero prior entries (where rescaling the plan itself would divide 0 by 0)."""
    q = torch.exp(logits / epsilon).T  # K x B
    num_samples = q.shape[1]
    c = torch.full((num_samples, 1), 1.0 / num_samples, dtype=q.dtype)
    r = torch.empty(0)
    for _ in range(iters):
        r = prior.reshape(-1, 1) / (q @ c)
        c = (1.0 / num_samples) / (q.T @ r)
    return (r * q * c.T).T * num_samples


def _problem(b: int, k: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(b, k, generator=g, dtype=dtype) * 2 - 1
    prior = torch.rand(k, generator=g, dtype=dtype) + 0.1
    return logits, prior / prior.sum()


@pytest.mark.parametrize("mode", ["plain", "log"])
def test_matches_pot_at_convergence(mode: str) -> None:
    logits, prior = _problem(24, 7, seed=0)
    epsilon = 0.2
    ours = sinkhorn(logits, prior, epsilon=epsilon, num_iters=3000, mode=mode)
    b = logits.shape[0]
    oracle = (
        ot.bregman.sinkhorn_log(
            np.full(b, 1.0 / b),
            prior.numpy(),
            -logits.numpy(),
            reg=epsilon,
            numItermax=20000,
            stopThr=1e-15,
        )
        * b
    )
    np.testing.assert_allclose(ours.numpy(), oracle, atol=1e-6, rtol=0)


@pytest.mark.parametrize("iters", [1, 3, 300])
@pytest.mark.parametrize("mode", ["plain", "log"])
def test_matches_official_plain_iteration_at_every_length(mode: str, iters: int) -> None:
    logits, prior = _problem(64, 10, seed=1)
    ours = sinkhorn(logits, prior, epsilon=0.05, num_iters=iters, mode=mode)
    torch.testing.assert_close(
        ours, official_plain_sinkhorn(logits, prior, 0.05, iters), atol=1e-9, rtol=1e-9
    )


def test_marginals_and_float32_default() -> None:
    logits, prior = _problem(512, 100, seed=2, dtype=torch.float32)
    plan = sinkhorn(logits, prior)
    assert plan.dtype == torch.float32
    torch.testing.assert_close(plan.sum(1), torch.ones(512), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(0), 512 * prior, atol=1e-2, rtol=1e-3)


def test_plain_and_log_agree_in_float32() -> None:
    logits, prior = _problem(256, 50, seed=3, dtype=torch.float32)
    torch.testing.assert_close(
        sinkhorn(logits, prior, mode="plain"),
        sinkhorn(logits, prior, mode="log"),
        atol=1e-5,
        rtol=1e-4,
    )


def test_uniform_prior_is_default() -> None:
    logits, _ = _problem(32, 8, seed=4)
    torch.testing.assert_close(sinkhorn(logits), sinkhorn(logits, torch.full((8,), 1 / 8.0)))


def test_batched_views_equal_separate_calls() -> None:
    a, prior = _problem(32, 8, seed=5)
    b, _ = _problem(32, 8, seed=6)
    both = sinkhorn(torch.stack([a, b]), prior)
    torch.testing.assert_close(both[0], sinkhorn(a, prior))
    torch.testing.assert_close(both[1], sinkhorn(b, prior))


@pytest.mark.parametrize(
    ("scale", "epsilon", "b", "k", "tiny_prior"),
    [
        (1e3, 0.05, 64, 10, False),
        (1.0, 1e-4, 64, 10, False),
        (1.0, 0.05, 64, 10, True),
        (1.0, 0.05, 3, 100, False),
        (50.0, 1e-3, 2, 100, True),
    ],
)
def test_stable_under_extreme_inputs(scale, epsilon, b, k, tiny_prior) -> None:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(b, k, generator=g) * scale
    prior = torch.rand(k, generator=g)
    if tiny_prior:
        prior[: k // 2] = 1e-30
    prior = prior / prior.sum()
    plan = sinkhorn(logits, prior, epsilon=epsilon)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(1), torch.ones(b), atol=1e-4, rtol=0)


def test_zero_prior_entries_get_no_mass() -> None:
    logits, _ = _problem(40, 4, seed=8)
    prior = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    plan = sinkhorn(logits, prior)
    assert torch.isfinite(plan).all()
    assert bool((plan[:, 2:] == 0).all())  # exactly none, as the official iteration gives


@pytest.mark.parametrize("iters", [1, 3, 300])
@pytest.mark.parametrize("mode", ["plain", "log"])
def test_empty_anchors_match_the_official_iteration(mode: str, iters: int) -> None:
    # The paper's bank prior is an argmax histogram: anchors no sample votes for have share 0.
    logits, prior = _problem(64, 10, seed=3)
    prior[[1, 4, 5]] = 0.0
    prior = prior / prior.sum()
    ours = sinkhorn(torch.stack([logits, -logits]), prior, epsilon=0.05, num_iters=iters, mode=mode)
    for view, scores in enumerate((logits, -logits)):
        official = official_scaling_sinkhorn(scores, prior, 0.05, iters)
        torch.testing.assert_close(ours[view], official, atol=1e-9, rtol=1e-9)
    assert bool((ours[..., [1, 4, 5]] == 0).all())


def test_empty_anchors_leave_the_plain_iteration_in_reach() -> None:
    # Empty anchors used to enter the iteration at mass 1e-20, a range (46 nats) that forced
    # the slower log iteration; left out, the anchors in use decide, as a uniform prior would.
    logits, prior = _problem(256, 100, seed=4, dtype=torch.float32)
    prior[::5] = 0.0
    prior = prior / prior.sum()
    auto = sinkhorn(logits, prior, epsilon=0.05)
    assert torch.equal(auto, sinkhorn(logits, prior, epsilon=0.05, mode="plain"))
    assert not torch.equal(auto, sinkhorn(logits, prior, epsilon=0.05, mode="log"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_and_autocast(dtype) -> None:
    logits, prior = _problem(128, 20, seed=9, dtype=torch.float32)
    reference = sinkhorn(logits.to(dtype).float(), prior)
    direct = sinkhorn(logits.to(dtype), prior)
    with torch.autocast("cpu", dtype=dtype):
        under_autocast = sinkhorn(logits.to(dtype), prior)
    for plan in (direct, under_autocast):
        assert plan.dtype == torch.float32
        torch.testing.assert_close(plan, reference)


def test_no_gradient_flows() -> None:
    logits = torch.randn(16, 4, requires_grad=True)
    plan = sinkhorn(logits)
    assert not plan.requires_grad


def test_early_stopping_reaches_tolerance_and_saves_work() -> None:
    logits, prior = _problem(256, 20, seed=10, dtype=torch.float32)
    tol = 1e-4
    stopped = sinkhorn(logits, prior, num_iters=100000, tol=tol)
    assert (stopped.sum(0) / 256 - prior).abs().max() < 2 * tol
    # A plan stopped early differs from one run much longer, but only within the tolerance.
    long = sinkhorn(logits, prior, num_iters=5000)
    assert not torch.equal(stopped, long)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior": torch.ones(3) / 3}, "shape"),
        ({"prior": torch.ones(5)}, "sum to 1"),
        ({"prior": torch.tensor([1.5, -0.5, 0, 0, 0])}, "non-negative"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"num_iters": 0}, "num_iters"),
        ({"mode": "fast"}, "mode"),
    ],
)
def test_bad_arguments_are_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        sinkhorn(torch.zeros(4, 5), **kwargs)


def test_non_finite_logits_rejected() -> None:
    logits = torch.zeros(4, 5)
    logits[1, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        sinkhorn(logits)
