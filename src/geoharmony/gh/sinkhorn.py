"""Surrogate label allocation: entropic optimal transport between samples and anchors.

Given logits ``t`` of ``B`` samples against ``K`` anchors, find the plan ``Q`` that maximises
``<Q, t> + epsilon * H(Q)`` subject to every sample carrying mass ``1/B`` and anchor ``k`` receiving
mass ``prior[k]``; return it rescaled by ``B`` so each row is a label distribution.

Two exact implementations of the same alternating-scaling iteration (anchor marginal first, then
sample marginal, as the official GH code orders them):

* ``plain``: multiplicative updates on ``exp(t / epsilon)``: fast, but needs that kernel and the
  prior to fit the dtype's exponent range;
* ``log``: the same updates on ``t / epsilon`` with log-sum-exp: safe for any finite input.

``mode="auto"`` checks the dynamic range and takes ``plain`` when it is safe.

The same iterations, with some anchor marginals KL-relaxed, serve the relaxed and partial
allocations of :mod:`geoharmony.gh.allocation`.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from geoharmony import parallel

__all__ = ["SinkhornMode", "sinkhorn"]

SinkhornMode = Literal["auto", "plain", "log"]

# Largest exponent span (in nats) the plain iteration may see: exp(-span) must stay a normal
# number with headroom for the prior's own range (float32 normals reach exp(-87)).
_PLAIN_SPAN_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}
# Zero prior entries that reach the iterations (the relaxed and partial allocations; the
# balanced one leaves such anchors out) are lifted to this mass so that no log(0) is taken.
_MIN_PRIOR = 1e-20
# How often the early-stopping test runs: each test costs a device synchronisation.
_TOL_CHECK_EVERY = 10


def _validated_prior(prior: Tensor | None, num_anchors: int, like: Tensor) -> Tensor:
    if prior is None:
        return torch.full((num_anchors,), 1.0 / num_anchors, dtype=like.dtype, device=like.device)
    if prior.shape != (num_anchors,):
        raise ValueError(
            f"prior must have shape [{num_anchors}] (one mass per anchor), got {list(prior.shape)}"
        )
    prior = prior.detach().to(device=like.device, dtype=like.dtype)
    if not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()):
        raise ValueError("prior must be finite and non-negative")
    total = float(prior.sum())
    if abs(total - 1.0) > 1e-3:
        raise ValueError(f"prior must sum to 1, sums to {total:.6g}")
    prior = prior.clamp_min(_MIN_PRIOR)
    return prior / prior.sum()


def _empty_anchors(prior: Tensor | None, logits: Tensor) -> Tensor | None:
    """``[K]`` bool mask of the anchors a valid ``prior`` gives exactly no mass, or None when
    there are none (or the prior is not valid: :func:`_validated_prior` then says why)."""
    if prior is None or logits.dim() < 2 or prior.shape != logits.shape[-1:]:
        return None
    empty = prior.detach() == 0
    if not bool(empty.any()) or bool(empty.all()):
        return None
    return empty.to(logits.device)


def _sum_over_samples(x: Tensor, distributed: bool) -> Tensor:
    """``[..., B, K] -> [..., 1, K]`` column sums over the (possibly sharded) sample axis."""
    total = x.sum(dim=-2, keepdim=True)
    return parallel.all_reduce_sum(total) if distributed else total


def _logsumexp_over_samples(x: Tensor, distributed: bool) -> Tensor:
    """``[..., B, K] -> [..., 1, K]`` log-sum-exp over the (possibly sharded) sample axis."""
    if not distributed:
        return torch.logsumexp(x, dim=-2, keepdim=True)
    peak = parallel.all_reduce_max(x.amax(dim=-2, keepdim=True))
    total = parallel.all_reduce_sum((x - peak).exp().sum(dim=-2, keepdim=True))
    return peak + total.log()


def _marginal_error(column_mass: Tensor, num_samples: int, prior: Tensor) -> float:
    """Largest gap between the plan's anchor marginals (``[..., 1, K]`` sums) and the prior."""
    return float((column_mass / num_samples - prior).abs().max())


