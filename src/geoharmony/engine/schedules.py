"""Learning-rate schedules: the official GH code's two (``utils.py``), one value per epoch.

Both count epochs from one (``n = epoch + 1`` for the 0-based ``epoch``) and hold the rate for the
whole epoch, as the official training loops set it once at the start of each epoch:

- ``warmup_cosine`` (``lr_scheduler``, every official baseline): ``lr * n / W`` while ``n < W``,
  then one cosine from ``lr`` (at ``n = W``) to ``min_lr`` (at ``n = E``).
- ``two_stage_cosine`` (``lr_scheduler_warm``, every official +GH run): the same warm-up, a cosine
  from ``lr`` to ``stage_lr`` until the stage ends at ``n = S`` (GH's warm-up), then a restart at
  ``stage_lr`` decaying by cosine to ``min_lr`` at ``n = E``.
"""

from __future__ import annotations

import math

from geoharmony.config import Config, stage_epochs

__all__ = ["cosine", "learning_rate", "two_stage_cosine", "warmup_cosine"]


def cosine(progress: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` (progress 0) to ``end`` (progress 1); clamped outside."""
    progress = min(max(progress, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def _warm_epochs(warmup_epochs: int) -> int:
    """The official form counts the warm-up up to ``n = W``, where the cosine starts at ``lr``;
    ``W = 1`` is no warm-up at all, and so is ``W = 0`` (read as 1, so that the first epoch
    runs at ``lr`` rather than one step down the cosine)."""
    return max(warmup_epochs, 1)


def _warming(n: int, base_lr: float, warmup_epochs: int) -> float | None:
    """The warm-up's rate at 1-based epoch ``n``, or None once it is over."""
    return base_lr * n / warmup_epochs if n < warmup_epochs else None


def warmup_cosine(
    epoch: int, total_epochs: int, base_lr: float, warmup_epochs: int, min_lr: float
) -> float:
    """The official baseline schedule at 0-based ``epoch``: linear warm-up, one cosine."""
    n, warmup_epochs = epoch + 1, _warm_epochs(warmup_epochs)
    warm = _warming(n, base_lr, warmup_epochs)
    if warm is not None:
        return warm
    return cosine((n - warmup_epochs) / max(total_epochs - warmup_epochs, 1), base_lr, min_lr)


def two_stage_cosine(
    epoch: int,
    total_epochs: int,
    base_lr: float,
    warmup_epochs: int,
    stage_epochs: int,
    stage_lr: float,
    min_lr: float,
) -> float:
    """The official +GH schedule at 0-based ``epoch``: linear warm-up, cosine ``base_lr ->
    stage_lr`` until epoch ``stage_epochs`` (GH's warm-up), then cosine ``stage_lr -> min_lr``.

    With ``stage_epochs`` 0 it is :func:`warmup_cosine`, as the official loop switches to
    ``lr_scheduler`` when GH has no warm-up.
    """
    if stage_epochs <= 0:
        return warmup_cosine(epoch, total_epochs, base_lr, warmup_epochs, min_lr)
    n, warmup_epochs = epoch + 1, _warm_epochs(warmup_epochs)
    warm = _warming(n, base_lr, warmup_epochs)
    if warm is not None:
        return warm
    if n < stage_epochs:
        return cosine((n - warmup_epochs) / (stage_epochs - warmup_epochs), base_lr, stage_lr)
    return cosine((n - stage_epochs) / max(total_epochs - stage_epochs, 1), stage_lr, min_lr)


def learning_rate(cfg: Config, epoch: int) -> float:
    """The configured schedule's rate for the whole of 0-based ``epoch``.

    The two-stage schedule splits at :func:`~geoharmony.config.stage_epochs` (GH's warm-up
    unless ``optim.stage_epochs`` says otherwise), whether or not GH is enabled, so that a
    baseline given this schedule (the CPU presets' paired runs) shares it with its +GH run.
    """
    o = cfg.optim
    if o.schedule == "two_stage_cosine":
        return two_stage_cosine(
            epoch, o.epochs, o.lr, o.warmup_epochs, stage_epochs(cfg), o.stage_lr, o.min_lr
        )
    return warmup_cosine(epoch, o.epochs, o.lr, o.warmup_epochs, o.min_lr)
