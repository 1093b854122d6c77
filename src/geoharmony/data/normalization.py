"""Per-channel normalisation statistics of each source, and evaluation-time normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NORM_STATS", "Stats", "norm_stats", "normalize_only"]

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std), one value per channel

# Per-channel mean and std of the training images, pixel values scaled to [0, 1].
NORM_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "fashion_mnist": ((0.2860,), (0.3530,)),  # measured on the 60,000 training images
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _stats(values: Sequence[float], channels: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(list(values), dtype=torch.float32, device=device)
    if t.numel() not in (1, channels):
        raise ValueError(f"expected 1 or {channels} per-channel values, got {list(values)}")
    return t.reshape(1, -1, 1, 1)


def normalize_only(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Scale uint8 images to [0, 1] and normalise; no augmentation (evaluation).

    Args:
        images: uint8 [B, C, H, W].
        mean, std: C (or 1) per-channel values.

    Returns:
        float32 [B, C, H, W] on the images' device.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 [B, C, H, W], got {images.dtype} {tuple(images.shape)}")
    c = images.shape[1]
    x = images.float().div_(255.0)
    return (x - _stats(mean, c, x.device)) / _stats(std, c, x.device)


def norm_stats(source: str) -> Stats:
    """``(mean, std)`` of a source's training images; ImageNet's for file-backed sources."""
    return NORM_STATS.get(source, NORM_STATS["imagenet"])
