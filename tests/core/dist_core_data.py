"""The batch shared by the distributed core test and its workers."""

import torch


def full_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    b, d, k = 12, 8, 5
    prior = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return {
        "b": b,
        "d": d,
        "k": k,
        "z1": torch.randn(b, d, generator=g, dtype=torch.float64),
        "z2": torch.randn(b, d, generator=g, dtype=torch.float64),
        "logits": torch.rand(b, k, generator=g, dtype=torch.float64) * 2 - 1,
        "prior": prior / prior.sum(),
    }
