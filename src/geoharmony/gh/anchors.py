"""Geometric uniform structures: fixed anchor sets that GH matches predictions against.

A structure is a ``[K, d]`` tensor of unit rows (anchors). When ``K <= d + 1`` the simplex
equiangular tight frame (ETF) exists and is the unique (up to rotation) maximally separated
configuration: every pairwise cosine equals ``-1 / (K - 1)``. When ``K > d + 1`` no ETF exists and
we numerically spread the anchors over the sphere instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "StructureReport",
    "max_pairwise_cosine",
    "simplex_etf",
    "structure_report",
    "uniform_structure",
]


def _check_sizes(num_anchors: int, dim: int) -> None:
    if num_anchors < 2:
        raise ValueError(f"num_anchors must be >= 2, got {num_anchors}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")


def _random_orthonormal_rows(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    """``[rows, cols]`` float64 matrix with orthonormal rows (``rows <= cols``), Haar-random."""
    gaussian = torch.randn(cols, rows, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # Sign fix makes the draw Haar-distributed and independent of LAPACK's sign convention.
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.T.contiguous()


def simplex_etf(num_anchors: int, dim: int, seed: int = 0) -> Tensor:
    """Simplex equiangular tight frame with ``num_anchors`` unit rows in ``dim`` dimensions.

    Valid for ``2 <= K <= d + 1``. The centred simplex ``sqrt(K/(K-1)) (I - 11^T/K)`` lives in the
    ``K - 1``-dimensional complement of the all-ones vector; we express it in an orthonormal basis
    of that complement and rotate it by a seeded random isometry into ``R^d``.

    Returns:
        ``[K, d]`` float32 tensor; rows have unit norm, ``M M^T = (K I - 11^T) / (K - 1)``.
    """
    _check_sizes(num_anchors, dim)
    k = num_anchors
    if k > dim + 1:
        raise ValueError(
            f"a simplex ETF of {k} anchors needs dim >= {k - 1}, got dim={dim}; "
            "use uniform_structure() for an approximately uniform structure"
        )
    generator = torch.Generator().manual_seed(seed)
    centred = math.sqrt(k / (k - 1)) * (
        torch.eye(k, dtype=torch.float64) - torch.full((k, k), 1.0 / k, dtype=torch.float64)
    )
    # Orthonormal basis of the complement of 1: the last K-1 left singular vectors of 1.
    ones = torch.ones(k, 1, dtype=torch.float64)
    basis = torch.linalg.svd(ones, full_matrices=True).U[:, 1:]  # [K, K-1]
    coords = centred @ basis  # [K, K-1], same Gram matrix as `centred`
    rotation = _random_orthonormal_rows(k - 1, dim, generator)  # [K-1, d]
    return (coords @ rotation).float()


def max_pairwise_cosine(structure: Tensor) -> float:
    """Largest cosine between two distinct rows of a ``[K, d]`` structure."""
    unit = torch.nn.functional.normalize(structure.double(), dim=1)
    cosines = unit @ unit.T
    cosines.fill_diagonal_(-math.inf)
    return float(cosines.max())


def _spread_on_sphere(
    num_anchors: int, dim: int, generator: torch.Generator, steps: int, lr: float
) -> Tensor:
    """Minimise a smooth maximum (log-sum-exp) of pairwise cosines, annealing its sharpness.

    Written by hand: no maintained library offers Tammes-style spherical codes for K >> d.
    Returns ``[K, d]`` float32 unit rows.
    """
    points = torch.randn(num_anchors, dim, generator=generator)
    points.requires_grad_(True)
    optimizer = torch.optim.Adam([points], lr=lr)
    diagonal = torch.eye(num_anchors, dtype=torch.bool)
    for step in range(steps):
        # Sharpness grows from 10 to 200: early steps spread globally, late steps push the max.
        sharpness = 10.0 * (20.0 ** (step / max(steps - 1, 1)))
        unit = torch.nn.functional.normalize(points, dim=1)
        cosines = (unit @ unit.T).masked_fill(diagonal, float("-inf"))
        loss = torch.logsumexp((sharpness * cosines).flatten(), dim=0) / sharpness
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return torch.nn.functional.normalize(points.detach(), dim=1)


def uniform_structure(
    num_anchors: int, dim: int, seed: int = 0, steps: int = 500, lr: float = 0.01
) -> Tensor:
    """The most uniform ``[K, d]`` anchor set we can build, deterministic for a seed.

    Returns the simplex ETF when ``K <= d + 1``; otherwise unit rows obtained by minimising a
    smooth maximum of pairwise cosines (``steps`` Adam steps in float32 on the CPU). Check the
    quality with :func:`structure_report`.
    """
    _check_sizes(num_anchors, dim)
    if num_anchors <= dim + 1:
        return simplex_etf(num_anchors, dim, seed)
    generator = torch.Generator().manual_seed(seed)
    return _spread_on_sphere(num_anchors, dim, generator, steps, lr)


@dataclass(frozen=True)
class StructureReport:
    """How uniform a structure is. ``etf_cosine`` is ``-1/(K-1)``, reachable only if K <= d+1."""

    num_anchors: int
    dim: int
    max_cosine: float
    mean_cosine: float
    etf_cosine: float
    is_etf: bool


def structure_report(structure: Tensor, atol: float = 1e-5) -> StructureReport:
    """Summarise the pairwise cosines of a ``[K, d]`` structure."""
    k, d = structure.shape
    unit = torch.nn.functional.normalize(structure.double(), dim=1)
    cosines = (unit @ unit.T)[~torch.eye(k, dtype=torch.bool)]
    etf_cosine = -1.0 / (k - 1)
    return StructureReport(
        num_anchors=k,
        dim=d,
        max_cosine=float(cosines.max()),
        mean_cosine=float(cosines.mean()),
        etf_cosine=etf_cosine,
        is_etf=bool(torch.allclose(cosines, torch.full_like(cosines, etf_cosine), atol=atol)),
    )
