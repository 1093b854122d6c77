"""GH as a plug-in term: the loss, its anchor prior and its warm-up/ramp schedule, composed into
any method's step, with the bookkeeping a method passes on to the loop through its hooks:
priming after ``--init-from``, per-epoch logs, evaluation records and the checkpoint that paired
runs branch from (docs/design.md section 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony.eval.geometry import prior_agreement
from geoharmony.gh.anchors import uniform_structure
from geoharmony.gh.loss import GHLoss
from geoharmony.gh.options import GHConfig
from geoharmony.gh.priors import PRIORS, PriorEstimator, effective_number

__all__ = ["GHTerm", "build_prior", "gh_data_problems", "pairing_epoch"]


def build_prior(
    cfg: GHConfig,
    num_samples: int,
    distributed: bool = False,
    class_counts: Sequence[int] = (),
) -> PriorEstimator:
    """The estimator named by ``cfg.prior`` (``oracle`` needs the labels' ``class_counts``)."""
    return PRIORS[cfg.prior].from_options(cfg, num_samples, distributed, class_counts)


def pairing_epoch(cfg: GHConfig) -> int:
    """The end of the GH warm-up: a paired +GH run starts from its baseline's checkpoint here
    (the first phase, SSL only, is the same for both)."""
    return cfg.warmup_epochs


def gh_data_problems(cfg: GHConfig, num_samples: int, class_counts: Sequence[int]) -> list[str]:
    """What GH with ``cfg`` cannot do on ``num_samples`` pretraining images (``class_counts``
    empty: unlabeled); one message per problem, naming the setting and the fix."""
    problems = []
    if num_samples < cfg.num_anchors:
        empty = cfg.num_anchors - num_samples
        problems.append(
            f"gh.num_anchors={cfg.num_anchors} is more than the {num_samples} pretraining "
            f"images: the prior counts images per anchor, so {empty} or more anchors could "
            f"never hold one; set gh.num_anchors to at most {num_samples} (about the number of "
            "categories you expect)"
        )
    if not class_counts and cfg.prior == "oracle":
        problems.append(
            "gh.prior=oracle reads the true class shares, but the data has no labels; use "
            "gh.prior=bank (the paper's estimator)"
        )
    if not class_counts and cfg.targets == "labels":
        problems.append(
            "gh.targets=labels uses each image's class, but the data has no labels; use "
            "gh.targets=sinkhorn"
        )
    return problems


def _label_targets(cfg: GHConfig, num_samples: int, labels: Sequence[int]) -> Tensor:
    """``[N]`` int64 class ids for ``cfg.targets == "labels"`` (empty otherwise), validated."""
    if cfg.targets != "labels":
        return torch.zeros(0, dtype=torch.long)
    if len(labels) != num_samples:
        raise ValueError(
            f"gh.targets=labels needs a label for each of the {num_samples} pretraining images, "
            f"got {len(labels)}; this data source may have no labels"
        )
    ids = torch.as_tensor(list(labels), dtype=torch.long)
    if bool((ids < 0).any()) or int(ids.max()) >= cfg.num_anchors:
        raise ValueError(
            f"gh.targets=labels puts class k on anchor k, so gh.num_anchors ({cfg.num_anchors}) "
            f"must exceed the largest class id ({int(ids.max())}) and ids must be >= 0"
        )
    return ids


class GHTerm(nn.Module):
    """``w(epoch) * L_GH(z1, z2; prior)`` plus the prior's bookkeeping.

    The weight is 0 for ``warmup_epochs`` (only the prior is estimated, no Sinkhorn runs), rises
    linearly to ``weight`` over ``ramp_epochs``, then stays there. The prior is refreshed at the
    end of the warm-up and every ``prior_refresh_every`` epochs after it.

    ``labels`` (``N`` class ids in dataset-index order) is needed only by the diagnostic
    ``cfg.targets == "labels"``, which replaces Sinkhorn's surrogate labels by the true classes.
    """

    sample_labels: Tensor

    def __init__(
        self,
        cfg: GHConfig,
        embed_dim: int,
        num_samples: int,
        distributed: bool = False,
        class_counts: Sequence[int] = (),
        labels: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.loss = GHLoss(
            uniform_structure(cfg.num_anchors, embed_dim, seed=cfg.structure_seed),
            epsilon=cfg.epsilon,
            temperature=cfg.temperature,
            num_iters=cfg.sinkhorn_iters,
            logits=cfg.logits,  # type: ignore[arg-type]  # GHLoss checks it
            tol=cfg.sinkhorn_tol,
            distributed=distributed,
        )
        self.prior = build_prior(cfg, num_samples, distributed, class_counts)
        self.class_counts = list(class_counts)
        # Not persistent: the labels come from the data, and checkpoints stay interchangeable.
        self.register_buffer(
            "sample_labels", _label_targets(cfg, num_samples, labels), persistent=False
        )

    def weight(self, epoch: float) -> float:
        """GH weight at fractional ``epoch``."""
        past_warmup = epoch - self.cfg.warmup_epochs
        if past_warmup < 0:
            return 0.0
        if self.cfg.ramp_epochs <= 0:
            return self.cfg.weight
        return self.cfg.weight * min(1.0, past_warmup / self.cfg.ramp_epochs)

    def forward(
        self, z1: Tensor, z2: Tensor, indices: Tensor, epoch: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted GH loss of ``[B, d]`` projections and its logs; updates the prior's state."""
        weight = self.weight(epoch)
        if weight == 0.0:
            # Warm-up: estimate the prior from the view-1 logits, skip the allocation.
            with torch.no_grad():
                self.prior.update(indices, self.loss.logits(z1))
            return z1.new_zeros(()), {"gh_weight": z1.new_tensor(0.0)}
        targets = None
        if self.cfg.targets == "labels":
            targets = F.one_hot(self.sample_labels[indices], self.cfg.num_anchors).float()
        out = self.loss.compute(z1, z2, self.prior.prior(), targets)
        self.prior.update(indices, out.logits1.detach())
        logs = {"gh_loss": out.loss.detach(), "gh_weight": z1.new_tensor(weight)}
        return weight * out.loss, logs

    def on_epoch_start(self, epoch: int) -> None:
        self.prior.set_warmup(epoch < self.cfg.warmup_epochs)

    def on_epoch_end(self, epoch: int) -> None:
        finished = epoch + 1
        after = finished - self.cfg.warmup_epochs
        every = max(1, self.cfg.prior_refresh_every)
        if after == 0 or (after > 0 and after % every == 0):
            self.prior.refresh()

    @torch.no_grad()
    def prime(
        self,
        embed: Callable[[Tensor], Tensor],
        batches: Iterable[tuple[Tensor, Tensor, Tensor]],
        autocast: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        """Fill a fresh prior from the current model: ``embed`` (``[b, C, H, W]`` ->
        ``[b, d]``) of each batch's view 1, then a refresh.

        Used when a +GH run starts from a baseline checkpoint, which never estimated a prior:
        afterwards the bank holds the model's current logits.
        """
        for view1, _, indices in batches:
            with autocast():
                z1 = embed(view1)
            self.prior.prime(indices, self.loss.logits(z1))
        self.prior.refresh()

    def epoch_logs(self) -> dict[str, float]:
        """The prior's shape (and, with labels, its distance to the true class shares)."""
        prior = self.prior.prior().detach().cpu()
        out = {
            "prior_effective_anchors": effective_number(prior),
            "prior_max_share": float(prior.max()),
        }
        if sum(self.class_counts) > 0:
            # Anchors are unordered: compare the shapes (both sorted), KL(true || estimated).
            agreement = prior_agreement(prior, self.class_counts, align="sorted")
            out["true_effective_classes"] = agreement["effective_number_true"]
            out["prior_kl_to_true"] = agreement["kl"]
        return out

    def evaluation_records(self, class_counts: list[int]) -> dict[str, Any]:
        """``metrics.json``'s ``prior``: the estimate against the true class shares, or (no
        ``class_counts``: unlabeled data) the estimate's own shape."""
        prior = self.prior.prior().detach().cpu()
        if not class_counts:
            shape = {"effective_anchors": effective_number(prior), "max_share": float(prior.max())}
            return {"prior": {"estimated": prior.tolist(), **shape}}
        return {
            "prior": {
                "estimated": prior.tolist(),
                **prior_agreement(prior, class_counts, align="sorted"),
            }
        }
