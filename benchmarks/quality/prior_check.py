"""Can the class prior be recovered from a checkpoint's features at all? (issue 7)

Loads a run's checkpoint, embeds every pretraining image (no augmentation; BatchNorm on batch
statistics, as in training) and estimates the share of each of ``K`` groups in several ways:

* on the geometric logits against a fresh K-anchor structure (what a paired +GH run sees when
  it starts): the paper's argmax histogram (``bank``) and the vMF-mixture EM (``mixture``);
* by clustering the features themselves into ``K`` groups, the best case for any estimator that
  only sees the features: k-means and a vMF mixture with free means and weights (on the
  normalised projector output and on the backbone output), and k-means into 100 groups merged
  to ``K`` by average linkage (which can follow a large, non-spherical cluster).

Each estimate is compared with the true class prior (sorted alignment: effective number
exp(entropy), KL(true || estimate), largest share) and its groups with the labels (NMI).
``python -m benchmarks.quality prior-check CKPT ... --output FILE`` writes the records that the
report turns into a table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import Tensor

from geoharmony.config import from_dict
from geoharmony.data.augment import normalize_only
from geoharmony.data.build import build_run_data
from geoharmony.data.sources import ImageArray
from geoharmony.engine.checkpoint import load_checkpoint
from geoharmony.engine.trainer import norm_stats
from geoharmony.eval.geometry import prior_agreement
from geoharmony.eval.metrics import GROUP_NAMES, class_groups
from geoharmony.losses import gh_diagnostics
from geoharmony.methods import DataInfo, build_method
from geoharmony.prior import BankPrior, MixturePrior

__all__ = ["check_assignments", "check_priors", "estimate_priors", "vmf_mixture"]


def vmf_mixture(x: np.ndarray, labels: np.ndarray, k: int, iters: int = 200) -> np.ndarray:
    """Hard labels of a K-component vMF mixture (free means and weights, one shared kappa, EM
    started from ``labels``) fitted to the unit rows of ``x`` ``[N, D]``."""
    xt = torch.from_numpy(x).double()
    n, d = xt.shape
    resp = F.one_hot(torch.from_numpy(labels).long(), k).double()
    for _ in range(iters):
        weights = resp.sum(0) / n
        sums = resp.T @ xt
        norms = sums.norm(dim=1)
        means = sums / norms.clamp_min(1e-12)[:, None]
        r_bar = min(max(float(norms.sum() / n), 1e-6), 1 - 1e-6)
        kappa = min(r_bar * (d - r_bar**2) / (1 - r_bar**2), 1e4)  # Banerjee et al. 2005
        resp = torch.softmax(weights.clamp_min(1e-300).log()[None] + kappa * (xt @ means.T), 1)
    return resp.argmax(1).numpy()


def _clusterings(k: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    def kmeans(x: np.ndarray) -> np.ndarray:
        return KMeans(k, n_init=5, random_state=0).fit(x).labels_

    def merged(x: np.ndarray) -> np.ndarray:
        fine = KMeans(min(100, len(x) // 5), n_init=1, random_state=0).fit(x)
        coarse = AgglomerativeClustering(k, linkage="average").fit(fine.cluster_centers_)
        return coarse.labels_[fine.labels_]

    return {
        "kmeans": kmeans,
        "vmf": lambda x: vmf_mixture(x, kmeans(x), k),
        "kmeans100+average": merged,
    }


def _load(checkpoint: str | Path, num_anchors: int | None) -> tuple[Any, Any, Any, Any]:
    """(state, config, run data, method) of a checkpoint; ``num_anchors`` replaces the run's GH
    (a fresh structure, enabled even on a baseline), None keeps the run's own GH and prior."""
    state = load_checkpoint(checkpoint)
    cfg = from_dict(state["config"])
    if num_anchors is not None:
        cfg.gh.enabled, cfg.gh.num_anchors = True, num_anchors
    data = build_run_data(cfg.data)
    assert isinstance(data.train, ImageArray)
    method = build_method(cfg, DataInfo.of(data))
    weights = state["model"]
    if num_anchors is not None:  # the run's own GH state (if any) does not fit the fresh one
        weights = {k: v for k, v in weights.items() if not k.startswith("gh.")}
    method.load_state_dict(weights, strict=num_anchors is None)
    # Batch statistics in BatchNorm, as in training (and as a paired run primes its prior);
    # nothing is saved, so the running buffers this touches do not matter.
    method.train()
    return state, cfg, data, method


