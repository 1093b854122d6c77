"""Instance-discrimination losses (NT-Xent, focal NT-Xent); GH's loss lives in ``geoharmony.gh``."""

from geoharmony.losses.contrastive import focal_nt_xent, nt_xent, positive_log_prob

__all__ = ["focal_nt_xent", "nt_xent", "positive_log_prob"]
