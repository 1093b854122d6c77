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
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from geoharmony import parallel

__all__ = ["SinkhornMode", "sinkhorn"]

SinkhornMode = Literal["auto", "plain", "log"]

# Largest exponent span (in nats) the plain iteration may see: exp(-span) must stay a normal
# number with headroom for the prior's own range (float32 normals reach exp(-87)).
_PLAIN_SPAN_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}
# Zero prior entries are lifted to this mass so the log iteration never sees log(0).
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


def _matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    """``[..., m, n] @ [..., n, 1]``. On CPU, batched matmul of matrix-vector shapes is several
    times slower than one 2-D matmul per problem, so the few leading problems are looped over."""
    if matrix.dim() == 2:
        return matrix @ vector
    flat_m = matrix.reshape(-1, *matrix.shape[-2:])
    flat_v = vector.reshape(-1, *vector.shape[-2:])
    out = torch.stack([m @ v for m, v in zip(flat_m, flat_v, strict=True)])
    return out.reshape(*matrix.shape[:-1], 1)


def _plain_iterations(
    scores: Tensor, prior: Tensor, num_samples: int, num_iters: int, tol: float | None, dist: bool
) -> Tensor:
    # The plan is diag(u) K diag(v): each half-step is one matrix-vector product instead of
    # rescaling the whole [B, K] plan (the same iterates, about twice as fast).
    peak = scores.amax(dim=(-2, -1), keepdim=True)
    if dist:
        parallel.all_reduce_max(peak)
    kernel = (scores - peak).exp()  # shifting by the (global) max leaves the plan unchanged
    kernel_t = kernel.transpose(-2, -1)
    # Anchor masses B * prior match the row masses (1 each), so u and v do not drift apart.
    target = num_samples * prior.unsqueeze(-1)  # [K, 1]
    row_scale = torch.ones_like(kernel[..., :1])  # u: [..., B, 1]
    col_scale = torch.ones_like(target.expand(*kernel.shape[:-2], -1, 1))  # v: [..., K, 1]
    for step in range(num_iters):
        col_mass = _matvec(kernel_t, row_scale)  # [..., K, 1]
        if dist:
            parallel.all_reduce_sum(col_mass)
        if tol is not None and step > 0 and step % _TOL_CHECK_EVERY == 0:
            if _marginal_error((col_scale * col_mass).transpose(-2, -1), num_samples, prior) < tol:
                break
        col_scale = target / col_mass
        row_scale = 1.0 / _matvec(kernel, col_scale)
    return row_scale * kernel * col_scale.transpose(-2, -1)


def _log_iterations(
    scores: Tensor, prior: Tensor, num_samples: int, num_iters: int, tol: float | None, dist: bool
) -> Tensor:
    log_plan = scores.clone()
    log_prior = prior.log()
    for step in range(num_iters):
        log_column_mass = _logsumexp_over_samples(log_plan, dist)
        if tol is not None and step > 0 and step % _TOL_CHECK_EVERY == 0:
            if _marginal_error(log_column_mass.exp(), num_samples, prior) < tol:
                break
        log_plan += log_prior - log_column_mass
        log_plan -= torch.logsumexp(log_plan, dim=-1, keepdim=True)
    return log_plan.exp()


def _plain_is_safe(scores: Tensor, prior: Tensor, distributed: bool) -> bool:
    extremes = torch.stack([scores.amax(), -scores.amin()])
    if distributed:
        extremes = parallel.all_reduce_max(extremes)
    span = float(extremes.sum()) + float((prior.max() / prior.min()).log())
    return span <= _PLAIN_SPAN_LIMIT[scores.dtype]


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
        prior: ``[K]`` anchor marginal summing to 1; ``None`` means uniform.
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
    # Autocast would silently run the exp/sums in half precision, where exp(20) overflows.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        scores = logits.detach().to(dtype) / epsilon
        if not bool(torch.isfinite(scores).all()):
            raise ValueError("sinkhorn received non-finite logits (NaN or inf)")
        prior_t = _validated_prior(prior, logits.shape[-1], scores)
        num_samples = logits.shape[-2]
        if distributed:
            count = torch.tensor(num_samples, device=logits.device)
            num_samples = int(parallel.all_reduce_sum(count).item())
        use_plain = mode == "plain" or (
            mode == "auto" and _plain_is_safe(scores, prior_t, distributed)
        )
        iterate = _plain_iterations if use_plain else _log_iterations
        return iterate(scores, prior_t, num_samples, num_iters, tol, distributed)
