"""SimCLR and its focal variant: the instance-discrimination baselines."""

from __future__ import annotations

from torch import Tensor

from geoharmony.losses import focal_nt_xent, nt_xent
from geoharmony.methods.base import Method, register_method

__all__ = ["Focal", "SimCLR"]


@register_method("simclr")
class SimCLR(Method):
    """NT-Xent over the ``2B`` views (``2B - 2`` negatives per anchor; global under DDP)."""

    def ssl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        m = self.cfg.method
        return nt_xent(
            z1, z2, m.temperature, reduction="none", gather=m.gather_negatives and self.distributed
        )


@register_method("focal")
class Focal(Method):
    """Focal NT-Xent: ``-(1 - p)^gamma log p`` per anchor (gamma = ``method.focal_gamma``)."""

    def ssl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        m = self.cfg.method
        return focal_nt_xent(
            z1,
            z2,
            m.temperature,
            gamma=m.focal_gamma,
            reduction="none",
            gather=m.gather_negatives and self.distributed,
        )
