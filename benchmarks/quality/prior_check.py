"""Prior estimators on a real checkpoint: the paper's argmax histogram against the mixture EM.

Loads a run's checkpoint, embeds every pretraining image (no augmentation), takes its geometric
logits against a fresh K-anchor structure (what a paired +GH run sees at its start), and fits
both estimators to the same logit rows. Prints effective numbers, KL to the true class prior
(sorted alignment) and the NMI of the argmax with the labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score

from geoharmony.config import from_dict
from geoharmony.data.augment import normalize_only
from geoharmony.data.build import build_run_data
from geoharmony.data.sources import ImageArray
from geoharmony.engine.checkpoint import load_checkpoint
from geoharmony.engine.trainer import norm_stats
from geoharmony.eval.geometry import prior_agreement
from geoharmony.methods import DataInfo, build_method
from geoharmony.prior import BankPrior, MixturePrior

__all__ = ["check_priors"]


@torch.no_grad()
def check_priors(checkpoint: str | Path, num_anchors: int = 10) -> dict[str, Any]:
    state = load_checkpoint(checkpoint)
    cfg = from_dict(state["config"])
    cfg.gh.enabled, cfg.gh.num_anchors = True, num_anchors
    data = build_run_data(cfg.data)
    assert isinstance(data.train, ImageArray)
    method = build_method(cfg, DataInfo.of(data))
    method.load_state_dict(state["model"], strict=False)
    # Batch statistics in BatchNorm, as in training (and as a paired run primes its prior);
    # nothing is saved, so the running buffers this touches do not matter.
    method.train()
    assert method.gh is not None
    gen = torch.Generator().manual_seed(0)
    idx = torch.from_numpy(data.pretrain_indices)
    idx = idx[torch.randperm(len(idx), generator=gen)]  # mixed batches for BatchNorm
    mean, std = norm_stats(cfg)
    logits = torch.cat(
        [
            method.gh.loss.logits(method.embed(normalize_only(x, mean, std))).float()
            for x in data.train.images[idx].split(256)
        ]
    )
    labels = data.train.labels[idx].numpy()
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "epoch": int(state["epoch"])}
    n = len(idx)
    for name, cls in (("bank", BankPrior), ("mixture", MixturePrior)):
        est = cls(n, num_anchors, warmup_momentum=0.0)
        est.update(torch.arange(n), logits)
        est.refresh()
        agree = prior_agreement(est.prior(), data.class_counts, align="sorted")
        out[name] = {
            "effective_anchors": agree["effective_number_estimated"],
            "true_effective_classes": agree["effective_number_true"],
            "kl": agree["kl"],
            "largest_share": float(est.prior().max()),
        }
    out["argmax_nmi_with_labels"] = float(
        normalized_mutual_info_score(labels, logits.argmax(1).numpy())
    )
    out["true_largest_share"] = float(np.max(data.class_counts) / n)
    return out
