"""Instance-discrimination losses over two views: NT-Xent (SimCLR) and its focal variant."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from geoharmony import parallel

__all__ = ["Reduction", "focal_nt_xent", "nt_xent", "positive_log_prob"]

Reduction = Literal["mean", "sum", "none"]


def positive_log_prob(
    z1: Tensor, z2: Tensor, temperature: float = 0.2, gather: bool = False
) -> Tensor:
    """Log-probability that each view picks its partner among all other views.

    Each of the ``2B`` views is an anchor; its candidates are the other ``2N - 1`` views of the
    (possibly gathered, ``N = world_size * B``) batch, scored by cosine similarity / temperature.

    Args:
        z1, z2: ``[B, d]`` embeddings of the two views of the same ``B`` images (not normalised).
        gather: use the views of every rank as negatives (gradients flow back to their owners).

    Returns:
        ``[2, B]``: row 0 for view-1 anchors, row 1 for view-2 anchors.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"z1 and z2 must both be [B, d] with equal shapes, got {list(z1.shape)} and "
            f"{list(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        return _positive_log_prob(z1, z2, temperature, gather)


def _positive_log_prob(z1: Tensor, z2: Tensor, temperature: float, gather: bool) -> Tensor:
    batch = z1.shape[0]
    # Similarities in at least float32: 1/temperature amplifies rounding.
    dtype = torch.promote_types(z1.dtype, torch.float32)
    local = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)  # [2B, d]
    if gather and parallel.is_distributed():
        gathered = [parallel.all_gather_with_grad(z1), parallel.all_gather_with_grad(z2)]
        # [2N, d]: every rank's view-1 rows, then every rank's view-2 rows.
        views = F.normalize(torch.cat(gathered).to(dtype), dim=1)
        total = views.shape[0] // 2
        offset = parallel.rank() * batch
    else:
        views, total, offset = local, batch, 0
    logits = local @ views.T / temperature  # [2B, 2N]
    own = torch.arange(batch, device=z1.device) + offset
    self_index = torch.cat([own, own + total])
    partner_index = torch.cat([own + total, own])
    rows = torch.arange(2 * batch, device=z1.device)
    logits[rows, self_index] = float("-inf")
    log_prob = logits[rows, partner_index] - torch.logsumexp(logits, dim=1)
    return log_prob.view(2, batch)


def _reduce(per_anchor: Tensor, reduction: Reduction) -> Tensor:
    """``[2, B]`` per-anchor losses -> scalar, or ``[B]`` per image (mean of its two anchors)."""
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "sum":
        return per_anchor.sum()
    if reduction == "none":
        return per_anchor.mean(dim=0)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.2,
    reduction: Reduction = "mean",
    gather: bool = False,
) -> Tensor:
    """NT-Xent (SimCLR) loss: ``-log p(partner)`` averaged over the ``2B`` anchors.

    ``reduction="none"`` returns ``[B]`` per-image losses (the mean of the image's two anchors).
    """
    return _reduce(-positive_log_prob(z1, z2, temperature, gather), reduction)


def focal_nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.2,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
    gather: bool = False,
) -> Tensor:
    """Focal NT-Xent: ``-(1 - p)^gamma log p`` with ``p`` the partner probability.

    Down-weights easy positives; ``gamma = 0`` is NT-Xent. Shapes as :func:`nt_xent`.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma}")
    log_p = positive_log_prob(z1, z2, temperature, gather)
    return _reduce(-((1.0 - log_p.exp()) ** gamma) * log_p, reduction)
