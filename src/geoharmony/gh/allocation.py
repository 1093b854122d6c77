"""Surrogate label allocations beyond the paper's balanced Sinkhorn (options; balanced stays the
default, see :func:`geoharmony.gh.sinkhorn`).

All of them solve entropic optimal transport between ``B`` samples, each carrying exactly mass
``1/B``, and ``K`` anchors, with the GH kernel ``exp(t / epsilon)`` (``t`` the logits, cost
``-t``) and the entropy ``H(Q) = -sum Q (log Q - 1)`` (POT's ``reg_type="entropy"``); they
differ in how the anchor side is constrained:

* :func:`relaxed`: the anchor marginal is enforced softly,
  ``max_Q <Q, t> + epsilon H(Q) - tau KL(Q^T 1 || prior)``. The generalised Sinkhorn iteration
  (Chizat et al., 2018) keeps the balanced solver's updates but raises each anchor's scaling to
  the power ``tau / (tau + epsilon)``: ``tau -> inf`` is the balanced plan, ``tau -> 0`` the
  per-row softmax of ``t / epsilon`` (prior ignored). A rare class's images are no longer
  forced onto head anchors just to fill the prior.
* :func:`partial`: progressive partial transport (P2OT, Zhang et al., ICLR 2024): an extra
  dummy anchor takes exactly mass ``1 - rho``, the real anchors the remaining ``rho`` with
  their marginal ``rho * prior`` KL-relaxed (strength ``tau``). The samples the allocation is
  least sure of go to the dummy; :func:`partial_mass` is the schedule that ramps ``rho`` to 1.

The solvers share the balanced one's iterations (plain or log domain, batched leading dims,
early stopping, distributed mode with the sample axis sharded over the process group).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from geoharmony.gh.options import AllocationOptions
from geoharmony.gh.sinkhorn import SinkhornMode, _prepare, _Relaxation, _solve, sinkhorn

__all__ = [
    "ALLOCATIONS",
    "Allocator",
    "PartialPlan",
    "RampKind",
    "partial",
    "partial_mass",
    "relaxed",
]

RampKind = Literal["sigmoid", "linear"]


def _relaxation(tau: float, epsilon: float, num_anchors: int) -> _Relaxation | None:
    """The first ``num_anchors`` anchors relaxed with strength ``tau`` (``None``: exact)."""
    if not tau > 0:
        raise ValueError(f"tau must be positive (float('inf') for an exact marginal), got {tau}")
    if math.isinf(tau):
        return None
    return _Relaxation(tau / (tau + epsilon), num_anchors)


@torch.no_grad()
def relaxed(
    logits: Tensor,
    prior: Tensor | None = None,
    tau: float = 0.5,
    epsilon: float = 0.05,
    num_iters: int = 300,
    tol: float | None = None,
    mode: SinkhornMode = "auto",
    distributed: bool = False,
) -> Tensor:
    """Surrogate labels with exact sample masses and the anchor marginal KL-relaxed.

    Solves ``max_Q <Q, t> + epsilon H(Q) - tau KL(Q^T 1 || prior)`` over ``Q >= 0`` with
    ``Q 1 = 1/B``: column-then-row scaling as the balanced solver, the column update being
    ``v <- (B prior / K^T u) ** (tau / (tau + epsilon))``.

    Args:
        logits: ``[..., B, K]`` scores; leading dims are independent problems (e.g. two views).
        prior: ``[K]`` anchor marginal summing to 1; ``None`` means uniform.
        tau: strength of the marginal penalty; ``float("inf")`` is :func:`sinkhorn` exactly. The
            default ``0.5`` keeps P2OT's default ratio ``epsilon / tau = 0.1``.
        epsilon: entropic regularisation (kernel ``exp(logits / epsilon)``).
        num_iters: maximum number of scaling iterations.
        tol: stop early once no anchor's per-sample mass changes by more than ``tol`` over one
            iteration (checked every ten iterations). That is a step size, not a distance to
            the solution, which converges at rate about ``tau / (tau + epsilon)`` per iteration.
            ``None`` always runs ``num_iters``.
        mode: ``"plain"``, ``"log"`` or ``"auto"`` (plain when the dynamic range allows).
        distributed: the sample axis is sharded over the default process group (anchor masses
            all-reduced); the result is the local rows of the plan of the gathered batch.

    Returns:
        ``[..., B, K]`` plan times ``B_total`` in float32 (float64 for float64 ``logits``): each
        row sums to 1 (a label distribution); the columns sum to about ``B_total * prior`` only
        as ``tau`` grows.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        problem = _prepare(logits, prior, epsilon, num_iters, mode, distributed)
        relax = _relaxation(tau, epsilon, logits.shape[-1])
        plan, is_log = _solve(problem, num_iters, tol, mode, relax)
        return plan.exp() if is_log else plan


