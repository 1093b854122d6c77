"""Estimators of the anchor marginal ``pi`` that GH's Sinkhorn allocation balances towards.

Every estimator is an ``nn.Module`` whose state lives in buffers, so ``state_dict`` /
``load_state_dict`` checkpoint it. The training loop calls :meth:`PriorEstimator.update` every
step with the view-1 geometric logits, :meth:`PriorEstimator.observe_allocation` with the
surrogate labels, and :meth:`PriorEstimator.refresh` at the epoch boundaries its schedule names;
:meth:`PriorEstimator.prior` is what the allocation receives. The diagnostics that read the
labels are in :mod:`geoharmony.gh.oracles`, the vMF-mixture estimator in
:mod:`geoharmony.gh.mixture`, and the registry ``gh.prior`` selects from in
:mod:`geoharmony.gh.estimators`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony import parallel

if TYPE_CHECKING:
    from geoharmony.gh.options import GHConfig

__all__ = [
    "BankPrior",
    "PlanPrior",
    "PowerLawPrior",
    "PriorData",
    "PriorEstimator",
    "StreamingPrior",
    "UniformPrior",
    "bank_options",
    "effective_number",
]


def effective_number(distribution: Tensor) -> float:
    """``exp(entropy)`` of a ``[K]`` distribution: K for uniform, 1 for a point mass."""
    p = distribution.double() / distribution.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-300).log()).sum()))


@dataclass(frozen=True)
class PriorData:
    """What an estimator may know about the pretraining data.

    Attributes:
        num_samples: ``N``, images in the pretraining set (the bank's rows).
        distributed: whether the estimator sees one shard of every global batch.
        class_counts: images per class (read only by the oracle diagnostics).
        labels: each image's class, in dataset-index order (likewise).
    """

    num_samples: int
    distributed: bool = False
    class_counts: Sequence[int] = ()
    labels: Sequence[int] = ()


def _check_momentum(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def bank_options(cfg: GHConfig, data: PriorData) -> dict[str, Any]:
    """The keyword arguments of :class:`BankPrior` (and of the estimators built on its bank)."""
    return {
        "warmup_momentum": cfg.bank_warmup_momentum,
        "momentum": cfg.bank_momentum,
        "floor": cfg.prior_floor,
        "distributed": data.distributed,
    }


class PriorEstimator(nn.Module):
    """Base class: a uniform prior until a subclass learns something better."""

    current: Tensor

    def __init__(self, num_anchors: int) -> None:
        super().__init__()
        if num_anchors < 2:
            raise ValueError(f"num_anchors must be >= 2, got {num_anchors}")
        self.num_anchors = num_anchors
        self.register_buffer("current", torch.full((num_anchors,), 1.0 / num_anchors))

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        """The estimator as the ``gh`` options configure it, for ``data``."""
        return cls(cfg.num_anchors)

    def prior(self) -> Tensor:
        """``[K]`` marginal, sums to 1."""
        return self.current

    def set_warmup(self, in_warmup: bool) -> None:
        """Tell the estimator whether GH is still in its warm-up phase."""

    def update(self, indices: Tensor, logits: Tensor) -> None:
        """Observe ``[B]`` dataset indices and their ``[B, K]`` view-1 geometric logits."""

    def prime(self, indices: Tensor, logits: Tensor) -> None:
        """Observe a sample for a fresh estimator started from another run's model (a paired
        +GH run): by default an ordinary :meth:`update`."""
        self.update(indices, logits)

    def observe_allocation(self, indices: Tensor, targets: Tensor) -> None:
        """Observe the surrogate labels ``[B, K]`` the allocation gave the samples ``[B]``
        (only estimators that learn from the allocation itself use them)."""

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
        _check_momentum("warmup_momentum", warmup_momentum)
        _check_momentum("momentum", momentum)
        if floor < 0:
            raise ValueError(f"floor must be non-negative, got {floor}")
        self.warmup_momentum = warmup_momentum
        self.momentum = momentum
        self.active_momentum = warmup_momentum
        self.floor = floor
        self.distributed = distributed
        self.register_buffer("bank", torch.zeros(num_samples, num_anchors))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        return cls(data.num_samples, cfg.num_anchors, **bank_options(cfg, data))

    def set_warmup(self, in_warmup: bool) -> None:
        self.active_momentum = self.warmup_momentum if in_warmup else self.momentum

    def update(self, indices: Tensor, logits: Tensor) -> None:
        self._observe(indices, logits, self.active_momentum)

    def prime(self, indices: Tensor, logits: Tensor) -> None:
        """A row observed once holds the model's current logits, which is what the EMA of
        momentum 0.9 over hundreds of warm-up epochs holds."""
        self._observe(indices, logits, 0.0)

    @torch.no_grad()
    def _observe(self, indices: Tensor, logits: Tensor, m: float) -> None:
        self._check(indices, logits)
        if self.distributed:
            indices = parallel.all_gather_no_grad(indices)
            logits = parallel.all_gather_no_grad(logits.detach())
        indices = indices.to(self.bank.device)
        if int(indices.min()) < 0 or int(indices.max()) >= self.bank.shape[0]:
            raise IndexError(
                f"sample indices must lie in [0, {self.bank.shape[0]}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        rows = self.bank[indices]
        self.bank[indices] = m * rows + (1.0 - m) * logits.detach().to(self.bank)
        self.seen[indices] = True

    def vote_counts(self) -> Tensor:
        """``[K]`` how many observed samples' bank rows have their argmax on each anchor."""
        return torch.bincount(self.bank[self.seen].argmax(dim=1), minlength=self.num_anchors)

    @torch.no_grad()
    def refresh(self) -> None:
        counts = self.vote_counts().to(self.current)
        counts += self.floor
        if float(counts.sum()) > 0:
            self.current.copy_(counts / counts.sum())