@torch.no_grad()
def _embed(cfg: Any, data: Any, method: Any) -> tuple[Tensor, Tensor, np.ndarray]:
    """Backbone ``[N, D]`` and projector ``[N, d]`` outputs of every pretraining image, in a
    seeded shuffled order (mixed batches for BatchNorm), and the labels ``[N]`` in that order."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.from_numpy(data.pretrain_indices)
    idx = idx[torch.randperm(len(idx), generator=gen)]
    mean, std = norm_stats(cfg)
    backbone, projected = [], []
    for x in data.train.images[idx].split(cfg.optim.batch_size):
        h = method.backbone(normalize_only(x, mean, std)).float()
        backbone.append(h)
        projected.append(method.projector(h).float())
    return torch.cat(backbone), torch.cat(projected), data.train.labels[idx].numpy()


@torch.no_grad()
def check_priors(
    checkpoint: str | Path, num_anchors: int = 10, estimates: bool = True
) -> dict[str, Any]:
    """Every estimator's agreement with the true class prior on one checkpoint, plus GH's
    allocation when it is a +GH checkpoint (``estimates=False``: only the latter)."""
    state = load_checkpoint(checkpoint)
    cfg = from_dict(state["config"])
    counts = np.asarray(build_run_data(cfg.data).class_counts, dtype=np.float64)
    return {
        "checkpoint": str(checkpoint),
        "run": Path(checkpoint).parent.parent.name,
        "epoch": int(state["epoch"]),
        "anchors": num_anchors,
        "true_effective_classes": _effective_number(counts),
        "true_largest_share": float(counts.max() / counts.sum()),
        "estimates": estimate_priors(checkpoint, num_anchors) if estimates else {},
        "assignments": check_assignments(checkpoint) if cfg.gh.enabled else None,
    }


@torch.no_grad()
def estimate_priors(checkpoint: str | Path, num_anchors: int = 10) -> dict[str, dict[str, float]]:
    """``{estimator: effective_number, kl, largest_share, nmi}`` on one checkpoint's features."""
    _, cfg, data, method = _load(checkpoint, num_anchors)
    h, z, labels = _embed(cfg, data, method)
    logits = method.gh.loss.logits(z)
    n = len(labels)

    def record(shares: np.ndarray, groups: np.ndarray) -> dict[str, float]:
        agree = prior_agreement(shares, data.class_counts, align="sorted")
        return {
            "effective_number": agree["effective_number_estimated"],
            "kl": agree["kl"],
            "largest_share": float(shares.max() / shares.sum()),
            "nmi": float(normalized_mutual_info_score(labels, groups)),
        }

    found: dict[str, dict[str, float]] = {}
    argmax = logits.argmax(1).numpy()
    for name, cls in (("bank", BankPrior), ("mixture", MixturePrior)):
        est = cls(n, num_anchors, warmup_momentum=0.0)
        est.update(torch.arange(n), logits)
        est.refresh()
        found[f"anchor logits: {name}"] = record(est.prior().numpy(), argmax)
    for space, feats in (("projector", z), ("backbone", h)):
        unit = F.normalize(feats, dim=1).numpy().astype(np.float64)
        for name, cluster in _clusterings(num_anchors).items():
            groups = cluster(unit)
            found[f"{space} features: {name}"] = record(
                np.bincount(groups, minlength=num_anchors) / n, groups
            )
    return found


def _effective_number(histogram: np.ndarray) -> float:
    """exp(entropy) of a histogram (any non-negative weights)."""
    p = histogram[histogram > 0] / histogram.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


@torch.no_grad()
def check_assignments(checkpoint: str | Path) -> dict[str, Any]:
    """How a +GH run's Sinkhorn allocation treats the classes at this checkpoint.

    Every pretraining image (clean) is allocated by the run's own structure and estimated prior,
    in batches of the training batch size as in training. Returns the mean assignment entropy and
    effective anchors of the targets (:func:`gh_diagnostics`), the NMI of the assigned anchor with
    the label, the effective number of anchors each class's images are assigned to (mean per
    Many/Medium/Few group: a head class split over several anchors scores high), and the share
    of Few-class images assigned to an anchor whose majority class is a Many class.
    """
    _, cfg, data, method = _load(checkpoint, None)
    _, z, labels = _embed(cfg, data, method)
    prior = method.gh.prior.prior()
    targets, diagnostics = [], []
    for zb in z.split(cfg.optim.batch_size):
        out = method.gh.loss.compute(zb, zb, prior)
        targets.append(out.targets1)
        diagnostics.append(gh_diagnostics(out, cfg.gh.temperature))
    assigned = torch.cat(targets).argmax(1).numpy()
    k, num_classes = cfg.gh.num_anchors, data.num_classes
    group_of_class = class_groups(np.asarray(data.class_counts), "thirds")
    spread = np.array(
        [
            _effective_number(np.bincount(assigned[labels == c], minlength=k))
            for c in range(num_classes)
        ]
    )
    owner = np.array(
        [
            np.bincount(labels[assigned == a], minlength=num_classes).argmax()
            if (assigned == a).any()
            else -1
            for a in range(k)
        ]
    )
    few = group_of_class[labels] == 2
    owner_group = group_of_class[owner[assigned[few]]]
    return {
        "prior": cfg.gh.prior,
        "anchors": k,
        "prior_effective_anchors": _effective_number(prior.numpy().astype(np.float64)),
        **{key: float(np.mean([d[key] for d in diagnostics])) for key in diagnostics[0]},
        "nmi_assigned_anchor": float(normalized_mutual_info_score(labels, assigned)),
        "anchors_per_class": {
            name: float(spread[group_of_class == g].mean()) for g, name in enumerate(GROUP_NAMES)
        },
        "few_on_many_owned_anchors": float((owner_group == 0).mean())
        if few.any()
        else float("nan"),
    }
