"""Focal: SimCLR with the focal form of NT-Xent, which weights hard positives up."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from geoharmony.losses import focal_nt_xent
from geoharmony.methods.base import Method
from geoharmony.methods.registry import register_method

__all__ = ["Focal", "FocalOptions"]


@dataclass
class FocalOptions:
    """``method.focal``."""

    gamma: float = 2.0  # focusing exponent of -(1 - p)^gamma log p


@register_method("focal")
class Focal(Method):
    """Focal NT-Xent: ``-(1 - p)^gamma log p`` per anchor (gamma = ``method.focal.gamma``)."""

    Options = FocalOptions
    display_name = "Focal"

    def ssl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        m = self.cfg.method
        return focal_nt_xent(
            z1,
            z2,
            m.temperature,
            gamma=self.options.gamma,
            reduction="none",
            gather=m.gather_negatives and self.distributed,
        )
