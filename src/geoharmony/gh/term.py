"""GH as a plug-in term: the loss, its anchor prior and its warm-up/ramp schedule, composed into
any method's step, with the bookkeeping a method passes on to the loop through its hooks:
priming after ``--init-from``, per-epoch logs, evaluation records and the checkpoint that paired
runs branch from (docs/design.md section 3)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony.gh.allocation import RampKind, partial_mass
from geoharmony.gh.anchors import uniform_structure
from geoharmony.gh.estimators import PRIORS
from geoharmony.gh.loss import GHLoss, LogitsKind
from geoharmony.gh.options import GHConfig
from geoharmony.gh.priors import PriorData, PriorEstimator, effective_number, prior_agreement

__all__ = ["GHTerm", "build_prior", "gh_data_problems", "pairing_epoch"]

log = logging.getLogger(__name__)


def build_prior(
    cfg: GHConfig,
    num_samples: int,
    distributed: bool = False,
    class_counts: Sequence[int] = (),
    labels: Sequence[int] = (),
) -> PriorEstimator:
    """The estimator named by ``cfg.prior.name`` (the oracles need the labels:
    ``class_counts``, or each image's class ``labels``)."""
    data = PriorData(num_samples, distributed, class_counts, labels)
    return PRIORS[cfg.prior.name].from_options(cfg, data)


def pairing_epoch(cfg: GHConfig) -> int:
    """The end of the GH warm-up: a paired +GH run starts from its baseline's checkpoint here
    (the first phase, SSL only, is the same for both)."""
    return cfg.warmup_epochs


def gh_data_problems(cfg: GHConfig, num_samples: int, class_counts: Sequence[int]) -> list[str]:
    """What GH with ``cfg`` cannot do on ``num_samples`` pretraining images (``class_counts``
    empty: unlabeled); one message per problem, naming the setting and the fix. The options'
    own ranges are checked when the configuration is loaded (:meth:`GHConfig.problems`)."""
    problems = []
    if num_samples < cfg.num_anchors:
        empty = cfg.num_anchors - num_samples
        problems.append(
            f"gh.num_anchors={cfg.num_anchors} is more than the {num_samples} pretraining "
            f"images: the prior counts images per anchor, so {empty} or more anchors could "
            f"never hold one; set gh.num_anchors to at most {num_samples} (about the number of "
            "categories you expect)"
        )
    if not class_counts and cfg.prior.name in ("oracle", "oracle_matched"):
        problems.append(
            f"gh.prior.name={cfg.prior.name} reads the true class shares, but the data has no "
            "labels; use gh.prior.name=bank (the paper's estimator)"
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
    linearly to ``weight`` over ``ramp_epochs`` in per-epoch steps (the official ramp: ``1 /
    ramp_epochs`` of it in GH's first epoch), then stays there. The prior is refreshed at the
    end of the warm-up and every ``prior.refresh_every`` epochs after it.

    Beyond the paper (``cfg.allocation.name``): the allocation may relax the anchor marginal or
    send part of the mass to a dummy anchor (``partial``: its mass ``rho`` ramps over the GH
    phase, from the end of the warm-up to ``total_epochs``).

    ``labels`` (``N`` class ids in dataset-index order) is needed only by the diagnostics
    ``cfg.targets == "labels"``, which replaces the surrogate labels by the true classes, and
    ``cfg.prior.name == "oracle_matched"``.
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
        total_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.total_epochs = total_epochs
        if 0 < total_epochs <= cfg.warmup_epochs:
            log.warning(
                "gh.warmup_epochs=%d is not below optim.epochs=%d: GH never turns on and this "
                "run trains the plain method (lower gh.warmup_epochs for a +GH run)",
                cfg.warmup_epochs,
                total_epochs,
            )
        self.loss = GHLoss(
            uniform_structure(cfg.num_anchors, embed_dim, seed=cfg.structure_seed),
            temperature=cfg.temperature,
            logits=cast(LogitsKind, cfg.logits),
            allocation=cfg.allocation,
            target_weighting=cfg.target_weighting,
            distributed=distributed,
        )
        self.prior = build_prior(cfg, num_samples, distributed, class_counts, labels)
        self.class_counts = list(class_counts)
        # Not persistent: the labels come from the data, and checkpoints stay interchangeable.
        self.register_buffer(
            "sample_labels", _label_targets(cfg, num_samples, labels), persistent=False
        )

    def weight(self, epoch: float) -> float:
        """GH weight during fractional ``epoch`` (0-based): constant over each epoch, as the
        official loop's ``w = (epoch + 1 - warm_up) / GH_warm_up``."""
        gh_epoch = math.floor(epoch) + 1 - self.cfg.warmup_epochs  # 1 in GH's first epoch
        if gh_epoch <= 0:
            return 0.0
        if self.cfg.ramp_epochs <= 0:
            return self.cfg.weight
        return self.cfg.weight * min(1.0, gh_epoch / self.cfg.ramp_epochs)

    def partial_mass(self, epoch: float) -> float:
        """``partial``'s ``rho`` at fractional ``epoch``: the ramp over the GH phase."""
        c, a = self.cfg, self.cfg.allocation
        progress = (epoch - c.warmup_epochs) / max(self.total_epochs - c.warmup_epochs, 1)
        return partial_mass(
            progress, a.partial_start, a.partial_end, cast(RampKind, a.partial_ramp)
        )

    def forward(
        self, z1: Tensor, z2: Tensor, indices: Tensor, epoch: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted GH loss of ``[B, d]`` projections and its logs; updates the prior's
        state."""
        weight = self.weight(epoch)
        if weight == 0.0:
            # Warm-up: estimate the prior from the view-1 logits, skip the allocation.
            with torch.no_grad():
                self.prior.update(indices, self.loss.logits(z1))
            return z1.new_zeros(()), {"gh_weight": z1.new_tensor(0.0)}
        targets = None
        if self.cfg.targets == "labels":
            targets = F.one_hot(self.sample_labels[indices], self.cfg.num_anchors).float()
        logs: dict[str, Tensor] = {}
        if self.cfg.allocation.name == "partial":
            self.loss.rho = self.partial_mass(epoch)
            logs["gh_rho"] = z1.new_tensor(self.loss.rho)
        out = self.loss.compute(z1, z2, self.prior.prior(), targets)
        self.prior.update(indices, out.logits1.detach())
        mean_targets = 0.5 * (out.targets1 + out.targets2)
        self.prior.observe_allocation(indices, mean_targets)  # oracle_matched's co-occurrence
        logs = {"gh_loss": out.loss.detach(), "gh_weight": z1.new_tensor(weight), **logs}
        return weight * out.loss, logs

    def on_epoch_start(self, epoch: int) -> None:
        self.prior.set_warmup(epoch < self.cfg.warmup_epochs)

    def on_epoch_end(self, epoch: int) -> None:
        finished = epoch + 1
        after = finished - self.cfg.warmup_epochs
        every = self.cfg.prior.refresh_every
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
