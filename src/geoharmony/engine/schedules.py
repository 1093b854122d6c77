"""Learning-rate schedules as pure functions of the fractional epoch."""

from __future__ import annotations

import math

from geoharmony.config import Config, stage_epochs

__all__ = ["cosine", "learning_rate", "two_stage_cosine", "warmup_cosine"]


def cosine(progress: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` (progress 0) to ``end`` (progress 1); clamped outside."""
    progress = min(max(progress, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    epoch: float, total_epochs: int, base_lr: float, warmup_epochs: int, min_lr: float
) -> float:
    """Linear warm-up from 0 to ``base_lr`` over ``warmup_epochs``, then cosine to ``min_lr``."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    span = max(total_epochs - warmup_epochs, 1e-12)
    return cosine((epoch - warmup_epochs) / span, base_lr, min_lr)


def two_stage_cosine(
    epoch: float,
    total_epochs: int,
    base_lr: float,
    stage_epochs: int,
    stage_lr: float,
    min_lr: float,
) -> float:
    """The official GH schedule: cosine ``base_lr -> stage_lr`` over the first ``stage_epochs``
    (GH's warm-up), then a restart at ``stage_lr`` decaying by cosine to ``min_lr``."""
    if 0 < stage_epochs and epoch < stage_epochs:
        return cosine(epoch / stage_epochs, base_lr, stage_lr)
    start = stage_lr if stage_epochs > 0 else base_lr
    span = max(total_epochs - stage_epochs, 1e-12)
    return cosine((epoch - stage_epochs) / span, start, min_lr)


def learning_rate(cfg: Config, epoch: float) -> float:
    """The configured schedule at fractional ``epoch``.

    The two-stage schedule splits at :func:`~geoharmony.config.stage_epochs` (GH's warm-up
    unless ``optim.stage_epochs`` says otherwise), whether or not GH is enabled, so a baseline
    and its +GH run share one schedule.
    """
    o = cfg.optim
    if o.schedule == "two_stage_cosine":
        return two_stage_cosine(epoch, o.epochs, o.lr, stage_epochs(cfg), o.stage_lr, o.min_lr)
    return warmup_cosine(epoch, o.epochs, o.lr, o.warmup_epochs, o.min_lr)
