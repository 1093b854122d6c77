import itertools
import math
import warnings

import numpy as np
import ot
import pytest
import torch

from geoharmony.gh.allocation import partial, partial_mass, relaxed
from geoharmony.gh.sinkhorn import sinkhorn

INF = float("inf")


def _problem(b: int, k: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(b, k, generator=g, dtype=dtype) * 2 - 1
    prior = torch.rand(k, generator=g, dtype=dtype) + 0.1
    return logits, prior / prior.sum()


def pot_semi_relaxed(logits, prior, epsilon: float, tau: float, reg_type: str) -> np.ndarray:
    """POT's unbalanced solver, rows exact (reg_m inf) and columns KL-relaxed, times B."""
    b = logits.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reg_type="entropy" warns that it overrides c
        plan = ot.unbalanced.sinkhorn_unbalanced(
            np.full(b, 1.0 / b),
            prior.numpy(),
            -logits.numpy(),
            reg=epsilon,
            reg_m=(INF, tau),
            reg_type=reg_type,
            numItermax=100000,
            stopThr=1e-15,
        )
    return plan * b


# --- relaxed -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "log"])
@pytest.mark.parametrize(("epsilon", "tau", "iters"), [(0.2, 0.5, 3000), (0.05, 2.0, 3000)])
def test_relaxed_matches_pot_entropy_form(mode, epsilon, tau, iters) -> None:
    # POT >= 0.9.5 defaults to reg_type="kl", the regulariser KL(Q || a b^T), whose kernel is
    # exp(-M / reg) * a_i * b_j. Ours is exp(t / epsilon) alone, the regulariser -H(Q) =
    # sum Q (log Q - 1): that is reg_type="entropy" (POT sets c to the ones matrix).
    logits, prior = _problem(24, 7, seed=0)
    ours = relaxed(logits, prior, tau=tau, epsilon=epsilon, num_iters=iters, mode=mode)
    oracle = pot_semi_relaxed(logits, prior, epsilon, tau, "entropy")
    np.testing.assert_allclose(ours.numpy(), oracle, atol=1e-10, rtol=0)


def test_pot_kl_form_is_the_prior_weighted_kernel() -> None:
    # Why the pin matters: POT's "kl" form is a different problem, ours with the kernel
    # multiplied by the prior (the row factor a_i is absorbed by the exact rows).
    logits, prior = _problem(24, 7, seed=0)
    epsilon, tau = 0.2, 0.5
    kl_form = pot_semi_relaxed(logits, prior, epsilon, tau, "kl")
    ours = relaxed(logits, prior, tau=tau, epsilon=epsilon, num_iters=3000)
    assert np.abs(ours.numpy() - kl_form).max() > 1e-2
    shifted = relaxed(
        logits + epsilon * prior.log(), prior, tau=tau, epsilon=epsilon, num_iters=3000
    )
    np.testing.assert_allclose(shifted.numpy(), kl_form, atol=1e-10, rtol=0)


def test_relaxed_infinite_tau_is_the_balanced_solver() -> None:
    logits, prior = _problem(64, 10, seed=1)
    for mode in ("plain", "log"):
        assert torch.equal(
            relaxed(logits, prior, tau=INF, mode=mode), sinkhorn(logits, prior, mode=mode)
        )


@pytest.mark.parametrize("mode", ["plain", "log"])
def test_relaxed_large_tau_approaches_balanced(mode) -> None:
    logits, prior = _problem(64, 10, seed=1)
    balanced = sinkhorn(logits, prior, num_iters=2000, mode=mode)
    gaps = [
        float((relaxed(logits, prior, tau=tau, num_iters=2000, mode=mode) - balanced).abs().max())
        for tau in (1.0, 1e2, 1e5)
    ]
    assert gaps[0] > 1e-2  # a moderate tau really relaxes the marginal
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-5


@pytest.mark.parametrize("mode", ["plain", "log"])
def test_relaxed_small_tau_is_the_row_softmax(mode) -> None:
    logits, _ = _problem(64, 10, seed=2)
    prior = torch.linspace(1, 50, 10, dtype=torch.float64)  # strongly non-uniform: ignored
    prior = prior / prior.sum()
    softmax = torch.softmax(logits / 0.05, dim=-1)
    plan = relaxed(logits, prior, tau=1e-7, mode=mode)
    torch.testing.assert_close(plan, softmax, atol=1e-5, rtol=0)
    assert float((relaxed(logits, prior, tau=0.5, mode=mode) - softmax).abs().max()) > 1e-2


@pytest.mark.parametrize("iters", [1, 3, 300])
def test_relaxed_plain_and_log_iterates_agree(iters) -> None:
    logits, prior = _problem(48, 9, seed=3)
    torch.testing.assert_close(
        relaxed(logits, prior, num_iters=iters, mode="plain"),
        relaxed(logits, prior, num_iters=iters, mode="log"),
        atol=1e-12,
        rtol=0,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relaxed_rows_sum_to_one_in_dtype(dtype) -> None:
    logits, prior = _problem(512, 100, seed=4, dtype=dtype)
    plan = relaxed(logits, prior)
    assert plan.dtype == dtype
    torch.testing.assert_close(plan.sum(-1), torch.ones(512, dtype=dtype), atol=1e-5, rtol=0)
    # The anchor masses are pulled towards the prior but not onto it.
    masses = plan.sum(0) / 512
    softmax_masses = torch.softmax(logits / 0.05, dim=-1).mean(0)
    assert float((masses - prior).abs().sum()) < float((softmax_masses - prior).abs().sum())


def test_relaxed_float32_matches_float64() -> None:
    logits, prior = _problem(256, 50, seed=5)
    torch.testing.assert_close(
        relaxed(logits.float(), prior.float()).double(), relaxed(logits, prior), atol=2e-5, rtol=0
    )


@pytest.mark.parametrize("scale", [1e3, 30.0])
def test_relaxed_extreme_logits_take_the_log_domain(scale) -> None:
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(64, 10, generator=g) * scale
    prior = torch.rand(10, generator=g)
    prior[:5] = 1e-30
    prior = prior / prior.sum()
    plan = relaxed(logits, prior, epsilon=1e-3)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(-1), torch.ones(64), atol=1e-4, rtol=0)
    assert torch.equal(plan, relaxed(logits, prior, epsilon=1e-3, mode="log"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_relaxed_under_autocast_is_float32(dtype) -> None:
    logits, prior = _problem(128, 20, seed=7, dtype=torch.float32)
    reference = relaxed(logits.to(dtype).float(), prior)
    with torch.autocast("cpu", dtype=dtype):
        under_autocast = relaxed(logits.to(dtype), prior)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference)


def test_relaxed_batched_views_equal_separate_calls() -> None:
    a, prior = _problem(32, 8, seed=8)
    b, _ = _problem(32, 8, seed=9)
    both = relaxed(torch.stack([a, b]), prior, tau=0.3)
    torch.testing.assert_close(both[0], relaxed(a, prior, tau=0.3), atol=1e-14, rtol=0)
    torch.testing.assert_close(both[1], relaxed(b, prior, tau=0.3), atol=1e-14, rtol=0)


def test_relaxed_early_stopping_is_within_the_step_bound() -> None:
    logits, prior = _problem(256, 20, seed=10)
    tau, epsilon, tol = 0.5, 0.05, 1e-7
    stopped = relaxed(logits, prior, tau=tau, num_iters=100000, tol=tol)
    converged = relaxed(logits, prior, tau=tau, num_iters=5000)
    assert not torch.equal(stopped, converged)  # it did stop early
    # A step of at most tol bounds the distance by about tol / (1 - rate), rate <= tau/(tau+eps).
    bound = tol / (1 - tau / (tau + epsilon))
    gap = float((stopped.sum(0) - converged.sum(0)).abs().max()) / 256
    assert gap < bound
    looser = relaxed(logits, prior, tau=tau, num_iters=100000, tol=1e-3)
    assert float((looser.sum(0) - converged.sum(0)).abs().max()) / 256 > gap


def test_relaxed_no_gradient() -> None:
    logits = torch.randn(16, 4, requires_grad=True)
    assert not relaxed(logits).requires_grad


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_relaxed_bad_tau_is_named(tau) -> None:
    with pytest.raises(ValueError, match="tau"):
        relaxed(torch.zeros(4, 5), tau=tau)


# --- partial -------------------------------------------------------------------------------


def dummy_scores(logits: torch.Tensor, temperature: float | None) -> torch.Tensor:
    if temperature is None:
        return torch.zeros(logits.shape[:-1], dtype=logits.dtype)
    return temperature * torch.logsumexp(logits / temperature, dim=-1)


def reference_partial(logits, prior, rho, tau, epsilon, temperature=0.1, iters=20000):
    """The augmented problem by P2OT's generalised Sinkhorn in numpy float64, written directly:
    rows first from v = 1, the K real columns' scalings raised to tau / (tau + epsilon), the
    dummy column's exact. Ends on a row update (rows exact, as ours). Returns (plan, mass)."""
    t = logits.numpy()
    scores = np.concatenate([t, dummy_scores(logits, temperature).numpy()[:, None]], axis=1)
    b, k = t.shape
    kernel = np.exp((scores - scores.max()) / epsilon)
    row_target = np.full(b, 1.0 / b)
    col_target = np.append(rho * prior.numpy(), 1.0 - rho)
    power = np.append(np.full(k, tau / (tau + epsilon)), 1.0)
    v = np.ones(k + 1)
    for _ in range(iters):
        u = row_target / (kernel @ v)
        v_next = (col_target / (kernel.T @ u)) ** power
        done = np.abs(v_next / v - 1).max() < 1e-15
        v = v_next
        if done:
            break
    u = row_target / (kernel @ v)
    plan = u[:, None] * kernel * v[None, :] * b
    return plan[:, :k], plan[:, :k].sum(1)


@pytest.mark.parametrize("mode", ["plain", "log"])
@pytest.mark.parametrize(
    ("rho", "tau", "temperature"), [(0.3, 0.5, 0.1), (0.7, 2.0, 0.5), (0.5, 0.5, None)]
)
def test_partial_matches_reference_iteration(mode, rho, tau, temperature) -> None:
    # POT cannot express this problem: its reg_m is one scalar per side, and here the anchor
    # side mixes KL-relaxed real columns with an exact dummy column.
    logits, prior = _problem(40, 6, seed=11)
    ours = partial(
        logits, rho, prior, tau=tau, dummy_temperature=temperature, num_iters=5000, mode=mode
    )
    plan, mass = reference_partial(logits, prior, rho, tau, 0.05, temperature)
    np.testing.assert_allclose(ours.plan.numpy(), plan, atol=1e-10, rtol=0)
    np.testing.assert_allclose(ours.mass.numpy(), mass, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", ["plain", "log"])
def test_partial_satisfies_the_optimality_conditions(mode) -> None:
    # An oracle independent of any iteration: the problem is strictly convex, so a plan with
    # exact rows, the exact dummy mass and the stationarity condition is the optimum.
    # Stationarity for a real anchor j: eps log Q_ij = t_ij - f_i - tau log(c_j / (rho prior_j))
    # with c the real anchors' masses, so the bracket below is constant along each row.
    logits, prior = _problem(40, 6, seed=12)
    rho, tau, epsilon = 0.4, 0.5, 0.05
    out = partial(logits, rho, prior, tau=tau, num_iters=5000, mode=mode)
    q_real = out.plan / 40
    torch.testing.assert_close(1 - out.mass.mean(), torch.tensor(1 - rho, dtype=torch.float64))
    c = q_real.sum(0)
    bracket = epsilon * q_real.log() - logits + tau * (c / (rho * prior)).log()
    spread = bracket.max(dim=1).values - bracket.min(dim=1).values
    assert float(spread.max()) < 1e-10
    # The dummy column: eps log Q_i,dummy - s_i equals -f_i minus one constant for every row.
    q_dummy = (1 - out.mass) / 40
    f = -bracket.mean(1)
    dummy_gap = epsilon * q_dummy.log() - dummy_scores(logits, 0.1) + f
    assert float(dummy_gap.max() - dummy_gap.min()) < 1e-10


@pytest.mark.parametrize("mode", ["plain", "log"])
def test_partial_exact_real_marginal_matches_pot_balanced(mode) -> None:
    # tau = inf: every column exact, a balanced problem POT solves on the augmented matrix.
    logits, prior = _problem(40, 6, seed=13)
    rho = 0.6
    ours = partial(logits, rho, prior, tau=INF, num_iters=5000, mode=mode)
    augmented = torch.cat([logits, dummy_scores(logits, 0.1)[:, None]], dim=1)
    oracle = ot.bregman.sinkhorn_log(
        np.full(40, 1 / 40),
        np.append(rho * prior.numpy(), 1 - rho),
        -augmented.numpy(),
        reg=0.05,
        numItermax=20000,
        stopThr=1e-15,
    )
    np.testing.assert_allclose(ours.plan.numpy(), oracle[:, :6] * 40, atol=1e-9, rtol=0)
    np.testing.assert_allclose(ours.plan.sum(0).numpy() / 40, rho * prior.numpy(), atol=1e-9)


def test_partial_full_mass_is_relaxed() -> None:
    logits, prior = _problem(40, 6, seed=14)
    for mode in ("plain", "log"):
        out = partial(logits, 1.0, prior, mode=mode)
        ref = relaxed(logits, prior, mode=mode)
        assert torch.equal(out.plan, ref) and torch.equal(out.targets, ref)
        assert torch.equal(out.mass, torch.ones(40, dtype=torch.float64))
        # Not a special case only: a dummy with a vanishing share gives the same plan.
        nearly = partial(logits, 1 - 1e-9, prior, num_iters=1000, mode=mode)
        torch.testing.assert_close(
            nearly.plan, relaxed(logits, prior, num_iters=1000), atol=1e-7, rtol=0
        )


@pytest.mark.parametrize("mode", ["plain", "log"])
def test_partial_small_mass_goes_to_the_dummy(mode) -> None:
    logits, prior = _problem(64, 10, seed=15)
    out = partial(logits, 1e-6, prior, num_iters=2000, mode=mode)
    assert float(out.mass.max()) < 1e-4
    torch.testing.assert_close(out.mass.mean(), torch.tensor(1e-6, dtype=torch.float64))
    torch.testing.assert_close(out.targets.sum(-1), torch.ones(64, dtype=torch.float64))


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("tau", [0.5, INF])
def test_partial_dummy_mass_is_exact(rho, tau) -> None:
    logits, prior = _problem(128, 12, seed=16)
    out = partial(logits, rho, prior, tau=tau, num_iters=3000)
    assert abs(float(1 - out.mass.mean()) - (1 - rho)) < 1e-12
    # At the default 300 iterations it is exact to well under a percent of the mass.
    short = partial(logits, rho, prior, tau=tau)
    assert abs(float(1 - short.mass.mean()) - (1 - rho)) < 1e-3 * (1 - rho)


def _graded_confidence(levels, num_anchors: int) -> torch.Tensor:
    """Each anchor gets one sample per level ``a``, with logit ``a`` on it and 0 elsewhere:
    symmetric over anchors, so a sample's mass depends on its level only."""
    rows = torch.zeros(num_anchors, len(levels), num_anchors, dtype=torch.float64)
    for k in range(num_anchors):
        rows[k, :, k] = torch.as_tensor(levels, dtype=torch.float64)
    return rows.reshape(-1, num_anchors)


@pytest.mark.parametrize(("temperature", "top_share"), [(0.1, 0.45), (0.5, 0.8), (None, 0.9)])
def test_partial_sends_the_least_confident_samples_to_the_dummy(temperature, top_share) -> None:
    levels = [0.1, 0.3, 0.5, 0.7, 0.9]
    logits = _graded_confidence(levels, 4)
    out = partial(logits, 0.4, dummy_temperature=temperature, num_iters=3000)
    mass = out.mass.reshape(4, len(levels))
    assert torch.allclose(mass, mass[:1].expand_as(mass), atol=1e-12, rtol=0)
    assert bool((mass[0].diff() > 0).all())  # more confident, more real mass
    # The 8 most confident of the 20 samples (40%) hold this share of the real mass (40%).
    assert float(mass[:, 3:].sum() / mass.sum()) > top_share


def test_partial_target_forms() -> None:
    logits, prior = _problem(64, 10, seed=17)
    out = partial(logits, 0.5, prior)
    torch.testing.assert_close(out.targets.sum(-1), torch.ones(64, dtype=torch.float64))
    torch.testing.assert_close(out.plan.sum(-1), out.mass)
    torch.testing.assert_close(out.plan, out.targets * out.mass[:, None])
    assert bool((out.mass > 0).all()) and bool((out.mass <= 1).all())
    # Soft cross-entropy against plan = mass-weighted cross-entropy against targets.
    log_q = torch.log_softmax(torch.randn(64, 10, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(
        -(out.plan * log_q).sum(-1), out.mass * -(out.targets * log_q).sum(-1)
    )


@pytest.mark.parametrize("iters", [1, 3, 300])
def test_partial_plain_and_log_iterates_agree(iters) -> None:
    # Mixed exact/relaxed columns make the transient depend on the kernel's scale: both paths
    # must start from the same one.
    logits, prior = _problem(48, 9, seed=18)
    plain = partial(logits, 0.5, prior, num_iters=iters, mode="plain")
    log = partial(logits, 0.5, prior, num_iters=iters, mode="log")
    for a, b in zip(plain, log, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["auto", "log"])
def test_partial_extreme_logits_stay_finite(mode) -> None:
    g = torch.Generator().manual_seed(19)
    logits = torch.randn(64, 10, generator=g) * 50
    out = partial(logits, 0.3, epsilon=1e-3, mode=mode)
    for tensor in out:
        assert torch.isfinite(tensor).all()
    torch.testing.assert_close(out.targets.sum(-1), torch.ones(64), atol=1e-5, rtol=0)
    assert bool((out.mass >= 0).all()) and bool((out.mass <= 1 + 1e-6).all())


def test_partial_targets_survive_underflowing_mass() -> None:
    # Half the samples sit on an anchor (4 per anchor), half score -1 everywhere: with a
    # constant dummy score and epsilon 0.01 the flat ones' real mass is about exp(-200), zero in
    # float32, yet their renormalised targets are still uniform over the (symmetric) anchors.
    k = 8
    confident = -torch.ones(32, k)
    confident[torch.arange(32), torch.arange(32) % k] = 1
    logits = torch.cat([confident, -torch.ones(32, k)])
    out = partial(logits, 0.4, epsilon=0.01, dummy_temperature=None)
    assert float(out.mass[32:].max()) == 0.0
    torch.testing.assert_close(out.mass[:32], torch.full((32,), 0.8), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.targets[32:], torch.full((32, k), 1 / k))
    torch.testing.assert_close(out.targets.sum(-1), torch.ones(64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_partial_dtype_batched_and_autocast(dtype) -> None:
    a, prior = _problem(64, 10, seed=20, dtype=dtype)
    b, _ = _problem(64, 10, seed=21, dtype=dtype)
    both = partial(torch.stack([a, b]), 0.6, prior)
    assert all(t.dtype == dtype for t in both)
    assert both.mass.shape == (2, 64) and both.plan.shape == (2, 64, 10)
    single = partial(b, 0.6, prior)
    atol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(both.plan[1], single.plan, atol=atol, rtol=0)
    if dtype == torch.float32:
        reference = partial(a.bfloat16().float(), 0.6, prior)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = partial(a.bfloat16(), 0.6, prior)
        for x, y in zip(under_autocast, reference, strict=True):
            assert x.dtype == torch.float32
            torch.testing.assert_close(x, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho": 0.0}, "rho"),
        ({"rho": 1.5}, "rho"),
        ({"rho": 0.5, "dummy_temperature": 0.0}, "dummy_temperature"),
        ({"rho": 0.5, "tau": 0.0}, "tau"),
        ({"rho": 0.5, "epsilon": 0.0}, "epsilon"),
    ],
)
def test_partial_bad_arguments_are_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        partial(torch.zeros(4, 5), **kwargs)


# --- rho schedule --------------------------------------------------------------------------


def test_partial_mass_sigmoid_is_the_exponential_rampup() -> None:
    # P2OT's default: rho = base + (upper - base) * exp(-5 (1 - i / total)^2).
    assert partial_mass(0.0) == pytest.approx(0.1 + 0.9 * math.exp(-5))
    assert partial_mass(0.5) == pytest.approx(0.1 + 0.9 * math.exp(-1.25))
    assert partial_mass(1.0) == 1.0
    assert partial_mass(-3.0) == partial_mass(0.0) and partial_mass(7.0) == 1.0
    values = [partial_mass(p / 100) for p in range(101)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert partial_mass(0.5, start=0.2, end=0.8) == pytest.approx(0.2 + 0.6 * math.exp(-1.25))


def test_partial_mass_linear() -> None:
    assert partial_mass(0.0, kind="linear") == pytest.approx(0.1)
    assert partial_mass(0.25, kind="linear") == pytest.approx(0.1 + 0.9 * 0.25)
    assert partial_mass(2.0, kind="linear") == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 0.0}, "start"),
        ({"end": 1.5}, "end"),
        ({"kind": "cosine"}, "kind"),
        ({"progress": float("nan")}, "progress"),
    ],
)
def test_partial_mass_bad_arguments(kwargs, match) -> None:
    kwargs = {"progress": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        partial_mass(**kwargs)
