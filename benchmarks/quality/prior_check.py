"""Can the class prior be recovered from a checkpoint's features at all? (issue 7)

Loads a run's checkpoint, embeds every pretraining image (no augmentation; BatchNorm on batch
statistics, as in training) and estimates the share of each of ``K`` groups in several ways:

* on the geometric logits against a fresh K-anchor structure (what a paired +GH run sees when
  it starts): the paper's argmax histogram (``bank``; the records made before 2026-12-07 also
  hold the retired vMF-mixture EM, ``mixture``);
* by clustering the features themselves into ``K`` groups, the best case for any estimator that
  only sees the features: k-means and a vMF mixture with free means and weights (on the
  normalised projector output and on the backbone output), and k-means into 100 groups merged
  to ``K`` by average linkage (which can follow a large, non-spherical cluster);
* by the modes of a kNN density (quick-shift), which is not told ``K``: a partition by volume
  (k-means and kin) splits a large class into as many pieces as it spans, a partition by
  density modes keeps a dense class whole, so it is the one that could see the imbalance.

Each estimate is compared with the true class prior (sorted alignment: effective number
exp(entropy), KL(true || estimate), largest share) and its groups with the labels (NMI).
``python -m benchmarks.quality prior-check CKPT ... --output FILE`` writes the records that the
report turns into a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors
from torch import Tensor

from geoharmony.config import Config
from geoharmony.data.build import RunData
from geoharmony.eval.geometry import prior_agreement
from geoharmony.eval.metrics import GROUP_NAMES, class_groups
from geoharmony.gh import BankPrior, GHLoss, effective_number, gh_diagnostics, uniform_structure
from geoharmony.gh.loss import LogitsKind
from geoharmony.methods import Method
from geoharmony.pretrained import load_pretrained

__all__ = [
    "LoadedRun",
    "check_assignments",
    "check_priors",
    "density_modes",
    "estimate_priors",
    "load_run",
    "neighbour_purity",
    "vmf_mixture",
]


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


def density_modes(x: np.ndarray, neighbours: int = 30) -> np.ndarray:
    """Quick-shift on the kNN graph: hard labels ``[N]`` of the density modes of ``x`` ``[N, D]``.

    Density is 1 / the mean distance to the ``neighbours`` nearest points; every point links to
    its nearest neighbour of higher density (itself at a local maximum) and takes the label of
    the maximum its chain ends at. The number of groups is the data's, not a parameter.
    """
    n = len(x)
    k = min(neighbours, n - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    density = 1.0 / np.maximum(dist[:, 1:].mean(1), 1e-12)
    higher = density[idx[:, 1:]] > density[:, None]  # [N, k], neighbours sorted by distance
    parent = np.where(higher.any(1), idx[np.arange(n), 1 + higher.argmax(1)], np.arange(n))
    while not np.array_equal(parent, parent[parent]):  # pointer jumping to the chain's end
        parent = parent[parent]
    return np.unique(parent, return_inverse=True)[1]


def _nearest(x: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances and indices ``[N, k]`` of each row's ``neighbours`` nearest other rows
    of ``x`` ``[N, D]`` (itself excluded; ``k`` at most ``N - 1``)."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = min(neighbours, len(unit) - 1)
    distance, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(unit).kneighbors(unit)
    return distance[:, 1:], idx[:, 1:]


def neighbour_purity(
    x: np.ndarray, labels: np.ndarray, class_counts: list[int], neighbours: int = 10
) -> dict[str, float]:
    """Mean share of each image's ``neighbours`` nearest pretraining images (cosine, itself
    excluded) that share its class, per Many/Medium/Few group of its class.

    A kNN-affinity term on the allocation's cost (SP2OT) pulls an image towards its neighbours'
    anchors; it can only help the tail if a Few image's neighbours are mostly its own class.
    """
    idx = _nearest(x, neighbours)[1]
    same = (labels[idx] == labels[:, None]).mean(1)
    group_of_class = class_groups(np.asarray(class_counts), "thirds")
    group = group_of_class[labels]
    return {name: float(same[group == g].mean()) for g, name in enumerate(GROUP_NAMES)}


def local_density(
    x: np.ndarray, labels: np.ndarray, class_counts: list[int], neighbours: int = 10
) -> dict[str, float]:
    """Mean rank (0 = sparsest, 1 = densest, 0.5 = like any image) of each image's mean cosine
    to its ``neighbours`` nearest pretraining images, per Many/Medium/Few group of its class.

    A label-free weighting by local density could single out the tail only if a Few image sits
    in sparser regions than a Many image (mean rank well below 0.5).
    """
    closeness = 1 - _nearest(x, neighbours)[0].mean(1)
    rank = closeness.argsort().argsort() / max(len(closeness) - 1, 1)
    group = class_groups(np.asarray(class_counts), "thirds")[labels]
    return {name: float(rank[group == g].mean()) for g, name in enumerate(GROUP_NAMES)}


def _cluster_labels(x: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Hard labels of each clustering of the unit rows ``x`` ``[N, D]`` into ``k`` groups (the
    density modes: into as many as it finds)."""
    kmeans = KMeans(k, n_init=5, random_state=0).fit(x).labels_
    fine = KMeans(min(100, len(x) // 5), n_init=1, random_state=0).fit(x)
    coarse = AgglomerativeClustering(k, linkage="average").fit(fine.cluster_centers_)
    return {
        "kmeans": kmeans,
        "vmf": vmf_mixture(x, kmeans, k),  # EM started from the k-means partition
        "kmeans100+average": coarse.labels_[fine.labels_],
        "density modes (not told K)": density_modes(x),
    }


@dataclass
class LoadedRun:
    """A checkpoint's run rebuilt, and every pretraining image embedded once.

    ``backbone`` ``[N, D]`` and ``projected`` ``[N, d]`` are the outputs for the pretraining
    images in a seeded shuffled order (mixed batches for BatchNorm, which uses batch statistics
    as in training), and ``labels`` ``[N]`` their classes in that order.
    """

    checkpoint: Path
    epoch: int
    cfg: Config
    data: RunData
    method: Method
    backbone: Tensor
    projected: Tensor
    labels: np.ndarray


@torch.no_grad()
def load_run(checkpoint: str | Path) -> LoadedRun:
    run = load_pretrained(checkpoint)
    cfg, data, method = run.cfg, run.data, run.method
    # Nothing is saved, so the running BatchNorm buffers that train mode touches do not matter.
    method.train()
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.pretrain_indices), generator=gen).numpy()
    idx = data.pretrain_indices[order]
    backbone, projected = [], []
    for x in data.eval_batches(data.train, idx, cfg.optim.batch_size, torch.device("cpu")):
        h = method.backbone(x).float()
        backbone.append(h)
        projected.append(method.projector(h).float())
    return LoadedRun(
        Path(checkpoint),
        run.epoch,
        cfg,
        data,
        method,
        torch.cat(backbone),
        torch.cat(projected),
        data.train.labels_of(idx),
    )


