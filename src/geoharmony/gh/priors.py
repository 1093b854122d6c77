"""Estimators of the anchor marginal ``pi`` that GH's Sinkhorn allocation balances towards.

Every estimator is an ``nn.Module`` whose state lives in buffers, so ``state_dict`` /
``load_state_dict`` checkpoint it. The training loop calls :meth:`PriorEstimator.update` every
step with the view-1 geometric logits, :meth:`PriorEstimator.observe_allocation` with the
surrogate labels, and :meth:`PriorEstimator.refresh` at the epoch boundaries its schedule names;
:meth:`PriorEstimator.prior` is what the allocation receives. The diagnostics that read the
labels are in :mod:`geoharmony.gh.oracles`, and the registry ``gh.prior.name`` selects from in
:mod:`geoharmony.gh.estimators`. :func:`prior_agreement` compares an estimate with the true class
shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor, nn

from geoharmony import parallel
from geoharmony.gh.options import MIN_ANCHORS, GHConfig

__all__ = [
    "BankPrior",
    "PriorData",
    "PriorEstimator",
    "StreamingPrior",
    "bank_options",
    "effective_number",
    "prior_agreement",
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
        "warmup_momentum": cfg.prior.warmup_momentum,
        "momentum": cfg.prior.momentum,
        "floor": cfg.prior.floor,
        "distributed": data.distributed,
    }


class PriorEstimator(nn.Module):
    """Base class: a uniform prior until a subclass learns something better."""

    current: Tensor

    def __init__(self, num_anchors: int) -> None:
        super().__init__()
        if num_anchors < MIN_ANCHORS:
            raise ValueError(f"num_anchors must be >= {MIN_ANCHORS}, got {num_anchors}")
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
            cfg.num_anchors,
            cfg.prior.streaming_momentum,
            cfg.temperature,
            distributed=data.distributed,
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


def _entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata  # only for index-aligned comparisons (keeps gh scipy-free)

    ra, rb = rankdata(a), rankdata(b)  # average ranks for ties
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")  # undefined for a constant vector (e.g. a uniform prior)
    return float(np.corrcoef(ra, rb)[0, 1])


def prior_agreement(
    estimated: Sequence[float] | ArrayLike | Tensor,
    true: Sequence[float] | ArrayLike | Tensor,
    *,
    align: Literal["auto", "index", "sorted"] = "auto",
    eps: float = 1e-12,
) -> dict[str, float]:
    """Compare an estimated class-marginal prior (over K anchors) with the true one (C classes).

    Both inputs are normalised to sum to 1. Alignment:

    * ``index``: entry k of one is compared with entry k of the other (needs K == C and anchors
      matched to classes);
    * ``sorted``: both are sorted descending and the shorter is padded with zeros to the same
      length, so only the *shape* of the imbalance is compared (anchors are unordered);
    * ``auto`` (default): ``index`` when K == C, ``sorted`` otherwise.

    Returns:
        ``kl``: KL(true || estimated) in nats, with ``estimated`` smoothed by ``eps`` (then
        renormalised) so that a zero estimate (including padding) gives a large finite value;
        ``spearman``: rank correlation of the aligned vectors (average ranks for ties); NaN in
        ``sorted`` mode, where it would be trivially close to 1, or when either is constant;
        ``effective_number_estimated`` / ``effective_number_true``: ``exp(entropy)`` of each
        distribution as given (K and C at most; 1 for a point mass).
    """
    q = np.asarray(
        estimated.detach().cpu().numpy() if isinstance(estimated, Tensor) else estimated,
        dtype=np.float64,
    ).ravel()
    p = np.asarray(
        true.detach().cpu().numpy() if isinstance(true, Tensor) else true, dtype=np.float64
    ).ravel()
    for name, v in (("estimated", q), ("true", p)):
        if v.size == 0 or (v < 0).any() or not np.isfinite(v).all() or v.sum() <= 0:
            raise ValueError(f"{name} must be non-empty, finite, >= 0 and not all zero")
    q, p = q / q.sum(), p / p.sum()
    out = {
        "effective_number_estimated": math.exp(_entropy(q)),
        "effective_number_true": math.exp(_entropy(p)),
    }
    mode = ("index" if q.size == p.size else "sorted") if align == "auto" else align
    if mode == "index":
        if q.size != p.size:
            raise ValueError(f"align='index' needs K == C, got K={q.size}, C={p.size}")
        qa, pa = q, p
        spearman = _spearman(qa, pa)
    elif mode == "sorted":
        length = max(q.size, p.size)
        qa = np.zeros(length)
        pa = np.zeros(length)
        qa[: q.size] = np.sort(q)[::-1]
        pa[: p.size] = np.sort(p)[::-1]
        spearman = float("nan")
    else:
        raise ValueError(f"align must be auto, index or sorted, got {align!r}")
    qs = (qa + eps) / (qa + eps).sum()
    nz = pa > 0
    out["kl"] = float((pa[nz] * np.log(pa[nz] / qs[nz])).sum())
    out["spearman"] = spearman
    return {
        k: out[k] for k in ("kl", "spearman", "effective_number_estimated", "effective_number_true")
    }
