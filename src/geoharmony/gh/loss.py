"""Geometric Harmonization loss: predictions against a fixed uniform structure, matched to
Sinkhorn-balanced surrogate labels under a class-marginal prior (docs/design.md section 3)."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony import parallel
from geoharmony.gh.allocation import Allocator
from geoharmony.gh.options import LOGITS, MIN_ANCHORS, TARGET_WEIGHTINGS, AllocationOptions
from geoharmony.gh.sinkhorn import SinkhornMode

__all__ = [
    "GHLoss",
    "GHOutput",
    "LogitsKind",
    "gh_diagnostics",
    "prior_weights",
    "swapped_cross_entropy",
]

LogitsKind = Literal["projected", "cosine"]


class GHOutput(NamedTuple):
    """Everything one GH evaluation produced; tensors are ``[B, K]`` unless noted."""

    loss: Tensor  # scalar, differentiable
    logits1: Tensor  # view-1 geometric logits t, differentiable
    logits2: Tensor
    targets1: Tensor  # surrogate labels of view 1, no gradient; rows sum to 1 except for
    # allocation=partial with weighted targets (each row keeps its mass on the real anchors)
    targets2: Tensor


def swapped_cross_entropy(
    logits1: Tensor,
    logits2: Tensor,
    targets1: Tensor,
    targets2: Tensor,
    temperature: float,
    weights: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``-mean_i <targets1_i, log q2_i> - mean_i <targets2_i, log q1_i>``, ``q = softmax(t / T)``.

    All inputs ``[B, K]``; each view's targets supervise the other view's predictions.
    ``weights``: ``([B], [B])`` per-sample weights of the two terms (each term's weights go
    with its targets), e.g. :func:`prior_weights`; ``None``: all 1.
    """
    with torch.autocast(device_type=logits1.device.type, enabled=False):
        log_q1 = F.log_softmax(logits1 / temperature, dim=1)
        log_q2 = F.log_softmax(logits2 / temperature, dim=1)
        term1 = (targets1 * log_q2).sum(dim=1)
        term2 = (targets2 * log_q1).sum(dim=1)
        if weights is not None:
            term1, term2 = term1 * weights[0], term2 * weights[1]
        return -term1.mean() - term2.mean()


@torch.no_grad()
def prior_weights(targets: Tensor, prior: Tensor | None, distributed: bool = False) -> Tensor:
    """``[B]`` weights ``w_i ~ sum_k targets_ik / prior_k`` of ``[B, K]`` targets, scaled to mean
    1 over the batch (over every rank's rows when ``distributed``, so a sharded batch gets the
    weights one process would give it).

    A sample counts as much as the anchors it is allocated to are rare under the ``[K]`` prior
    (``None``: uniform, all weights equal), as a class-balanced loss does with class
    frequencies; with the true class shares and the true classes as targets it is exactly
    class-balanced. Rows without mass (``partial``'s dummy-anchor share) weigh 0.
    """
    if prior is None:
        prior = targets.new_full((targets.shape[1],), 1.0 / targets.shape[1])
    if prior.shape != (targets.shape[1],):
        raise ValueError(f"prior must be [K] = [{targets.shape[1]}], got {list(prior.shape)}")
    with torch.autocast(device_type=targets.device.type, enabled=False):
        raw = (targets.float() / prior.float().clamp_min(1e-12)).sum(dim=1)
        total = torch.stack([raw.sum(), raw.new_tensor(float(raw.numel()))])
        if distributed:
            total = parallel.all_reduce_sum(total)
        return (raw * total[1] / total[0].clamp_min(1e-12)).to(targets.dtype)


