"""Logit-adjusted cross-entropy for long-tailed classification (Menon et al., ICLR 2021).

Training minimises ``CE(logits + tau * log(prior), target)``: every class's logit is offset by
``tau`` times its log prior, so a frequent class must win by a larger margin during training.
At test time the *raw* logits are used (``argmax logits``), which then estimate the balanced
(class-prior-free) posterior. ``tau = 0`` is plain cross-entropy, as is any ``tau`` with a
uniform prior; a prior that does not sum to one only shifts every logit by the same constant,
which softmax cross-entropy ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LogitAdjustedLoss", "class_prior_from_counts", "logit_adjusted_loss"]

Reduction = Literal["mean", "sum", "none"]


def class_prior_from_counts(counts: Sequence[int] | Tensor, floor: float = 1.0) -> Tensor:
    """Empirical class prior ``[C]`` (float64, sums to 1) from training counts ``[C]``.

    A class without training images would get ``log 0 = -inf``; its count is raised to
    ``floor`` first (one image by default), so the adjustment stays finite.
    """
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.ndim != 1 or c.numel() == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence, got shape {tuple(c.shape)}")
    if bool((c < 0).any()) or not bool(torch.isfinite(c).all()):
        raise ValueError(f"counts must be finite and non-negative, got {c.tolist()}")
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    c = c.clamp_min(floor)
    return c / c.sum()


def logit_adjusted_loss(
    logits: Tensor,
    targets: Tensor,
    class_prior: Tensor,
    tau: float = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Logit-adjusted softmax cross-entropy.

    Args:
        logits: ``[B, C]`` raw classifier outputs (any float dtype; computed in float32).
        targets: ``[B]`` int64 class ids in ``[0, C)``.
        class_prior: ``[C]`` positive class probabilities (or any positive multiple of them).
        tau: adjustment strength; 0 gives plain cross-entropy.
        reduction: ``mean`` (default), ``sum`` or ``none`` (``[B]`` per-sample losses).

    Returns:
        ``-log softmax(logits + tau * log prior)[target]``, reduced as asked.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, C], got shape {tuple(logits.shape)}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(f"targets must be [{logits.shape[0]}], got {tuple(targets.shape)}")
    if class_prior.shape != (logits.shape[1],):
        raise ValueError(
            f"class_prior must be [{logits.shape[1]}] (one value per class), "
            f"got {tuple(class_prior.shape)}"
        )
    if not bool((class_prior > 0).all()) or not bool(torch.isfinite(class_prior).all()):
        raise ValueError(
            "class_prior must be finite and positive (see class_prior_from_counts for a floor)"
        )
    logits = logits.float()
    if tau != 0:
        log_prior = class_prior.to(device=logits.device, dtype=torch.float64).log()
        logits = logits + (tau * log_prior).to(torch.float32)
    return F.cross_entropy(logits, targets, reduction=reduction)


class LogitAdjustedLoss(nn.Module):
    """:func:`logit_adjusted_loss` with the prior checked once and held as a buffer.

    ``forward(logits [B, C], targets [B]) -> loss``. The offset ``tau * log prior`` is a
    float32 buffer (it moves with ``.to()``), so a training step does no validation and no
    host synchronisation.
    """

    class_prior: Tensor
    offset: Tensor

    def __init__(self, class_prior: Tensor, tau: float = 1.0, reduction: Reduction = "mean"):
        super().__init__()
        prior = torch.as_tensor(class_prior, dtype=torch.float64)
        if prior.ndim != 1 or not bool((prior > 0).all()) or not bool(torch.isfinite(prior).all()):
            raise ValueError("class_prior must be a 1-D tensor of finite positive values")
        prior = prior / prior.sum()
        self.register_buffer("class_prior", prior)
        self.register_buffer("offset", (float(tau) * prior.log()).to(torch.float32))
        self.tau = float(tau)
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.float() + self.offset, targets, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, classes={self.class_prior.numel()}"