@torch.no_grad()
def check_priors(
    checkpoint: str | Path, num_anchors: int = 10, estimates: bool = True
) -> dict[str, Any]:
    """Every estimator's agreement with the true class prior on one checkpoint, plus GH's
    allocation when it is a +GH checkpoint (``estimates=False``: only the latter)."""
    run = load_run(checkpoint)
    counts = torch.as_tensor(run.data.class_counts, dtype=torch.float64)
    return {
        "checkpoint": str(checkpoint),
        "run": run.checkpoint.parent.parent.name,
        "epoch": run.epoch,
        "anchors": num_anchors,
        "true_effective_classes": effective_number(counts),
        "true_largest_share": float(counts.max() / counts.sum()),
        "estimates": estimate_priors(run, num_anchors) if estimates else {},
        "neighbour_purity": {
            space: neighbour_purity(feats.numpy(), run.labels, run.data.class_counts)
            for space, feats in (("backbone", run.backbone), ("projector", run.projected))
        },
        "local_density": {
            space: local_density(feats.numpy(), run.labels, run.data.class_counts)
            for space, feats in (("backbone", run.backbone), ("projector", run.projected))
        },
        "assignments": check_assignments(run) if run.method.gh is not None else None,
    }


@torch.no_grad()
def estimate_priors(run: LoadedRun, num_anchors: int = 10) -> dict[str, dict[str, float]]:
    """``{estimator: effective_number, kl, largest_share, nmi}`` on a run's features; the
    anchor-logit estimators use a fresh ``num_anchors`` structure (what a paired +GH run sees)."""
    gh = run.cfg.gh
    structure = uniform_structure(num_anchors, run.projected.shape[1], seed=gh.structure_seed)
    logits = GHLoss(structure, logits=cast(LogitsKind, gh.logits)).logits(run.projected)
    n = len(run.labels)

    def record(shares: np.ndarray, groups: np.ndarray) -> dict[str, float]:
        agree = prior_agreement(shares, run.data.class_counts, align="sorted")
        return {
            "effective_number": agree["effective_number_estimated"],
            "kl": agree["kl"],
            "largest_share": float(shares.max() / shares.sum()),
            "nmi": float(normalized_mutual_info_score(run.labels, groups)),
        }

    found: dict[str, dict[str, float]] = {}
    argmax = logits.argmax(1).numpy()
    est = BankPrior(n, num_anchors, warmup_momentum=0.0)
    est.update(torch.arange(n), logits)
    est.refresh()
    found["anchor logits: bank"] = record(est.prior().numpy(), argmax)
    for space, feats in (("projector", run.projected), ("backbone", run.backbone)):
        unit = F.normalize(feats, dim=1).numpy().astype(np.float64)
        for name, groups in _cluster_labels(unit, num_anchors).items():
            found[f"{space} features: {name}"] = record(
                np.bincount(groups, minlength=num_anchors) / n, groups
            )
    return found