class _Stopping:
    """The early-stopping test, run every ``_TOL_CHECK_EVERY`` iterations on the plan's anchor
    masses ``[..., 1, K]`` (sums over all samples, before that iteration's anchor update).

    Balanced (every anchor marginal exact): stop once the masses are within ``tol`` of
    ``num_samples * prior``. Unbalanced (some anchor marginals KL-relaxed, so the masses converge
    to an unknown marginal): stop once the per-sample masses moved by less than ``tol`` in one
    iteration (compared with those of the iteration before the check).
    """

    def __init__(self, tol: float | None, prior: Tensor, num_samples: int, balanced: bool) -> None:
        self.tol, self.prior, self.num_samples, self.balanced = tol, prior, num_samples, balanced
        self.previous: Tensor | None = None

    def due(self, step: int) -> bool:
        if self.tol is None or step == 0:
            return False
        return step % _TOL_CHECK_EVERY == 0 or (
            not self.balanced and (step + 1) % _TOL_CHECK_EVERY == 0
        )

    def reached(self, step: int, column_mass: Tensor) -> bool:
        assert self.tol is not None
        if self.balanced:
            return _marginal_error(column_mass, self.num_samples, self.prior) < self.tol
        per_sample = column_mass / self.num_samples
        if step % _TOL_CHECK_EVERY != 0:  # the iteration before a check
            self.previous = per_sample
            return False
        assert self.previous is not None
        return float((per_sample - self.previous).abs().max()) < self.tol


class _MatVecs:
    """``out = matrix @ vector`` for each of the leading problems of ``[..., m, n]`` matrices
    and ``[..., n, 1]`` vectors, one 2-D product per problem into ``out`` (``[..., m, 1]``).

    On CPU a batched matmul of matrix-vector shapes is several times slower than one 2-D
    product per problem; and with the per-problem views made once, an iteration issues only the
    products themselves (300 iterations of two small products each: the view bookkeeping of
    each call used to cost more than the arithmetic).
    """

    def __init__(self, matrix: Tensor, vector: Tensor, out: Tensor) -> None:
        self.triples = list(zip(_problems(matrix), _problems(vector), _problems(out), strict=True))

    def __call__(self) -> None:
        for m, v, o in self.triples:
            torch.mm(m, v, out=o)


def _problems(x: Tensor) -> list[Tensor]:
    """``[..., a, b]`` -> its 2-D problems (views of ``x``; ``x`` 2-D: itself)."""
    return list(x.reshape(-1, *x.shape[-2:]).unbind(0))


def _peak(scores: Tensor, dist: bool) -> Tensor:
    """``[..., B, K] -> [..., 1, 1]`` largest score of each problem over all ranks."""
    peak = scores.amax(dim=(-2, -1), keepdim=True)
    if dist:
        parallel.all_reduce_max(peak)
    return peak


class _Relaxation(NamedTuple):
    """The first ``num_relaxed`` anchors' marginals are KL-relaxed with strength ``tau``: their
    scaling updates are raised to ``exponent = tau / (tau + epsilon)``; the others stay exact."""

    exponent: float
    num_relaxed: int


# The relaxed anchor update. With ``r = target / K^T u`` (the balanced update), a relaxed
# anchor's scaling is ``v_j = r_j ** a`` with ``a = tau / (tau + epsilon)``, an exact one's
# ``v_j = r_j``. Next to exact anchors (the partial allocation's dummy) every ``v`` is then
# multiplied by the factor ``s`` that maximises the dual along the translation ``(f + l, g - l)``
# (Sejourne et al., 2022, translation-invariant Sinkhorn), which the next row update absorbs:
# ``s = (sum_R w_j r_j ** (a - 1)) ** (a / (1 - a))`` with ``w`` the relaxed anchors' prior
# normalised to 1, so the relaxed anchors aim at exactly the mass the exact ones leave. Without
# it the exact anchors' share converges at a rate ``1 - O(their mass)``. With every anchor
# relaxed the plan does not depend on the common scale of ``v``, so it is left out.


def _relaxed_scaling(ratio: Tensor, weights: Tensor | None, relax: _Relaxation) -> Tensor:
    """``[..., K, 1]`` ratios ``r`` -> scalings ``v`` (overwrites ``ratio``); ``weights``:
    ``[R, 1]`` translation weights, ``None`` for no translation."""
    a, count = relax
    head = ratio[..., :count, :]
    if weights is None:
        ratio[..., :count, :] = head.pow(a)
        return ratio
    shrink = head.pow(a - 1.0)
    translation = (weights * shrink).sum(dim=-2, keepdim=True).pow(a / (1.0 - a))
    ratio[..., :count, :] = head * shrink
    return ratio * translation


