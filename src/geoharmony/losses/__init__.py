"""Loss functions: instance discrimination (NT-Xent, focal) and Geometric Harmonization."""

from geoharmony.losses.contrastive import focal_nt_xent, nt_xent, positive_log_prob
from geoharmony.losses.gh import GHLoss, GHOutput, gh_diagnostics, swapped_cross_entropy

__all__ = [
    "GHLoss",
    "GHOutput",
    "focal_nt_xent",
    "gh_diagnostics",
    "nt_xent",
    "positive_log_prob",
    "swapped_cross_entropy",
]