def _effective(histogram: np.ndarray) -> float:
    return effective_number(torch.as_tensor(histogram, dtype=torch.float64))


@torch.no_grad()
def check_assignments(run: LoadedRun) -> dict[str, Any]:
    """How a +GH run's Sinkhorn allocation treats the classes at this checkpoint.

    Every pretraining image (clean) is allocated by the run's own structure and estimated prior,
    in batches of the training batch size as in training. Returns the mean assignment entropy and
    effective anchors of the targets (:func:`gh_diagnostics`), the NMI of the assigned anchor with
    the label, the effective number of anchors each class's images are assigned to (mean per
    Many/Medium/Few group: a head class split over several anchors scores high), and the share
    of Few-class images assigned to an anchor whose majority class is a Many class.
    """
    gh, cfg, labels = run.method.gh, run.cfg, run.labels
    assert gh is not None, f"{run.checkpoint} is not a +GH checkpoint"
    prior = gh.prior.prior()
    targets, diagnostics = [], []
    for zb in run.projected.split(cfg.optim.batch_size):
        out = gh.loss.compute(zb, zb, prior)
        targets.append(out.targets1)
        diagnostics.append(gh_diagnostics(out, cfg.gh.temperature))
    assigned = torch.cat(targets).argmax(1).numpy()
    k, num_classes = cfg.gh.num_anchors, run.data.num_classes
    group_of_class = class_groups(np.asarray(run.data.class_counts), "thirds")
    spread = np.array(
        [_effective(np.bincount(assigned[labels == c], minlength=k)) for c in range(num_classes)]
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
        "prior": cfg.gh.prior.name,
        "anchors": k,
        "prior_effective_anchors": effective_number(prior),
        **{key: float(np.mean([d[key] for d in diagnostics])) for key in diagnostics[0]},
        "nmi_assigned_anchor": float(normalized_mutual_info_score(labels, assigned)),
        "anchors_per_class": {
            name: float(spread[group_of_class == g].mean()) for g, name in enumerate(GROUP_NAMES)
        },
        "few_on_many_owned_anchors": float((owner_group == 0).mean())
        if few.any()
        else float("nan"),
    }
