"""Geometry of learned representations (docs/design.md section 6, "Geometry").

Class-mean cosines and their deviation from a simplex ETF, alignment and uniformity
(Wang & Isola, ICML 2020), effective rank (Roy & Vetterli, 2007) and the agreement between an
estimated class-marginal prior and the true one. All functions are pure and return Python floats
or CPU tensors; the heavy ones work in float64 for stable reductions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor

from geoharmony.eval.metrics import GROUP_NAMES
from geoharmony.gh.priors import prior_agreement

__all__ = [
    "alignment",
    "class_mean_cosines",
    "class_means",
    "cosine_summary",
    "effective_rank",
    "etf_deviation",
    "prior_agreement",
    "uniformity",
]


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean of the L2-normalised features of each class.

    Args:
        features: ``[N, D]``.
        labels: ``[N]`` integer labels in ``[0, num_classes)``.

    Returns:
        ``[C, D]`` float64 CPU tensor; the rows are *not* renormalised (their norm, at most 1,
        measures within-class concentration). A class with no sample gets a NaN row, which the
        functions below skip.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(
            f"expected features [N, D] and labels [N], got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    z = F.normalize(features.detach().cpu().double(), dim=1)
    y = labels.detach().cpu().long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64).index_add_(0, y, z)
    counts = torch.bincount(y, minlength=num_classes).double().unsqueeze(1)
    return sums / counts  # 0/0 = NaN marks empty classes


def _finite_rows(means: Tensor) -> Tensor:
    return torch.isfinite(means).all(dim=1)


def class_mean_cosines(means: Tensor) -> Tensor:
    """Pairwise cosine similarities of class means: ``[C, D] -> [C, C]`` float64.

    Rows/columns of NaN (empty) classes stay NaN; the diagonal of the others is 1.
    """
    m = means.detach().cpu().double()
    ok = _finite_rows(m)
    cos = torch.full((m.shape[0], m.shape[0]), float("nan"), dtype=torch.float64)
    u = F.normalize(m[ok], dim=1)
    # Only the finite rows enter the product, so a NaN class cannot leak into other entries.
    cos[ok.unsqueeze(1) & ok.unsqueeze(0)] = (u @ u.T).flatten()
    return cos


def _mean_or_nan(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else float("nan")


def cosine_summary(cos_matrix: Tensor, groups: ArrayLike | None = None) -> dict[str, float]:
    """Summarise a class-mean cosine matrix.

    Args:
        cos_matrix: ``[C, C]`` from :func:`class_mean_cosines`.
        groups: optional ``[C]`` group ids (0 Many, 1 Medium, 2 Few) from
            :func:`geoharmony.eval.metrics.class_groups`.

    Returns:
        ``mean_cos`` and ``max_cos`` over off-diagonal pairs (i != j), ``min_angle_deg`` (the
        angle of the closest pair, ``degrees(arccos(max_cos))``) and, with groups,
        ``cos_<a>_<b>`` for a <= b in many/medium/few: the mean cosine over pairs with one class
        in each group (i != j within a group). Pairs involving NaN classes are skipped; a group
        pair with no valid pair is NaN.
    """
    cos = cos_matrix.detach().cpu().double()
    c = cos.shape[0]
    if cos.shape != (c, c) or c < 2:
        raise ValueError(f"cos_matrix must be [C, C] with C >= 2, got {tuple(cos.shape)}")
    ok = torch.isfinite(cos.diagonal())  # NaN classes have a NaN row, column and diagonal
    pair = ~torch.eye(c, dtype=torch.bool) & ok.unsqueeze(0) & ok.unsqueeze(1)
    off = cos[pair]
    max_cos = float(off.max()) if off.numel() else float("nan")
    out = {
        "mean_cos": _mean_or_nan(off),
        "max_cos": max_cos,
        "min_angle_deg": math.degrees(math.acos(min(1.0, max(-1.0, max_cos))))
        if off.numel()
        else float("nan"),
    }
    if groups is not None:
        g = torch.as_tensor(np.asarray(groups), dtype=torch.long)
        if g.shape != (c,):
            raise ValueError(f"groups must be [C] = [{c}], got {tuple(g.shape)}")
        for a, name_a in enumerate(GROUP_NAMES):
            for b in range(a, len(GROUP_NAMES)):
                mask = pair & (g == a).unsqueeze(1) & (g == b).unsqueeze(0)
                out[f"cos_{name_a}_{GROUP_NAMES[b]}"] = _mean_or_nan(cos[mask])
    return out


def etf_deviation(means: Tensor) -> float:
    """Distance of the class means' geometry from a simplex equiangular tight frame.

    Definition (with C the number of non-empty classes):

    1. centre: ``mu_c <- mu_c - (1/C) sum_c' mu_c'`` (unweighted global mean of class means);
    2. normalise each centred mean to unit length; ``G = M M^T`` is their cosine Gram matrix;
    3. the ideal simplex ETF Gram is ``G* = C/(C-1) (I - 11^T/C)`` (1 on the diagonal,
       ``-1/(C-1)`` off it), with ``||G*||_F = C / sqrt(C-1)``;
    4. return ``||G - G*||_F / ||G*||_F``.

    0 means the centred means form an exact simplex ETF (any norms: only angles count here,
    matching GH's category-level *angular* uniformity); the value is scale-free and comparable
    across C.

    Args:
        means: ``[C, D]`` class means (e.g. from :func:`class_means`); NaN rows are dropped.
    """
    m = means.detach().cpu().double()
    m = m[_finite_rows(m)]
    c = m.shape[0]
    if c < 2:
        raise ValueError(f"etf_deviation needs at least 2 non-empty classes, got {c}")
    m = F.normalize(m - m.mean(0, keepdim=True), dim=1)
    gram = m @ m.T
    ideal = (torch.eye(c, dtype=torch.float64) - 1.0 / c) * (c / (c - 1))
    return float(torch.linalg.matrix_norm(gram - ideal) / torch.linalg.matrix_norm(ideal))


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> float:
    """Alignment (Wang & Isola 2020): ``mean_i ||z1_i - z2_i||^alpha`` on L2-normalised rows.

    ``z1``, ``z2``: ``[N, D]`` positive pairs (row i of each). Lower is better; range [0, 2^alpha].
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [N, D], got {tuple(z1.shape)}, {tuple(z2.shape)}")
    a = F.normalize(z1.detach().cpu().double(), dim=1)
    b = F.normalize(z2.detach().cpu().double(), dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: Tensor, t: float = 2.0, *, chunk_size: int = 2048) -> float:
    """Uniformity (Wang & Isola 2020): ``log mean_{i<j} exp(-t ||z_i - z_j||^2)``.

    ``z``: ``[N, D]`` (N >= 2), L2-normalised here. Lower is more uniform. Computed as a
    log-sum-exp over row chunks, so memory is ``chunk_size * N`` and nothing under/overflows.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"z must be [N, D] with N >= 2, got {tuple(z.shape)}")
    u = F.normalize(z.detach().cpu().double(), dim=1)
    n = u.shape[0]
    cols = torch.arange(n)
    lse_chunks = []
    for start in range(0, n - 1, chunk_size):
        rows = u[start : start + chunk_size]
        # ||a - b||^2 = 2 - 2 a.b for unit vectors; clamp the rounding below zero.
        sq = (2.0 - 2.0 * rows @ u.T).clamp_min(0.0)
        upper = cols.unsqueeze(0) > (start + torch.arange(rows.shape[0])).unsqueeze(1)
        lse_chunks.append(torch.logsumexp((-t * sq)[upper], dim=0))
    n_pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(lse_chunks), dim=0) - math.log(n_pairs))


def effective_rank(features: Tensor, *, center: bool = False) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(p))`` with ``p = s / sum(s)``.

    ``s`` are the singular values of ``features [N, D]`` (optionally column-centred first) and
    H is the Shannon entropy in nats (0 log 0 = 0). Ranges from 1 to min(N, D); equals k for a
    matrix with k equal non-zero singular values.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got {tuple(features.shape)}")
    x = features.detach().cpu().double()
    if center:
        x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 0:
        raise ValueError("effective_rank of an all-zero matrix is undefined")
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
