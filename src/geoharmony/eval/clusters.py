"""k-means clusters of feature rows (DnC's experts, the unlabeled evaluation's summary)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["kmeans_assignments"]


def kmeans_assignments(features: Tensor, num_clusters: int, seed: int, n_init: int) -> Tensor:
    """``[N]`` int64 k-means cluster of each row of ``[N, D]`` ``features`` (scikit-learn).

    Runs in float64 on one OpenMP thread: scikit-learn's Lloyd iterations add per-thread partial
    sums in the order the threads finish, so more threads may change the last bits of a center
    (and, rarely, an assignment) from one run to the next; a resumed run must cluster exactly as
    an uninterrupted one.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = features.detach().to("cpu", torch.float64).numpy()
    if x.shape[0] < num_clusters:
        raise ValueError(f"cannot form {num_clusters} clusters from {x.shape[0]} images")
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed).fit(x)
    return torch.from_numpy(np.asarray(km.labels_, dtype=np.int64))
