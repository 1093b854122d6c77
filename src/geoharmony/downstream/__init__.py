"""Downstream use of pretrained backbones: logit-adjusted long-tailed classification
(``finetune``), transfer probes (``probe``), torchvision export (``export``) and folder
embeddings (``embed``)."""

from geoharmony.downstream.logit_adjust import (
    LogitAdjustedLoss,
    class_prior_from_counts,
    logit_adjusted_loss,
)

__all__ = ["LogitAdjustedLoss", "class_prior_from_counts", "logit_adjusted_loss"]