class PartialPlan(NamedTuple):
    """A :func:`partial` allocation, in the two target forms.

    * renormalised: ``targets``, every sample a label distribution, all samples equal in the loss;
    * confidence-weighted: ``plan`` as the soft labels. Row ``i`` sums to ``mass[i]``, so a soft
      cross-entropy against ``plan`` is the cross-entropy against ``targets`` weighted by
      ``mass`` (P2OT's form: a sample sent to the dummy anchor contributes nothing).
    """

    plan: Tensor  # [..., B, K] real-anchor part of the plan times B_total; rows sum to mass
    mass: Tensor  # [..., B] each sample's mass on real anchors, in [0, 1]; sums to rho * B_total
    targets: Tensor  # [..., B, K] plan's rows rescaled to sum 1 (computed stably)


@torch.no_grad()
def partial(
    logits: Tensor,
    rho: float,
    prior: Tensor | None = None,
    tau: float = 0.5,
    epsilon: float = 0.05,
    dummy_temperature: float | None = 0.1,
    num_iters: int = 300,
    tol: float | None = None,
    mode: SinkhornMode = "auto",
    distributed: bool = False,
) -> PartialPlan:
    """Progressive partial transport: only mass ``rho`` goes to the real anchors.

    The ``K`` anchors get a dummy ``(K+1)``-th anchor whose marginal is exactly ``1 - rho``; the
    real anchors' marginal ``rho * prior`` is KL-relaxed with strength ``tau``; every sample
    carries exactly ``1/B``. So the real anchors hold exactly ``rho`` in total at convergence.

    The dummy anchor's score for sample ``i`` is ``T * logsumexp_k(t_ik / T)`` with
    ``T = dummy_temperature``. P2OT's costs are ``-log softmax(logits)`` (``logits = cos / 0.1``
    from its cosine head) and its dummy's cost is 0, the cost of a fully confident prediction;
    written in GH's units (cost ``-t``, every cost times ``T``) that is real cost
    ``-t_ik + T logsumexp(t_i / T)`` against 0, i.e. the real scores ``t_ik`` are kept and the
    dummy scores that row-wise log-sum-exp. A sample's dummy share then grows with
    ``1 / sum_k q_ik ** (T / epsilon)``, ``q_i = softmax(t_i / T)``: the flatter its
    prediction, the more of it goes to the dummy. P2OT's own ratio ``T / epsilon`` is 10 (its
    epsilon 0.1 on log-probabilities); GH's epsilon 0.05 with ``T = 0.1`` gives 2, a much softer
    selection (every sample keeps part of its mass on the dummy); a larger ``T`` sharpens it.
    The dummy's marginal is exact, so a score that is the same for every sample is absorbed by
    its scaling: only this per-sample normalisation of the real costs matters.

    Args:
        logits: ``[..., B, K]`` scores; leading dims are independent problems.
        rho: mass on the real anchors, ``0 < rho <= 1`` (1 is :func:`relaxed` exactly).
        prior: ``[K]`` real anchors' marginal shape summing to 1; ``None`` means uniform.
        tau: strength of the KL penalty on the real anchors' marginal; ``float("inf")`` makes it
            exact (the balanced plan of the augmented problem, P2OT's "pot" variant).
        epsilon: entropic regularisation (kernel ``exp(logits / epsilon)``).
        dummy_temperature: ``T`` above; 0.1 is P2OT's cosine-head scale (and GH's prediction
            temperature). ``None``: one dummy score for all samples (no normalisation), so the
            dummy takes the samples least aligned with the anchors (``sum_k exp(t_ik /
            epsilon) v_k`` smallest): a sharp selection by absolute alignment.
        num_iters, tol, mode, distributed: as in :func:`relaxed` (the tolerance also covers
            the dummy anchor's mass).

    Returns:
        :class:`PartialPlan` with ``plan`` and ``targets`` ``[..., B, K]``, ``mass`` ``[..., B]``,
        float32 (float64 for float64 ``logits``).
    """
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    if dummy_temperature is not None and not dummy_temperature > 0:
        raise ValueError(f"dummy_temperature must be positive, got {dummy_temperature}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        problem = _prepare(logits, prior, epsilon, num_iters, mode, distributed)
        relax = _relaxation(tau, epsilon, logits.shape[-1])  # the dummy (last) stays exact
        if rho == 1:
            plan, is_log = _solve(problem, num_iters, tol, mode, relax)
            plan = plan.exp() if is_log else plan
            return PartialPlan(plan, torch.ones_like(plan[..., 0]), plan)
        scores, real_prior = problem.scores, problem.prior
        if dummy_temperature is None:
            dummy = torch.zeros_like(scores[..., :1])
        else:
            ratio = dummy_temperature / epsilon  # the dummy score in units of epsilon
            dummy = ratio * torch.logsumexp(scores / ratio, dim=-1, keepdim=True)
        augmented = problem._replace(
            scores=torch.cat([scores, dummy], dim=-1),
            prior=torch.cat([rho * real_prior, real_prior.new_full((1,), 1.0 - rho)]),
        )
        values, is_log = _solve(augmented, num_iters, tol, mode, relax)
        num_anchors = scores.shape[-1]
        if is_log:
            log_real = values[..., :num_anchors]
            log_mass = torch.logsumexp(log_real, dim=-1, keepdim=True)
            return PartialPlan(
                log_real.exp(), log_mass.squeeze(-1).exp(), (log_real - log_mass).exp()
            )
        real = values[..., :num_anchors]
        mass = real.sum(dim=-1, keepdim=True)
        targets = real / mass.clamp_min(torch.finfo(real.dtype).tiny)
        return PartialPlan(real, mass.squeeze(-1), targets)


def partial_mass(
    progress: float, start: float = 0.1, end: float = 1.0, kind: RampKind = "sigmoid"
) -> float:
    """P2OT's schedule for ``rho``: from ``start`` towards ``end`` as training progresses.

    ``progress`` is the fraction of training done (P2OT: iteration / total iterations), clipped
    to ``[0, 1]``. ``"sigmoid"`` (P2OT's default) is the exponential ramp-up of Laine & Aila,
    ``start + (end - start) * exp(-5 (1 - progress)^2)``, which begins at
    ``start + (end - start) * exp(-5)``, not at ``start``; ``"linear"`` is
    ``start + (end - start) * progress``. Both reach ``end`` at ``progress = 1``.
    """
    for name, value in (("start", start), ("end", end)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    if not math.isfinite(progress):
        raise ValueError(f"progress must be finite, got {progress}")
    progress = min(max(progress, 0.0), 1.0)
    if kind == "sigmoid":
        ramp = math.exp(-5.0 * (1.0 - progress) ** 2)
    elif kind == "linear":
        ramp = progress
    else:
        raise ValueError(f"kind must be 'sigmoid' or 'linear', got {kind!r}")
    return start + (end - start) * ramp


@dataclass(frozen=True)
class Allocator:
    """One way of finding surrogate labels, with its settings: ``allocator(logits, prior)``.

    Attributes:
        options: the ``gh.allocation`` section: which allocation (``balanced``, the paper's
            exact marginal; ``relaxed``; ``partial``) and the solver's settings.
        mode: Sinkhorn's arithmetic (see :func:`~geoharmony.gh.sinkhorn`).
        rho: mass on the real anchors (``partial``; its schedule sets it, see
            :func:`partial_mass`).
    """

    options: AllocationOptions = field(default_factory=AllocationOptions)
    mode: SinkhornMode = "auto"
    rho: float = 1.0

    def __post_init__(self) -> None:
        problems = self.options.problems("allocation")
        if self.options.name not in ALLOCATIONS:
            problems.append(f"allocation.name must be one of {', '.join(ALLOCATIONS)}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def epsilon(self) -> float:
        return self.options.epsilon

    def with_rho(self, rho: float) -> Allocator:
        return dataclasses.replace(self, rho=rho)

    def __call__(
        self, logits: Tensor, prior: Tensor | None = None, distributed: bool = False
    ) -> Tensor:
        """``[..., N, K]`` logits -> ``[..., N, K]`` surrogate labels (no gradient): rows sum
        to 1, or to the sample's real mass for weighted ``partial`` targets."""
        return ALLOCATIONS[self.options.name](self, logits, prior, distributed)


def _balanced(a: Allocator, logits: Tensor, prior: Tensor | None, distributed: bool) -> Tensor:
    o = a.options
    return sinkhorn(logits, prior, o.epsilon, o.iterations, o.tolerance, a.mode, distributed)


def _relaxed(a: Allocator, logits: Tensor, prior: Tensor | None, distributed: bool) -> Tensor:
    o = a.options
    return relaxed(logits, prior, o.tau, o.epsilon, o.iterations, o.tolerance, a.mode, distributed)


def _partial(a: Allocator, logits: Tensor, prior: Tensor | None, distributed: bool) -> Tensor:
    o = a.options
    found = partial(
        logits,
        a.rho,
        prior,
        o.tau,
        o.epsilon,
        o.dummy_temperature,
        o.iterations,
        o.tolerance,
        a.mode,
        distributed,
    )
    return found.plan if o.partial_targets == "weighted" else found.targets


# The allocations ``gh.allocation.name`` selects from (its choices, options.ALLOCATIONS).
ALLOCATIONS: dict[str, Callable[[Allocator, Tensor, Tensor | None, bool], Tensor]] = {
    "balanced": _balanced,
    "relaxed": _relaxed,
    "partial": _partial,
}
