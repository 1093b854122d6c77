"""Estimators of the anchor marginal ``pi`` that GH's Sinkhorn allocation balances towards.

Every estimator is an ``nn.Module`` whose state lives in buffers, so ``state_dict`` /
``load_state_dict`` checkpoint it. The training loop calls :meth:`PriorEstimator.update` every
step with the view-1 geometric logits and :meth:`PriorEstimator.refresh` at the epoch boundaries
its schedule names; :meth:`PriorEstimator.prior` is what Sinkhorn receives.
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
    "PRIORS",
    "BankPrior",
    "MatchedOraclePrior",
    "MixturePrior",
    "OraclePrior",
    "PlanPrior",
    "PowerLawPrior",
    "PriorData",
    "PriorEstimator",
    "StreamingPrior",
    "UniformPrior",
    "effective_number",
    "fit_vmf_mixture_weights",
    "matched_class_shares",
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


def _bank_options(cfg: GHConfig, data: PriorData) -> dict[str, Any]:
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
        return cls(data.num_samples, cfg.num_anchors, **_bank_options(cfg, data))

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


class OraclePrior(BankPrior):
    """A diagnostic, not a self-supervised estimator: the *true* class shares, by rank.

    Meant to answer "would GH work if the prior were known?". Anchors carry no class identity,
    so the true shares (largest first, zero-padded to ``K`` or truncated and renormalised) are
    handed to the anchors in the rank order of the paper's bank histogram: the anchor the most
    samples vote for gets the largest class share. When that histogram is near uniform (as
    measured), the shares land on anchors no particular class owns, so this is *not* a true
    oracle: :class:`MatchedOraclePrior` matches anchors to classes. Kept so that the runs
    recorded with it stay reproducible. The bank (and its checkpoint buffers) is the
    :class:`BankPrior`'s; only :meth:`refresh` differs. It reads the labels' counts, so it must
    never be reported as a method.

    Args:
        class_counts: pretraining images per class, any order (``C`` entries).
        Other arguments as :class:`BankPrior`.
    """

    true_shares: Tensor

    def __init__(
        self,
        num_samples: int,
        num_anchors: int,
        class_counts: Sequence[int],
        **bank: Any,
    ) -> None:
        super().__init__(num_samples, num_anchors, **bank)
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        if counts.ndim != 1 or len(counts) == 0 or bool((counts < 0).any()) or counts.sum() <= 0:
            raise ValueError(f"class_counts must be non-negative with a positive sum, got {counts}")
        shares = torch.zeros(num_anchors, dtype=torch.float64)
        top = counts.sort(descending=True).values[:num_anchors]
        shares[: len(top)] = top / top.sum()
        self.register_buffer("true_shares", shares.float())

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        if not data.class_counts:
            raise ValueError(
                "gh.prior=oracle needs the pretraining class counts; this data source has no labels"
            )
        return cls(data.num_samples, cfg.num_anchors, data.class_counts, **_bank_options(cfg, data))

    @torch.no_grad()
    def refresh(self) -> None:
        # Stable sort, so ties (e.g. no votes at all) keep the anchor order.
        order = torch.sort(self.vote_counts(), descending=True, stable=True).indices
        mass = torch.empty_like(self.current)
        mass[order] = self.true_shares.to(mass) * max(int(self.seen.sum()), 1) + self.floor
        self.current.copy_(mass / mass.sum())


class MatchedOraclePrior(BankPrior):
    """A diagnostic upper bound, not a self-supervised estimator: the true class shares, each
    given to the anchors that class's images are allocated to.

    :class:`OraclePrior` hands the true shares to anchors in the rank order of the bank's vote
    histogram; when that histogram is near uniform the shares land on anchors no particular
    class owns. This one matches anchors to classes: it accumulates the label x anchor
    co-occurrence of the allocation's targets between refreshes (before the first allocation,
    of the bank rows' argmax), gives each class one anchor by the Hungarian algorithm on it
    (``scipy.optimize.linear_sum_assignment``, maximum co-occurrence), every other anchor to
    the class that co-occurs with it most, and splits each class's true share over its anchors
    in proportion to their co-occurrence. With ``K`` = classes that is a one-to-one matching.
    Anchors no image is allocated to get only the ``floor``. It reads the labels, so it must
    never be reported as a method.

    Args:
        labels: each pretraining image's class, in dataset-index order (``N`` entries).
        Other arguments as :class:`BankPrior`.
    """

    cooccurrence: Tensor
    sample_labels: Tensor

    def __init__(
        self,
        num_samples: int,
        num_anchors: int,
        labels: Sequence[int],
        **bank: Any,
    ) -> None:
        super().__init__(num_samples, num_anchors, **bank)
        ids = torch.as_tensor(list(labels), dtype=torch.long)
        if ids.shape != (num_samples,) or bool((ids < 0).any()):
            raise ValueError(
                f"labels must hold a class id >= 0 for each of the {num_samples} pretraining "
                f"images, got {tuple(ids.shape)}"
            )
        num_classes = int(ids.max()) + 1
        if num_classes > num_anchors:
            raise ValueError(
                f"the matched oracle gives every class an anchor: gh.num_anchors ({num_anchors})"
                f" must be at least the number of classes ({num_classes})"
            )
        # Not persistent: the labels come from the data, and checkpoints stay interchangeable.
        self.register_buffer("sample_labels", ids, persistent=False)
        self.register_buffer("cooccurrence", torch.zeros(num_classes, num_anchors))

    @classmethod
    def from_options(cls, cfg: GHConfig, data: PriorData) -> Self:
        if len(data.labels) != data.num_samples:
            raise ValueError(
                "gh.prior=oracle_matched needs every pretraining image's label; this data "
                "source has none"
            )
        return cls(data.num_samples, cfg.num_anchors, data.labels, **_bank_options(cfg, data))

    @torch.no_grad()
    def observe_allocation(self, indices: Tensor, targets: Tensor) -> None:
        if self.distributed:
            indices = parallel.all_gather_no_grad(indices)
            targets = parallel.all_gather_no_grad(targets.detach())
        labels = self.sample_labels[indices.to(self.sample_labels.device)]
        self.cooccurrence.index_add_(0, labels, targets.detach().to(self.cooccurrence))

    @torch.no_grad()
    def refresh(self) -> None:
        cooccurrence = self.cooccurrence
        if float(cooccurrence.sum()) == 0:  # no allocation yet: the bank's hard assignment
            seen = self.seen
            votes = F.one_hot(self.bank[seen].argmax(dim=1), self.num_anchors)
            cooccurrence = torch.zeros_like(self.cooccurrence)
            cooccurrence.index_add_(0, self.sample_labels[seen], votes.to(cooccurrence))
        counts = torch.bincount(self.sample_labels, minlength=cooccurrence.shape[0])
        shares = matched_class_shares(cooccurrence, counts.to(cooccurrence) / counts.sum())
        mass = shares * max(int(self.seen.sum()), 1) + self.floor
        if float(mass.sum()) > 0:
            self.current.copy_(mass / mass.sum())
        self.cooccurrence.zero_()


@torch.no_grad()
def matched_class_shares(cooccurrence: Tensor, class_shares: Tensor) -> Tensor:
    """``[K]`` anchor masses: class ``c``'s share ``class_shares[c]`` split over the anchors it
    owns in proportion to ``cooccurrence[c]`` (``[C, K]``, ``C <= K``). Each class owns its
    Hungarian-matched anchor and every other anchor it co-occurs with most; anchors with no
    co-occurrence get nothing. Sums to 1 when every class has co-occurrence."""
    from scipy.optimize import linear_sum_assignment  # scikit-learn's dependency

    c, k = cooccurrence.shape
    weights = cooccurrence.double().cpu()
    rows, cols = linear_sum_assignment(weights.numpy(), maximize=True)
    owner = weights.argmax(dim=0)
    owner[weights.sum(dim=0) == 0] = -1
    owner[torch.as_tensor(cols)] = torch.as_tensor(rows)
    out = torch.zeros(k, dtype=torch.float64)
    for cls in range(c):
        mine = owner == cls
        weight = weights[cls] * mine
        if float(weight.sum()) == 0:  # the class co-occurs with none of its anchors
            weight = mine.double()
        out += float(class_shares[cls]) * weight / weight.sum()
    return out.to(cooccurrence)


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


class MixturePrior(BankPrior):
    """A prior that tracks the imbalance: EM for a von Mises-Fisher mixture on the bank's rows.

    The same per-sample EMA bank as :class:`BankPrior` (same update, momenta, floor and
    checkpoint buffers); only :meth:`refresh` differs. Why the paper's argmax histogram comes out
    nearly uniform, and what this estimator does about it:

    * The argmax of a noisy logit row is a *confused* label: when a class's rows scatter around
      its anchor, a share of them vote for other anchors, and the histogram is the true prior
      pushed through a confusion matrix, i.e. mixed towards uniform. The fix is the classical
      one for estimating class proportions from noisy posteriors (Saerens et al. 2002): fit the
      mixing weights by maximum likelihood, which *deconvolves* the confusion instead of counting
      hard votes. Unlike Sinkhorn under a uniform marginal, the weights are free, so a head class
      is not split over several anchors to even out the masses.
    * The likelihood is a mixture of K von Mises-Fisher components on the sphere of centred,
      normalised bank rows (the projected logits already sum to zero for a simplex ETF; they live
      on S^(K-2)), with one concentration kappa shared by all components (estimated by the
      Banerjee et al. 2005 approximation, not guessed: a wrong temperature biases the weights)
      and free weights pi. The component means start at the anchors' own logit directions and
      are free too: during the SSL warm-up the class clusters need not sit on anchors, and a
      component that follows a whole head cluster counts it once instead of splitting it between
      the two anchors it falls between.
    * EM starts from the hard argmax assignment (so the first M-step reproduces the paper's
      histogram) and only moves the weights where the likelihood says so. Components are mapped
      back to anchors one-to-one by the Hungarian algorithm on mean-anchor cosine
      (``scipy.optimize.linear_sum_assignment``), so ``pi_k`` is the mass of the cluster anchor
      ``k`` is closest to; with means started at the anchors this is usually the identity.

    Limits: like any mixture fit without a size penalty, with more anchors than classes
    (K = 100, C = 10) a class may be covered by several components, which raises the effective
    number; and if the features hold no cluster structure (early SSL) nothing can recover the
    class prior from them. ``prior_floor`` counts are added as in the paper's estimator.

    Args:
        em_iters: EM iterations per refresh (each is two ``[N, K] x [K, K]`` products).
        tol: stop when the weights move less than this (max absolute change).
        Other arguments as :class:`BankPrior`.
    """

    def __init__(
        self,
        num_samples: int,
        num_anchors: int,
        em_iters: int = 200,
        tol: float = 1e-7,
        **bank: Any,
    ) -> None:
        super().__init__(num_samples, num_anchors, **bank)
        if em_iters < 1:
            raise ValueError(f"em_iters must be >= 1, got {em_iters}")
        self.em_iters = em_iters
        self.tol = tol
        self.last_kappa = float("nan")  # diagnostics of the latest fit
        self.last_iters = 0

    @torch.no_grad()
    def refresh(self) -> None:
        rows = self.bank[self.seen]
        if rows.shape[0] < 2:
            return
        weights, kappa, iters = fit_vmf_mixture_weights(rows, self.em_iters, self.tol)
        self.last_kappa, self.last_iters = kappa, iters
        counts = weights * rows.shape[0] + self.floor
        if float(counts.sum()) > 0:
            self.current.copy_((counts / counts.sum()).to(self.current))


def _centred_unit(x: Tensor) -> Tensor:
    """Rows minus their mean over the last axis, scaled to unit norm (zero rows stay zero)."""
    x = x - x.mean(dim=-1, keepdim=True)
    return F.normalize(x, dim=-1)


@torch.no_grad()
def fit_vmf_mixture_weights(
    rows: Tensor, iters: int = 200, tol: float = 1e-7
) -> tuple[Tensor, float, int]:
    """Mixing weights of a K-component vMF mixture fitted by EM to ``[N, K]`` logit rows.

    Component ``k`` starts at anchor ``k``'s logit direction (the centred one-hot vector) and
    the EM starts from the hard argmax assignment. Returns ``([K]`` float64 weights summing to
    1, aligned to anchors by the Hungarian algorithm``, kappa, iterations run)``.
    """
    from scipy.optimize import linear_sum_assignment  # scikit-learn's dependency

    x = _centred_unit(rows.double())  # [N, K] on S^(K-2)
    n, k = x.shape
    dim = k - 1  # the centred rows span K - 1 dimensions
    anchors = _centred_unit(torch.eye(k, dtype=x.dtype, device=x.device))  # [K, K]
    resp = F.one_hot(x.argmax(dim=1), k).to(x.dtype)  # [N, K], the paper's hard votes
    weights = resp.mean(dim=0)
    means = anchors.clone()
    kappa = 1.0
    done = 0
    for done in range(1, iters + 1):
        # M-step: weights, means (kept at their previous value where a component is empty),
        # shared concentration from the mean resultant length (Banerjee et al. 2005, eq. 4.4).
        mass = resp.sum(dim=0)  # [K]
        new_weights = mass / n
        sums = resp.T @ x  # [K, K]
        norms = sums.norm(dim=1)
        alive = norms > 1e-12
        means = torch.where(alive[:, None], sums / norms.clamp_min(1e-12)[:, None], means)
        r_bar = float(norms.sum() / n)
        r_bar = min(max(r_bar, 1e-6), 1.0 - 1e-6)
        kappa = min(r_bar * (dim - r_bar**2) / (1.0 - r_bar**2), 1e4)
        moved = float((new_weights - weights).abs().max())
        weights = new_weights
        if done > 1 and moved < tol:
            break
        # E-step (the vMF normaliser is shared by all components and cancels).
        log_post = weights.clamp_min(1e-300).log()[None, :] + kappa * (x @ means.T)
        resp = torch.softmax(log_post, dim=1)
    # Map components to anchors one-to-one (maximum total cosine).
    comp, anchor = linear_sum_assignment((means @ anchors.T).cpu().numpy(), maximize=True)
    aligned = torch.zeros_like(weights)
    aligned[torch.as_tensor(anchor, device=x.device)] = weights[
        torch.as_tensor(comp, device=x.device)
    ]
    return aligned / aligned.sum(), kappa, done


# The estimators ``gh.prior`` selects from (the choices of that option are these keys).
PRIORS: dict[str, type[PriorEstimator]] = {
    "bank": BankPrior,
    "streaming": StreamingPrior,
    "uniform": UniformPrior,
    "mixture": MixturePrior,
    "plan": PlanPrior,
    "powerlaw": PowerLawPrior,
    "oracle": OraclePrior,
    "oracle_matched": MatchedOraclePrior,
}
