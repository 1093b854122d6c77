"""SimCLR: the instance-discrimination baseline (NT-Xent)."""

from __future__ import annotations

from torch import Tensor

from geoharmony.losses import nt_xent
from geoharmony.methods.base import Method
from geoharmony.methods.registry import register_method

__all__ = ["SimCLR"]


@register_method("simclr")
class SimCLR(Method):
    """NT-Xent over the ``2B`` views (``2B - 2`` negatives per anchor; global under DDP)."""

    display_name = "SimCLR"

    def ssl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        m = self.cfg.method
        return nt_xent(
            z1, z2, m.temperature, reduction="none", gather=m.gather_negatives and self.distributed
        )
