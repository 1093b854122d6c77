"""What can be said of features without labels: their statistics and a kNN-cluster summary.

No accuracy: without labels there is nothing to be right about. The summary answers what a
practitioner can check: do the features use their dimensions (effective rank, dead
dimensions), are they spread (uniformity, mean cosine), and do they form clusters that their
nearest neighbours agree with, with the clusters' sizes (how long-tailed the found groups are).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from geoharmony.eval.clusters import kmeans_assignments
from geoharmony.eval.geometry import effective_rank, uniformity

__all__ = ["MAX_SUMMARY_IMAGES", "feature_statistics", "knn_cluster_summary", "unlabeled_report"]

# The pairwise parts (uniformity, neighbours, k-means) use a seeded sample of at most this many
# images: their cost grows with the square of the count.
MAX_SUMMARY_IMAGES = 10_000
_ROWS_PER_CHUNK = 1024  # neighbour search: rows of the similarity matrix held at once


def feature_statistics(features: Tensor) -> dict[str, Any]:
    """Statistics of ``[N, D]`` features (N >= 2): effective rank (raw and centred), norms,
    dimensions without variance, mean cosine between distinct images."""
    x = features.detach().cpu().double()
    n = x.shape[0]
    variance = x.var(dim=0, unbiased=False)
    norms = x.norm(dim=1)
    mean_direction = F.normalize(x, dim=1).mean(dim=0)
    # Mean over ordered pairs i != j of cos(x_i, x_j), from the mean of the unit vectors.
    mean_cosine = (n * n * float(mean_direction @ mean_direction) - n) / (n * (n - 1))
    return {
        "images": n,
        "dim": int(x.shape[1]),
        "effective_rank": effective_rank(x),
        "effective_rank_centred": effective_rank(x, center=True),
        "norm_mean": float(norms.mean()),
        "norm_std": float(norms.std(unbiased=False)),
        "dead_dims": int((variance <= 1e-12 * max(float(variance.max()), 1e-300)).sum()),
        "mean_cosine": mean_cosine,
    }


def _neighbours(unit: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Indices ``[N, k]`` and cosines ``[N, k]`` of each unit row's ``k`` nearest other rows."""
    indices, cosines = [], []
    for start in range(0, unit.shape[0], _ROWS_PER_CHUNK):
        sim = unit[start : start + _ROWS_PER_CHUNK] @ unit.T
        rows = torch.arange(sim.shape[0])
        sim[rows, start + rows] = -math.inf  # an image is not its own neighbour
        values, found = sim.topk(k, dim=1)
        indices.append(found)
        cosines.append(values)
    return torch.cat(indices), torch.cat(cosines)


def knn_cluster_summary(features: Tensor, clusters: int, neighbours: int, seed: int) -> dict:
    """k-means ``clusters`` of ``[N, D]`` features (N >= 2) and their nearest neighbours.

    Returns:
        ``sizes`` (images per cluster, largest first), ``imbalance_ratio`` (largest / smallest
        cluster), ``effective_clusters`` (exp of the entropy of the shares), and for each
        image's ``neighbours`` nearest images by cosine: ``neighbour_agreement`` (the share in
        the image's own cluster; overall and per cluster, in ``sizes`` order) and
        ``neighbour_cosine`` (their mean cosine).
    """
    n = features.shape[0]
    k = min(clusters, n)
    m = min(neighbours, n - 1)
    assignment = kmeans_assignments(features, k, seed, n_init=3)
    sizes = torch.bincount(assignment, minlength=k)
    order = torch.argsort(sizes, descending=True, stable=True)
    shares = sizes[order].double() / n
    found, cosines = _neighbours(F.normalize(features.detach().cpu().float(), dim=1), m)
    same = (assignment[found] == assignment.unsqueeze(1)).double().mean(dim=1)  # [N]
    per_cluster = torch.zeros(k, dtype=torch.float64).index_add_(0, assignment, same) / sizes
    nonzero = shares[shares > 0]
    return {
        "clusters": k,
        "sizes": sizes[order].tolist(),
        "imbalance_ratio": float(sizes.max()) / float(sizes[sizes > 0].min()),
        "effective_clusters": float(torch.exp(-(nonzero * nonzero.log()).sum())),
        "neighbours": m,
        "neighbour_agreement": float(same.mean()),
        "neighbour_agreement_per_cluster": per_cluster[order].tolist(),
        "neighbour_cosine": float(cosines.mean()),
    }


def unlabeled_report(
    features: Tensor, clusters: int, neighbours: int, seed: int
) -> dict[str, dict[str, Any]]:
    """``features`` statistics (all images; uniformity on the sample) and the kNN-cluster
    summary of a seeded sample of at most :data:`MAX_SUMMARY_IMAGES` of ``[N, D]`` features."""
    n = features.shape[0]
    if n < 2:
        raise ValueError(f"an unlabeled report needs two or more images, got {n}")
    sample = features
    if n > MAX_SUMMARY_IMAGES:
        rows = np.random.default_rng([seed, 0x5A]).choice(n, MAX_SUMMARY_IMAGES, replace=False)
        sample = features[torch.from_numpy(np.sort(rows))]
    stats = feature_statistics(features)
    stats["uniformity"] = uniformity(sample)
    summary = knn_cluster_summary(sample, clusters, neighbours, seed)
    summary["sampled_images"] = int(sample.shape[0])
    return {"features": stats, "clusters": summary}
