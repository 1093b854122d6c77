"""geoharmony: self-supervised learning on long-tailed data with Geometric Harmonization."""

from geoharmony.geometry import simplex_etf, uniform_structure
from geoharmony.losses import GHLoss, focal_nt_xent, nt_xent
from geoharmony.prior import BankPrior, StreamingPrior, UniformPrior
from geoharmony.sinkhorn import sinkhorn

__version__ = "0.1.0"

__all__ = [
    "BankPrior",
    "GHLoss",
    "StreamingPrior",
    "UniformPrior",
    "focal_nt_xent",
    "nt_xent",
    "simplex_etf",
    "sinkhorn",
    "uniform_structure",
]