def _relaxed_log_scaling(
    log_ratio: Tensor, log_weights: Tensor | None, relax: _Relaxation
) -> Tensor:
    """``[..., 1, K]`` ``log r`` -> ``log v``; ``log_weights``: ``[R]``, ``None`` for none."""
    a, count = relax
    head = log_ratio[..., :count]
    log_v = torch.cat([a * head, log_ratio[..., count:]], dim=-1)
    if log_weights is None:
        return log_v
    mean = torch.logsumexp(log_weights + (a - 1.0) * head, dim=-1, keepdim=True)
    return log_v + a / (1.0 - a) * mean


def _translation_weights(prior: Tensor, relax: _Relaxation | None) -> Tensor | None:
    """``[R]`` relaxed anchors' prior normalised to 1, or ``None`` where no translation runs."""
    if relax is None or relax.num_relaxed == prior.shape[-1]:
        return None
    head = prior[: relax.num_relaxed]
    return head / head.sum()


def _plain_iterations(
    problem: _Problem, num_iters: int, tol: float | None, relax: _Relaxation | None
) -> Tensor:
    # The plan is diag(u) K diag(v): each half-step is one matrix-vector product instead of
    # rescaling the whole [B, K] plan (the same iterates, about twice as fast).
    scores, prior, num_samples, dist = problem
    # Shifting by the (global) max leaves the balanced plan unchanged; with relaxed anchors it
    # sets the scale the transient starts from, which _log_iterations matches.
    kernel = (scores - _peak(scores, dist)).exp()
    kernel_t = kernel.transpose(-2, -1)
    # Anchor masses B * prior match the row masses (1 each), so u and v do not drift apart.
    target = num_samples * prior.unsqueeze(-1)  # [K, 1]
    weights = _translation_weights(prior, relax)
    weights = None if weights is None else weights.unsqueeze(-1)
    stopping = _Stopping(tol, prior, num_samples, balanced=relax is None)
    leading = kernel.shape[:-2]
    row_scale = torch.ones_like(kernel[..., :1])  # u: [..., B, 1]
    col_scale = kernel.new_ones(*leading, prior.shape[0], 1)  # v: [..., K, 1]
    col_mass = torch.empty_like(col_scale)  # K^T u
    row_mass = torch.empty_like(row_scale)  # K v
    # Every tensor of the loop is updated in place, so the products' views stay valid.
    column_products = _MatVecs(kernel_t, row_scale, col_mass)
    row_products = _MatVecs(kernel, col_scale, row_mass)
    for step in range(num_iters):
        column_products()
        if dist:
            parallel.all_reduce_sum(col_mass)
        if stopping.due(step):
            if stopping.reached(step, (col_scale * col_mass).transpose(-2, -1)):
                break
        torch.div(target, col_mass, out=col_scale)
        if relax is not None:
            col_scale.copy_(_relaxed_scaling(col_scale, weights, relax))
        row_products()
        torch.reciprocal(row_mass, out=row_scale)
    return row_scale * kernel * col_scale.transpose(-2, -1)


def _log_iterations(
    problem: _Problem, num_iters: int, tol: float | None, relax: _Relaxation | None
) -> Tensor:
    """The plain iteration on ``log(plan)``; returns the log plan."""
    scores, prior, num_samples, dist = problem
    stopping = _Stopping(tol, prior, num_samples, balanced=relax is None)
    if relax is None:
        # Balanced: a constant shift of the scores, or of the anchor target, is absorbed by the
        # row normalisation, so neither is applied.
        log_plan = scores.clone()
        log_target = prior.log()
    else:
        # With relaxed anchors it is not: the scores get the plain iteration's shift and its
        # target B * prior, and the anchor scalings log(v) are tracked (the relaxed update
        # depends on v itself, not only on the plan).
        log_plan = scores - _peak(scores, dist)
        log_target = prior.log() + math.log(num_samples)
        log_col_scale = torch.zeros_like(log_plan[..., :1, :])
        weights = _translation_weights(prior, relax)
        log_weights = None if weights is None else weights.log()
    for step in range(num_iters):
        log_column_mass = _logsumexp_over_samples(log_plan, dist)
        if stopping.due(step):
            if stopping.reached(step, log_column_mass.exp()):
                break
        if relax is None:
            log_plan += log_target - log_column_mass
        else:
            # log(target / K^T u), where K^T u = column mass / v.
            log_ratio = log_target - log_column_mass + log_col_scale
            new_log_col_scale = _relaxed_log_scaling(log_ratio, log_weights, relax)
            log_plan += new_log_col_scale - log_col_scale
            log_col_scale = new_log_col_scale
        log_plan -= torch.logsumexp(log_plan, dim=-1, keepdim=True)
    return log_plan


