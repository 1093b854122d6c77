"""Weighted k-nearest-neighbour classifier on features (Wu et al., CVPR 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["knn_predict"]


@torch.no_grad()
def knn_predict(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    *,
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
) -> Tensor:
    """Predict test labels by a similarity-weighted vote of the k nearest training features.

    Both feature sets are L2-normalised; similarity is the cosine s. Each of the k most similar
    training samples votes for its label with weight ``exp(s / temperature)``; the class with
    the largest total wins (ties go to the lower class index).

    Args:
        train_x: ``[N, D]`` training features.
        train_y: ``[N]`` integer labels in ``[0, num_classes)``.
        test_x: ``[M, D]`` query features.
        num_classes: C.
        k: neighbours per query (clipped to N).
        temperature: vote temperature.
        chunk_size: queries per chunk; peak extra memory is about ``chunk_size * N`` floats.
        device: where to compute (default: ``train_x``'s device).

    Returns:
        ``[M]`` int64 predictions on the CPU.
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"expected train_x [N, D] and test_x [M, D], got {tuple(train_x.shape)} and "
            f"{tuple(test_x.shape)}"
        )
    if train_y.shape != (train_x.shape[0],) or train_x.shape[0] == 0:
        raise ValueError(
            f"train_y must be [N] with N = {train_x.shape[0]} > 0, got {tuple(train_y.shape)}"
        )
    if k < 1 or temperature <= 0 or chunk_size < 1:
        raise ValueError(f"need k >= 1, temperature > 0, chunk_size >= 1; got {k}, {temperature}")
    dev = train_x.device if device is None else torch.device(device)
    k = min(k, train_x.shape[0])

    bank = F.normalize(train_x.to(dev, torch.float32), dim=1)
    labels = train_y.to(dev, torch.long)
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"train_y values must lie in [0, {num_classes})")

    preds = []
    for start in range(0, test_x.shape[0], chunk_size):
        q = F.normalize(test_x[start : start + chunk_size].to(dev, torch.float32), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # [m, k]
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=dev)
        votes.scatter_add_(1, labels[idx], weights)
        preds.append(votes.argmax(1).cpu())
    if not preds:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(preds)
