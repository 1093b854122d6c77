"""Prior diagnostics that read the labels: never methods, upper bounds that explain a failure.

* :class:`OraclePrior`: the true class shares in the rank order of the bank's vote histogram
  (not a true oracle when that histogram is near uniform; kept for the runs recorded with it);
* :class:`MatchedOraclePrior`: the true shares on the anchors each class is allocated to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from geoharmony import parallel
from geoharmony.gh.options import GHConfig
from geoharmony.gh.priors import BankPrior, PriorData, bank_options

__all__ = ["MatchedOraclePrior", "OraclePrior", "matched_class_shares"]


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
        return cls(data.num_samples, cfg.num_anchors, data.class_counts, **bank_options(cfg, data))

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
        return cls(data.num_samples, cfg.num_anchors, data.labels, **bank_options(cfg, data))

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
