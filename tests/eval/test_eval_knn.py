"""Weighted kNN classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoharmony.eval import knn_predict


def _naive_knn(train_x, train_y, test_x, num_classes, k, temperature) -> list[int]:
    """Per-query loop in numpy: sort by cosine, vote with exp(sim / T)."""
    a = train_x.double().numpy()
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    preds = []
    for q in test_x.double().numpy():
        sims = a @ (q / np.linalg.norm(q))
        nearest = np.argsort(-sims)[:k]
        votes = np.zeros(num_classes)
        for j in nearest:
            votes[train_y[j]] += math.exp(sims[j] / temperature)
        preds.append(int(np.argmax(votes)))
    return preds


def test_separable_clusters_are_perfect() -> None:
    gen = torch.Generator().manual_seed(0)
    centers = torch.eye(4, 16) * 10
    train_y = torch.arange(4).repeat_interleave(30)
    test_y = torch.arange(4).repeat_interleave(10)
    train_x = centers[train_y] + torch.randn(120, 16, generator=gen)
    test_x = centers[test_y] + torch.randn(40, 16, generator=gen)
    pred = knn_predict(train_x, train_y, test_x, num_classes=4, k=20)
    assert pred.dtype == torch.long
    assert torch.equal(pred, test_y)


def test_matches_naive_loop_with_chunking() -> None:
    gen = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(200, 8, generator=gen), torch.randn(50, 8, generator=gen)
    train_y = torch.randint(0, 5, (200,), generator=gen)
    for k in (1, 7, 200, 500):  # 500 > N is clipped to N
        pred = knn_predict(train_x, train_y, test_x, 5, k=k, temperature=0.1, chunk_size=7)
        assert pred.tolist() == _naive_knn(train_x, train_y, test_x, 5, min(k, 200), 0.1)
    full = knn_predict(train_x, train_y, test_x, 5, k=30, chunk_size=10_000)
    assert torch.equal(full, knn_predict(train_x, train_y, test_x, 5, k=30, chunk_size=3))


def test_weights_beat_majority() -> None:
    # One very close class-1 neighbour (cos 1) against two class-0 neighbours at cos 0.5:
    # e^10 > 2 e^5, so the weighted vote picks 1 where a plain majority would pick 0.
    train_x = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(0.75)], [0.5, -math.sqrt(0.75)]])
    train_y = torch.tensor([1, 0, 0])
    query = torch.tensor([[2.0, 0.0]])
    assert knn_predict(train_x, train_y, query, 2, k=3, temperature=0.1).item() == 1
    # A hot temperature flattens the weights and the majority wins.
    assert knn_predict(train_x, train_y, query, 2, k=3, temperature=100.0).item() == 0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="train_x"):
        knn_predict(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), torch.randn(2, 4), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        knn_predict(torch.randn(5, 3), torch.full((5,), 2), torch.randn(2, 3), 2)
