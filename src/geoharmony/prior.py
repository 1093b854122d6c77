"""Estimators of the anchor marginal ``pi`` that GH's Sinkhorn allocation balances towards.

Every estimator is an ``nn.Module`` whose state lives in buffers, so ``state_dict`` /
``load_state_dict`` checkpoint it. The training loop calls :meth:`PriorEstimator.update` every
step with the view-1 geometric logits and :meth:`PriorEstimator.refresh` at the epoch boundaries
its schedule names; :meth:`PriorEstimator.prior` is what Sinkhorn receives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony import distributed as gh_dist

__all__ = ["BankPrior", "PriorEstimator", "StreamingPrior", "UniformPrior", "effective_number"]


def effective_number(distribution: Tensor) -> float:
    """``exp(entropy)`` of a ``[K]`` distribution: K for uniform, 1 for a point mass."""
    p = distribution.double() / distribution.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-300).log()).sum()))


class PriorEstimator(nn.Module):
    """Base class: a uniform prior until a subclass learns something better."""

    current: Tensor

    def __init__(self, num_anchors: int) -> None:
        super().__init__()
        if num_anchors < 2:
            raise ValueError(f"num_anchors must be >= 2, got {num_anchors}")
        self.num_anchors = num_anchors
        self.register_buffer("current", torch.full((num_anchors,), 1.0 / num_anchors))

    def prior(self) -> Tensor:
        """``[K]`` marginal, sums to 1."""
        return self.current

    def set_warmup(self, in_warmup: bool) -> None:
        """Tell the estimator whether GH is still in its warm-up phase."""

    def update(self, indices: Tensor, logits: Tensor) -> None:
        """Observe ``[B]`` dataset indices and their ``[B, K]`` view-1 geometric logits."""

    def refresh(self) -> None:
        """Recompute :meth:`prior` from what was observed (called at epoch boundaries)."""

    def _check(self, indices: Tensor, logits: Tensor) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_anchors:
            raise ValueError(f"logits must be [B, {self.num_anchors}], got {list(logits.shape)}")
        if indices.shape != logits.shape[:1]:
            raise ValueError(
                f"indices must be [{logits.shape[0]}] to match logits, got {list(indices.shape)}"
            )


class UniformPrior(PriorEstimator):
    """``pi_k = 1/K`` always (GH without prior estimation)."""


class BankPrior(PriorEstimator):
    """The paper's estimator: argmax histogram of a per-sample EMA bank of logits.

    Each of the ``N`` training samples owns a row of a zero-initialised ``[N, K]`` bank holding an
    EMA of its view-1 logits (momentum ``warmup_momentum`` during GH's warm-up, ``momentum``
    after). ``refresh`` sets ``pi`` to the normalised histogram of each row's argmax plus ``floor``
    counts per anchor.

    Two corrections to the official code: rows never observed are left out of the histogram
    (an all-zero row would vote for anchor 0), and under DDP every rank applies the gathered
    updates of all ranks, so the banks stay identical without summing uninitialised buffers.
    """

    bank: Tensor
    seen: Tensor

    def __init__(
        self,
        num_samples: int,
        num_anchors: int,
        warmup_momentum: float = 0.9,
        momentum: float = 0.999,
        floor: float = 0.0,
        distributed: bool = False,
    ) -> None:
        super().__init__(num_anchors)
        for name, value in (("warmup_momentum", warmup_momentum), ("momentum", momentum)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if floor < 0:
            raise ValueError(f"floor must be non-negative, got {floor}")
        self.warmup_momentum = warmup_momentum
        self.momentum = momentum
        self.active_momentum = warmup_momentum
        self.floor = floor
        self.distributed = distributed
        self.register_buffer("bank", torch.zeros(num_samples, num_anchors))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))

    def set_warmup(self, in_warmup: bool) -> None:
        self.active_momentum = self.warmup_momentum if in_warmup else self.momentum

    @torch.no_grad()
    def update(self, indices: Tensor, logits: Tensor) -> None:
        self._check(indices, logits)
        if self.distributed:
            indices = gh_dist.all_gather_no_grad(indices)
            logits = gh_dist.all_gather_no_grad(logits.detach())
        indices = indices.to(self.bank.device)
        if int(indices.min()) < 0 or int(indices.max()) >= self.bank.shape[0]:
            raise IndexError(
                f"sample indices must lie in [0, {self.bank.shape[0]}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        m = self.active_momentum
        rows = self.bank[indices]
        self.bank[indices] = m * rows + (1.0 - m) * logits.detach().to(self.bank)
        self.seen[indices] = True

    @torch.no_grad()
    def refresh(self) -> None:
        votes = self.bank[self.seen].argmax(dim=1)
        counts = torch.bincount(votes, minlength=self.num_anchors).to(self.current)
        counts += self.floor
        if float(counts.sum()) > 0:
            self.current.copy_(counts / counts.sum())


class StreamingPrior(PriorEstimator):
    """O(K)-memory estimator: EMA of the batch-mean soft assignment ``softmax(t / temperature)``.

    Beyond the paper, for data sets too large for an ``[N, K]`` bank. The prior is live: each
    update moves it; ``refresh`` is a no-op.
    """

    def __init__(
        self,
        num_anchors: int,
        momentum: float = 0.99,
        temperature: float = 0.1,
        distributed: bool = False,
    ) -> None:
        super().__init__(num_anchors)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.temperature = temperature
        self.distributed = distributed

    @torch.no_grad()
    def update(self, indices: Tensor, logits: Tensor) -> None:
        self._check(indices, logits)
        stats = torch.cat(
            [
                F.softmax(logits.detach().float() / self.temperature, dim=1).sum(dim=0),
                logits.new_tensor([logits.shape[0]], dtype=torch.float32),
            ]
        )
        if self.distributed:
            gh_dist.all_reduce_sum(stats)
        batch_mean = stats[:-1] / stats[-1]
        self.current.mul_(self.momentum).add_((1.0 - self.momentum) * batch_mean.to(self.current))
        self.current.div_(self.current.sum())
