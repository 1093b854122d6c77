"""geoharmony: self-supervised learning on long-tailed data with Geometric Harmonization."""

from geoharmony.gh import (
    AllocationOptions,
    BankPrior,
    GHLoss,
    StreamingPrior,
    simplex_etf,
    sinkhorn,
    uniform_structure,
)
from geoharmony.losses import focal_nt_xent, nt_xent

__version__ = "0.1.0"

__all__ = [
    "AllocationOptions",
    "BankPrior",
    "GHLoss",
    "StreamingPrior",
    "focal_nt_xent",
    "nt_xent",
    "simplex_etf",
    "sinkhorn",
    "uniform_structure",
]