def _plain_is_safe(scores: Tensor, prior: Tensor, distributed: bool) -> bool:
    extremes = torch.stack([scores.amax(), -scores.amin()])
    if distributed:
        extremes = parallel.all_reduce_max(extremes)
    span = float(extremes.sum()) + float((prior.max() / prior.min()).log())
    return span <= _PLAIN_SPAN_LIMIT[scores.dtype]


class _Problem(NamedTuple):
    """A validated allocation problem, in the solver's dtype (float32 or float64)."""

    scores: Tensor  # [..., B, K] logits / epsilon
    prior: Tensor  # [K] anchor marginal summing to 1
    num_samples: int  # B over all ranks
    distributed: bool  # the sample axis is sharded over a process group that is up


def _prepare(
    logits: Tensor,
    prior: Tensor | None,
    epsilon: float,
    num_iters: int,
    mode: str,
    distributed: bool,
) -> _Problem:
    """Validate the arguments shared by the allocations; call with autocast disabled."""
    if logits.dim() < 2:
        raise ValueError(f"logits must be [..., B, K], got shape {list(logits.shape)}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if mode not in ("auto", "plain", "log"):
        raise ValueError(f"mode must be 'auto', 'plain' or 'log', got {mode!r}")
    distributed = distributed and parallel.is_distributed()
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    scores = logits.detach().to(dtype) / epsilon
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("sinkhorn received non-finite logits (NaN or inf)")
    prior_t = _validated_prior(prior, logits.shape[-1], scores)
    num_samples = logits.shape[-2]
    if distributed:
        count = torch.tensor(num_samples, device=logits.device)
        num_samples = int(parallel.all_reduce_sum(count).item())
    return _Problem(scores, prior_t, num_samples, distributed)


def _solve(
    problem: _Problem,
    num_iters: int,
    tol: float | None,
    mode: str,
    relax: _Relaxation | None = None,
) -> tuple[Tensor, bool]:
    """Run the scaling iteration, every anchor marginal exact unless ``relax`` says otherwise.
    Returns ``(plan, False)`` from the plain iteration or ``(log plan, True)``."""
    scores, prior, _, dist = problem
    if mode == "plain" or (mode == "auto" and _plain_is_safe(scores, prior, dist)):
        return _plain_iterations(problem, num_iters, tol, relax), False
    return _log_iterations(problem, num_iters, tol, relax), True


@torch.no_grad()
def sinkhorn(
    logits: Tensor,
    prior: Tensor | None = None,
    epsilon: float = 0.05,
    num_iters: int = 300,
    tol: float | None = None,
    mode: SinkhornMode = "auto",
    distributed: bool = False,
) -> Tensor:
    """Balanced surrogate labels for ``B`` samples over ``K`` anchors.

    Args:
        logits: ``[..., B, K]`` scores; leading dims are independent problems (e.g. two views
            solved in one batched call). Never receives gradients.
        prior: ``[K]`` anchor marginal summing to 1; ``None`` means uniform. Anchors of mass 0
            get none.
        epsilon: entropic regularisation (kernel ``exp(logits / epsilon)``).
        num_iters: maximum number of scaling iterations.
        tol: stop early once every anchor's mass is within ``tol`` of ``prior`` (checked every
            ten iterations); ``None`` always runs ``num_iters``.
        mode: ``"plain"``, ``"log"`` or ``"auto"`` (plain when the dynamic range allows).
        distributed: the sample axis is sharded over the default process group; the result is the
            local rows of the plan computed on the gathered batch.

    Returns:
        ``[..., B, K]`` plan in float32 (float64 if ``logits`` is float64): each row sums to 1,
        column ``k`` sums to about ``B_total * prior[k]``.
    """
    empty = _empty_anchors(prior, logits)
    if empty is not None:
        # Anchors the prior gives no mass get none (exact zeros, as the official iteration gives
        # them), and the rest is solved on its own: its prior's range is then that of the
        # anchors in use, so the fast plain iteration serves the paper's bank prior, whose
        # histogram leaves anchors empty, instead of the log iteration.
        assert prior is not None
        keep = ~empty
        plan = sinkhorn(logits[..., keep], prior[keep], epsilon, num_iters, tol, mode, distributed)
        full = plan.new_zeros(*plan.shape[:-1], logits.shape[-1])
        full[..., keep] = plan
        return full
    # Autocast would silently run the exp/sums in half precision, where exp(20) overflows.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        problem = _prepare(logits, prior, epsilon, num_iters, mode, distributed)
        plan, is_log = _solve(problem, num_iters, tol, mode)
        return plan.exp() if is_log else plan
