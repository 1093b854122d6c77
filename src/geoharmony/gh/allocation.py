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
* :class:`AllocationQueue`: any of them over the current batch plus the last few batches'
  detached logits, targets for the current batch only.

The solvers share the balanced one's iterations (plain or log domain, batched leading dims,
early stopping, distributed mode with the sample axis sharded over the process group).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from geoharmony import parallel
from geoharmony.gh.sinkhorn import SinkhornMode, _prepare, _Relaxation, _solve, sinkhorn

__all__ = [
    "ALLOCATIONS",
    "AllocationQueue",
    "Allocator",
    "NeighbourMemory",
    "PartialPlan",
    "RampKind",
    "neighbour_targets",
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


class AllocationQueue(nn.Module):
    """The last ``num_batches`` global batches' detached logits, to allocate over more samples.

    ``queued(shard)`` is this process's share of the queued rows (in storage order; the
    allocations treat samples symmetrically, so the order only affects rounding):
    :meth:`GHLoss.compute <geoharmony.gh.loss.GHLoss.compute>` allocates over the current
    batch's rows followed by these and keeps the current rows' targets; then ``push`` the
    *global* batch's logits. Until the queue fills it holds fewer rows (none at first: the
    allocation runs on the batch alone).

    Under data parallelism the queue holds every rank's rows, so it is the same on every rank
    (like the prior bank: DDP's buffer broadcast and rank 0's checkpoint keep it right) and
    rank ``shard`` allocates over its own slice of each queued batch; the distributed solvers
    treat the sample axis as sharded, so the union of the slices is the global queue. The ring
    buffer, its fill count and write position are persistent buffers: a resumed run allocates
    bit-identically.

    Args:
        num_batches: number of past batches held (0: no history).
        batch_size: rows per global batch; every batch must have exactly this many.
        num_anchors: ``K``.
        num_views: ``V``, the leading dim of the logits (views allocated in one batched call).
        shards: processes the global batch is split over, in rank order (``batch_size`` must
            divide evenly).
        dtype: storage dtype of the queued logits.
    """

    history: Tensor
    filled: Tensor
    position: Tensor

    def __init__(
        self,
        num_batches: int,
        batch_size: int,
        num_anchors: int,
        num_views: int = 2,
        shards: int = 1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if num_batches < 0 or batch_size < 1 or num_anchors < 1 or num_views < 1:
            raise ValueError(
                "need num_batches >= 0 and batch_size, num_anchors, num_views >= 1, got "
                f"{num_batches}, {batch_size}, {num_anchors}, {num_views}"
            )
        if shards < 1 or batch_size % shards:
            raise ValueError(f"batch_size {batch_size} does not split over {shards} shards")
        self.num_batches, self.batch_size, self.shards = num_batches, batch_size, shards
        shape = (num_views, num_batches * batch_size, num_anchors)
        self.register_buffer("history", torch.zeros(shape, dtype=dtype))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # batches held
        self.register_buffer("position", torch.zeros((), dtype=torch.long))  # next batch slot

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.shards

    def _checked(self, logits: Tensor, rows: int) -> Tensor:
        expected = (self.history.shape[0], rows, self.history.shape[2])
        if logits.shape != expected:
            raise ValueError(
                f"logits must be [V, B, K] = {list(expected)}, got {list(logits.shape)}"
            )
        return logits.detach()

    def queued(self, shard: int = 0) -> Tensor:
        """``[V, filled * b, K]``: shard ``shard``'s slice of every queued batch (``b`` = local
        batch), oldest slot first."""
        v, _, k = self.history.shape
        held = self.history[:, : int(self.filled) * self.batch_size]
        return held.reshape(v, -1, self.shards, self.local_batch, k)[:, :, shard].reshape(v, -1, k)

    @torch.no_grad()
    def push(self, logits: Tensor) -> None:
        """Queue the global batch's ``[V, B, K]`` logits (every shard's rows, in rank order),
        replacing the oldest batch once the queue is full."""
        logits = self._checked(logits, self.batch_size)
        if self.num_batches == 0:
            return
        slot = int(self.position)
        rows = slice(slot * self.batch_size, (slot + 1) * self.batch_size)
        self.history[:, rows] = logits.to(self.history.dtype)
        self.position.fill_((slot + 1) % self.num_batches)
        self.filled.fill_(min(int(self.filled) + 1, self.num_batches))

    def extra_repr(self) -> str:
        v, _, k = self.history.shape
        return (
            f"num_batches={self.num_batches}, batch_size={self.batch_size}, K={k}, V={v}, "
            f"shards={self.shards}"
        )


class NeighbourMemory(nn.Module):
    """Every pretraining sample's latest logits and surrogate labels, for a kNN-affinity bias
    over the whole data set rather than the batch.

    Within a batch a rare class has about one image, so a sample's nearest rows there belong to
    other classes; among all ``N`` samples a rare image's neighbours are often its own class.
    :meth:`neighbour_targets` gives each current sample the mean latest targets of its
    ``neighbours`` nearest remembered samples (cosine of the logits, itself and samples not seen
    yet excluded); the allocation then runs on ``logits + affinity * that`` (a one-step,
    data-set-wide form of the affinity pass of :func:`neighbour_targets`). Under data
    parallelism every rank stores every rank's rows, so the memory is the same everywhere; its
    buffers are persistent (checkpoints carry them).

    Args:
        num_samples: ``N``.
        num_anchors: ``K``.
        neighbours: ``k``.
        distributed: gather every rank's rows in :meth:`store`.
    """

    logits: Tensor
    targets: Tensor
    seen: Tensor

    def __init__(
        self, num_samples: int, num_anchors: int, neighbours: int = 10, distributed: bool = False
    ) -> None:
        super().__init__()
        if num_samples < 2 or num_anchors < 1 or neighbours < 1:
            raise ValueError(
                "need num_samples >= 2 and num_anchors, neighbours >= 1, got "
                f"{num_samples}, {num_anchors}, {neighbours}"
            )
        self.neighbours, self.distributed = neighbours, distributed
        self.register_buffer("logits", torch.zeros(num_samples, num_anchors))
        self.register_buffer("targets", torch.zeros(num_samples, num_anchors))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))

    @torch.no_grad()
    def neighbour_targets(self, logits: Tensor, indices: Tensor) -> Tensor:
        """``[V, B, K]`` current logits of the samples ``indices`` ``[B]`` -> ``[V, B, K]``
        mean remembered targets of each one's nearest remembered samples (zeros while fewer
        than one other sample is remembered)."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            unit = torch.nn.functional.normalize(logits.detach().float(), dim=-1)
            memory = torch.nn.functional.normalize(self.logits, dim=-1)
            similarity = unit @ memory.T  # [V, B, N]
            excluded = ~self.seen
            excluded = excluded.unsqueeze(0).expand(logits.shape[-2], -1).clone()
            excluded[torch.arange(len(indices), device=indices.device), indices] = True
            similarity = similarity.masked_fill(excluded, -math.inf)
            k = min(self.neighbours, int((~excluded).sum(dim=-1).min()))
            if k < 1:
                return torch.zeros_like(unit)
            nearest = similarity.topk(k, dim=-1).indices  # [V, B, k]
            return self.targets[nearest].mean(dim=-2)

    @torch.no_grad()
    def store(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        """Remember ``[B, K]`` logits and targets of the samples ``indices`` ``[B]``."""
        if self.distributed:
            indices = parallel.all_gather_no_grad(indices)
            logits = parallel.all_gather_no_grad(logits.detach())
            targets = parallel.all_gather_no_grad(targets.detach())
        self.logits[indices] = logits.detach().to(self.logits)
        self.targets[indices] = targets.detach().to(self.targets)
        self.seen[indices] = True


@dataclass(frozen=True)
class Allocator:
    """One way of finding surrogate labels, with its settings: ``allocator(logits, prior)``.

    Attributes:
        kind: a key of :data:`ALLOCATIONS`: ``balanced`` (the paper's exact marginal),
            ``relaxed`` or ``partial``.
        epsilon, num_iters, tol, mode: the solver's (see :func:`~geoharmony.gh.sinkhorn`).
        tau: strength of the KL penalty on the anchor marginal (``relaxed``, ``partial``).
        rho: mass on the real anchors (``partial``; its schedule sets it, see
            :func:`partial_mass`).
        weighted: ``partial``'s targets are confidence-weighted (rows sum to each sample's mass
            on the real anchors, P2OT's form) rather than renormalised to sum 1.
        dummy_temperature: ``partial``'s dummy-anchor score temperature.
        affinity: weight of the neighbours' targets in a second pass (0: one pass); see
            :func:`neighbour_targets`.
        neighbours: how many nearest rows each row's second pass looks at.
    """

    kind: str = "balanced"
    epsilon: float = 0.05
    num_iters: int = 300
    tol: float | None = None
    mode: SinkhornMode = "auto"
    tau: float = 0.5
    rho: float = 1.0
    weighted: bool = True
    dummy_temperature: float | None = 0.1
    affinity: float = 0.0
    neighbours: int = 10

    def __post_init__(self) -> None:
        if self.kind not in ALLOCATIONS:
            raise ValueError(
                f"allocation must be one of {', '.join(ALLOCATIONS)}, got {self.kind!r}"
            )
        if self.affinity < 0 or self.neighbours < 1:
            raise ValueError(
                f"affinity must be >= 0 and neighbours >= 1, got {self.affinity}, {self.neighbours}"
            )

    def with_rho(self, rho: float) -> Allocator:
        return dataclasses.replace(self, rho=rho)

    def __call__(
        self, logits: Tensor, prior: Tensor | None = None, distributed: bool = False
    ) -> Tensor:
        """``[..., N, K]`` logits -> ``[..., N, K]`` surrogate labels (no gradient): rows sum
        to 1, or to the sample's real mass for weighted ``partial`` targets."""
        allocate = ALLOCATIONS[self.kind]
        targets = allocate(self, logits, prior, distributed)
        if self.affinity == 0:
            return targets
        nearby = neighbour_targets(logits, targets, self.neighbours, distributed)
        return allocate(self, logits + self.affinity * nearby, prior, distributed)


@torch.no_grad()
def neighbour_targets(
    logits: Tensor, targets: Tensor, neighbours: int = 10, distributed: bool = False
) -> Tensor:
    """Mean of the targets of each row's ``neighbours`` nearest rows, itself excluded.

    A kNN-affinity step in the spirit of SP2OT (Zhang et al., 2024): a second allocation on
    ``logits + affinity * neighbour_targets(...)`` pulls each sample towards the anchors its
    neighbours were allocated to (one majorise-minimise step of a graph term that rewards
    neighbours sharing anchors). It helps a rare class only where its images' neighbours are
    mostly its own class, and only when the problem holds several of them (an allocation queue).

    Args:
        logits: ``[..., N, K]`` scores; nearness is their cosine.
        targets: ``[..., N, K]`` a first allocation of those rows.
        neighbours: ``k``; fewer when there are fewer other rows.
        distributed: the rows are this rank's equal share of a sample axis sharded in rank
            order; neighbours are searched among every rank's rows.

    Returns:
        ``[..., N, K]`` float32 (float64 for float64 ``logits``).
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        unit = torch.nn.functional.normalize(logits.detach().to(dtype), dim=-1)
        targets = targets.detach().to(dtype)
        everyone, every_target, offset = unit, targets, 0
        if distributed and parallel.is_distributed():
            # all_gather concatenates dim 0: put the sample axis first, then back.
            everyone = parallel.all_gather_no_grad(unit.movedim(-2, 0)).movedim(0, -2)
            every_target = parallel.all_gather_no_grad(targets.movedim(-2, 0)).movedim(0, -2)
            offset = parallel.rank() * unit.shape[-2]
        k = min(neighbours, everyone.shape[-2] - 1)
        if k < 1:
            return torch.zeros_like(targets)
        similarity = unit @ everyone.transpose(-2, -1)  # [..., N, N_total]
        rows = torch.arange(unit.shape[-2], device=unit.device)
        similarity[..., rows, rows + offset] = -math.inf  # not one's own neighbour
        nearest = similarity.topk(k, dim=-1).indices  # [..., N, k]
        flat = nearest.flatten(-2)  # [..., N * k]
        index = flat.unsqueeze(-1).expand(*flat.shape, every_target.shape[-1])
        gathered = torch.gather(every_target, -2, index)  # [..., N * k, K]
        return gathered.unflatten(-2, nearest.shape[-2:]).mean(dim=-2)


def _balanced(a: Allocator, logits: Tensor, prior: Tensor | None, distributed: bool) -> Tensor:
    return sinkhorn(logits, prior, a.epsilon, a.num_iters, a.tol, a.mode, distributed)


def _relaxed(a: Allocator, logits: Tensor, prior: Tensor | None, distributed: bool) -> Tensor:
    return relaxed(logits, prior, a.tau, a.epsilon, a.num_iters, a.tol, a.mode, distributed)


def _partial(a: Allocator, logits: Tensor, prior: Tensor | None, distributed: bool) -> Tensor:
    found = partial(
        logits,
        a.rho,
        prior,
        a.tau,
        a.epsilon,
        a.dummy_temperature,
        a.num_iters,
        a.tol,
        a.mode,
        distributed,
    )
    return found.plan if a.weighted else found.targets


# The allocations ``gh.allocation`` selects from (the choices of that option are these keys).
ALLOCATIONS: dict[str, Callable[[Allocator, Tensor, Tensor | None, bool], Tensor]] = {
    "balanced": _balanced,
    "relaxed": _relaxed,
    "partial": _partial,
}
