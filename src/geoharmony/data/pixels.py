"""Pixel scaling: uint8 images to normalised float, and ImageNet's statistics.

The lowest layer of ``data/``: it imports nothing of geoharmony, so the split types, the
augmentations and the source catalog can all build on it. Each source's own statistics live in
its description (:mod:`geoharmony.data.catalog`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["IMAGENET_STATS", "Stats", "normalize_only"]

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std), one value per channel

# Per-channel mean and std of ImageNet's training images, pixel values scaled to [0, 1]: what
# sources without statistics of their own (list files, image folders) are normalised with.
IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


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