class PlanPrior(PriorEstimator):
    """The allocation's own estimate: an EMA of the anchors' share of the surrogate labels.

    Beyond the paper. With a KL-relaxed allocation (``gh.allocation=relaxed``/``partial``) the
    plan's anchor masses move towards where the samples' predictions put them, so feeding their
    EMA back as the prior lets the allocation's marginal follow the data instead of the bank's
    near-uniform vote histogram (with the balanced allocation the plan's masses *are* the prior,
    and this estimator stays where it starts). Uniform until the first allocation; live (each
    step moves it), ``refresh`` is a no-op.
    """

    def __init__(self, num_anchors: int, momentum: float = 0.99, distributed: bool = False):
        super().__init__(num_anchors)
        _check_momentum("momentum", momentum)
        self.momentum = momentum
        self.distributed = distributed

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        return cls(cfg.num_anchors, momentum=cfg.plan_momentum, distributed=data.distributed)

    @torch.no_grad()
    def observe_allocation(self, indices: Tensor, targets: Tensor) -> None:
        mass = targets.detach().float().sum(dim=0)
        if self.distributed:
            parallel.all_reduce_sum(mass)
        if float(mass.sum()) <= 0:
            return
        self.current.mul_(self.momentum).add_((1.0 - self.momentum) * (mass / mass.sum()))
        self.current.div_(self.current.sum())


class PowerLawPrior(PriorEstimator):
    """A fixed power-law marginal, ``pi_k ~ (k + 1) ** -exponent`` in anchor order (PMSN, Assran
    et al., ICLR 2023: a long-tailed cluster prior instead of the uniform one). Beyond the paper.

    The anchors are fixed but the network is not: it learns which of them the frequent
    categories take. Nothing is estimated; ``update`` and ``refresh`` are no-ops.
    """

    def __init__(self, num_anchors: int, exponent: float = 0.25) -> None:
        super().__init__(num_anchors)
        if exponent < 0:
            raise ValueError(f"exponent must be >= 0, got {exponent}")
        shares = torch.arange(1, num_anchors + 1, dtype=torch.float64) ** -exponent
        self.current.copy_((shares / shares.sum()).float())

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        return cls(cfg.num_anchors, cfg.powerlaw_exponent)


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
        _check_momentum("momentum", momentum)
        self.momentum = momentum
        self.temperature = temperature
        self.distributed = distributed

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        return cls(
            cfg.num_anchors, cfg.streaming_momentum, cfg.temperature, distributed=data.distributed
        )

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
            parallel.all_reduce_sum(stats)
        batch_mean = stats[:-1] / stats[-1]
        self.current.mul_(self.momentum).add_((1.0 - self.momentum) * batch_mean.to(self.current))
        self.current.div_(self.current.sum())