class GHLoss(nn.Module):
    """Swapped cross-entropy between predictions on a fixed structure and surrogate labels.

    ``L = -mean_i sum_k Q1_ik log q2_ik - mean_i sum_k Q2_ik log q1_ik`` where
    ``q = softmax(t / temperature)``, ``t`` are the geometric logits and ``Q`` the surrogate
    labels of the (detached) logits under ``prior``: the paper's balanced Sinkhorn plan, or an
    allocation beyond the paper (:class:`~geoharmony.gh.allocation.Allocator`).

    Args:
        structure: ``[K, d]`` anchors (e.g. :func:`geoharmony.gh.uniform_structure`), kept
            as a fixed buffer.
        temperature: prediction temperature gamma.
        logits: ``"projected"`` (official): ``t = normalize(z M^T)``; ``"cosine"``:
            ``t_k = cos(z, m_k)``.
        allocation: how surrogate labels are found (:class:`~geoharmony.gh.AllocationOptions`:
            the paper's balanced Sinkhorn, epsilon 0.05, 300 iterations, by default);
            ``partial``'s mass ``rho`` is the attribute :attr:`rho`, which a schedule sets.
        target_weighting: ``none`` (paper) or ``inverse_prior``: each sample's term weighted
            by :func:`prior_weights` of its targets under the prior (beyond the paper).
        sinkhorn_mode: "auto", "plain" or "log" (see :func:`geoharmony.gh.sinkhorn`).
        distributed: solve the allocation over the batch of all ranks.
    """

    structure: Tensor

    def __init__(
        self,
        structure: Tensor,
        temperature: float = 0.1,
        logits: LogitsKind = "projected",
        allocation: AllocationOptions | None = None,
        target_weighting: str = "none",
        sinkhorn_mode: SinkhornMode = "auto",
        distributed: bool = False,
    ) -> None:
        super().__init__()
        if target_weighting not in TARGET_WEIGHTINGS:
            raise ValueError(
                f"target_weighting must be one of {', '.join(TARGET_WEIGHTINGS)}, "
                f"got {target_weighting!r}"
            )
        if structure.dim() != 2 or structure.shape[0] < MIN_ANCHORS:
            raise ValueError(
                f"structure must be [K >= {MIN_ANCHORS}, d], got {list(structure.shape)}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if logits not in LOGITS:
            raise ValueError(f"logits must be one of {', '.join(LOGITS)}, got {logits!r}")
        self.target_weighting = target_weighting
        self.register_buffer("structure", F.normalize(structure.detach().float(), dim=1))
        self.temperature = temperature
        self.logits_kind: LogitsKind = logits
        self.distributed = distributed
        self.allocator = Allocator(allocation or AllocationOptions(), sinkhorn_mode)

    @property
    def num_anchors(self) -> int:
        return self.structure.shape[0]

    @property
    def epsilon(self) -> float:
        return self.allocator.epsilon

    @property
    def rho(self) -> float:
        """``partial``'s mass on the real anchors (1 for the other allocations)."""
        return self.allocator.rho

    @rho.setter
    def rho(self, value: float) -> None:
        self.allocator = self.allocator.with_rho(value)

    def logits(self, z: Tensor) -> Tensor:
        """``[B, d]`` embeddings -> ``[B, K]`` geometric logits in ``[-1, 1]`` (>= float32)."""
        if z.dim() != 2 or z.shape[1] != self.structure.shape[1]:
            raise ValueError(
                f"embeddings must be [B, {self.structure.shape[1]}], got {list(z.shape)}"
            )
        # At least float32 even under autocast: the logits are divided by small temperatures.
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        structure = self.structure.to(z.dtype)
        with torch.autocast(device_type=z.device.type, enabled=False):
            if self.logits_kind == "cosine":
                return F.normalize(z, dim=1) @ structure.T
            return F.normalize(z @ structure.T, dim=1)

    def compute(
        self,
        z1: Tensor,
        z2: Tensor,
        prior: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> GHOutput:
        """Loss plus the intermediate tensors (for prior estimation and diagnostics).

        Args:
            z1, z2: ``[B, d]`` projector outputs of the two views (not normalised).
            prior: ``[K]`` anchor marginal for the allocation; ``None`` = uniform.
            targets: ``[B, K]`` given surrogate labels of both views (rows sum to 1) instead of
                the allocation's; the diagnostic ``gh.targets=labels`` passes the true classes.
        """
        if z1.shape != z2.shape:
            raise ValueError(f"z1 and z2 shapes differ: {list(z1.shape)} vs {list(z2.shape)}")
        logits1, logits2 = self.logits(z1), self.logits(z2)
        if targets is not None:
            if targets.shape != logits1.shape:
                raise ValueError(
                    f"targets must be [B, K] = {list(logits1.shape)}, got {list(targets.shape)}"
                )
            given = targets.detach().to(logits1.dtype)
            loss = self._loss(logits1, logits2, given, given, prior)
            return GHOutput(loss, logits1, logits2, given, given)
        # Both views in one batched call: [2, B, K].
        scores = torch.stack([logits1, logits2]).detach()
        plan = self.allocator(scores, prior, self.distributed).to(logits1.dtype)
        loss = self._loss(logits1, logits2, plan[0], plan[1], prior)
        return GHOutput(loss, logits1, logits2, plan[0], plan[1])

    def _loss(
        self,
        logits1: Tensor,
        logits2: Tensor,
        targets1: Tensor,
        targets2: Tensor,
        prior: Tensor | None,
    ) -> Tensor:
        """The swapped cross-entropy, weighted as ``target_weighting`` says."""
        weights = None
        if self.target_weighting == "inverse_prior":
            weights = (
                prior_weights(targets1, prior, self.distributed),
                prior_weights(targets2, prior, self.distributed),
            )
        return swapped_cross_entropy(
            logits1, logits2, targets1, targets2, self.temperature, weights
        )

    def forward(self, z1: Tensor, z2: Tensor, prior: Tensor | None = None) -> Tensor:
        """Scalar GH loss for ``[B, d]`` embeddings of two views."""
        return self.compute(z1, z2, prior).loss

    def extra_repr(self) -> str:
        k, d = self.structure.shape
        a = self.allocator.options
        return (
            f"K={k}, d={d}, epsilon={a.epsilon}, temperature={self.temperature}, "
            f"iterations={a.iterations}, logits={self.logits_kind}, allocation={a.name}, "
            f"target_weighting={self.target_weighting}"
        )


def _entropy(p: Tensor, dim: int = -1) -> Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(dim=dim)


@torch.no_grad()
def gh_diagnostics(output: GHOutput, temperature: float) -> dict[str, float]:
    """Cheap summaries of one GH evaluation, for logging (no second Sinkhorn).

    * ``assignment_entropy``: mean entropy (nats) of a sample's surrogate label row;
    * ``target_effective_anchors``: exp-entropy of the anchors' share of surrogate mass;
    * ``prediction_effective_anchors``: exp-entropy of the histogram of predicted anchors;
    * ``prediction_confidence``: mean largest prediction probability.
    """
    targets = torch.cat([output.targets1, output.targets2]).float()
    logits = torch.cat([output.logits1, output.logits2]).detach().float()
    probs = F.softmax(logits / temperature, dim=1)
    usage = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1]).float()
    return {
        "assignment_entropy": float(_entropy(targets).mean()),
        "target_effective_anchors": float(_entropy(targets.mean(dim=0)).exp()),
        "prediction_effective_anchors": float(_entropy(usage / usage.sum()).exp()),
        "prediction_confidence": float(probs.max(dim=1).values.mean()),
    }
