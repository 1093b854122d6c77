"""GH as a plug-in term: the loss, its anchor prior and its warm-up/ramp schedule, composed into
any method's step (DESIGN.md section 3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony.config import GHConfig
from geoharmony.geometry import uniform_structure
from geoharmony.losses import GHLoss, gh_diagnostics
from geoharmony.prior import (
    BankPrior,
    MixturePrior,
    OraclePrior,
    PriorEstimator,
    StreamingPrior,
    UniformPrior,
)

__all__ = ["GHTerm", "build_prior"]


def build_prior(
    cfg: GHConfig,
    num_samples: int,
    distributed: bool = False,
    class_counts: Sequence[int] = (),
) -> PriorEstimator:
    """The estimator named by ``cfg.prior`` (``oracle`` needs the labels' ``class_counts``)."""
    if cfg.prior == "oracle":
        if not class_counts:
            raise ValueError(
                "gh.prior=oracle needs the pretraining class counts; this data source has no labels"
            )
        return OraclePrior(
            num_samples,
            cfg.num_anchors,
            class_counts,
            warmup_momentum=cfg.bank_warmup_momentum,
            momentum=cfg.bank_momentum,
            floor=cfg.prior_floor,
            distributed=distributed,
        )
    if cfg.prior in ("bank", "mixture"):
        bank_class = BankPrior if cfg.prior == "bank" else MixturePrior
        return bank_class(
            num_samples,
            cfg.num_anchors,
            warmup_momentum=cfg.bank_warmup_momentum,
            momentum=cfg.bank_momentum,
            floor=cfg.prior_floor,
            distributed=distributed,
        )
    if cfg.prior == "streaming":
        return StreamingPrior(
            cfg.num_anchors,
            momentum=cfg.streaming_momentum,
            temperature=cfg.temperature,
            distributed=distributed,
        )
    if cfg.prior == "uniform":
        return UniformPrior(cfg.num_anchors)
    raise ValueError(
        f"unknown gh.prior {cfg.prior!r}; valid: bank, streaming, uniform, mixture, oracle"
    )


def _label_targets(cfg: GHConfig, num_samples: int, labels: Sequence[int]) -> Tensor:
    """``[N]`` int64 class ids for ``cfg.targets == "labels"`` (empty otherwise), validated."""
    if cfg.targets == "sinkhorn":
        return torch.zeros(0, dtype=torch.long)
    if cfg.targets != "labels":
        raise ValueError(f"unknown gh.targets {cfg.targets!r}; valid: sinkhorn, labels")
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
            logits="cosine" if cfg.logits == "cosine" else "projected",
            tol=cfg.sinkhorn_tol,
            distributed=distributed,
        )
        self.prior = build_prior(cfg, num_samples, distributed, class_counts)
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

    @torch.no_grad()
    def diagnostics(self, z1: Tensor, z2: Tensor) -> dict[str, float]:
        """Assignment statistics of a batch (one extra Sinkhorn; for occasional logging)."""
        return gh_diagnostics(self.loss.compute(z1, z2, self.prior.prior()), self.cfg.temperature)

    def on_epoch_start(self, epoch: int) -> None:
        self.prior.set_warmup(epoch < self.cfg.warmup_epochs)

    def on_epoch_end(self, epoch: int) -> None:
        finished = epoch + 1
        after = finished - self.cfg.warmup_epochs
        every = max(1, self.cfg.prior_refresh_every)
        if after == 0 or (after > 0 and after % every == 0):
            self.prior.refresh()
