"""Frozen-backbone feature extraction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["NonFiniteFeaturesError", "extract_features", "to_unit_float"]

Preprocess = Callable[[Tensor], Tensor]


class NonFiniteFeaturesError(ValueError):
    """A backbone produced NaN/inf features: its weights (or the images) hold non-finite values,
    and every probe built on them would report nonsense."""


def to_unit_float(batch: Tensor) -> Tensor:
    """Default preprocessing: uint8 ``[B, C, H, W]`` in 0..255 -> float32 in [0, 1]."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch.float()


def _batches(data: Tensor | Iterable[object], batch_size: int) -> Iterator[Tensor]:
    if isinstance(data, Tensor):
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]
        return
    for item in data:
        # Loaders usually yield (images, labels, ...): the images come first.
        images = item[0] if isinstance(item, tuple | list) else item
        if not isinstance(images, Tensor):
            raise TypeError(f"data loader yielded {type(images).__name__}, expected a Tensor")
        yield images


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    data: Tensor | Iterable[object],
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    preprocess: Preprocess | None = to_unit_float,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Tensor:
    """Run a frozen backbone over a data set and return its pooled features.

    Args:
        backbone: module mapping ``[B, C, H, W] -> [B, D]``; run in eval mode (BatchNorm uses its
            running statistics) and restored to its previous mode afterwards.
        data: a uint8 tensor ``[N, C, H, W]`` (sliced into ``batch_size`` chunks) or any iterable
            of batches (e.g. a DataLoader) yielding tensors or tuples whose first element is the
            image batch; the loader's own batch size is used then.
        batch_size: chunk size for tensor input.
        device: where the backbone runs; batches are moved there *before* preprocessing, so
            the host-to-device copy is of uint8 data.
        preprocess: ``uint8 [B, C, H, W] -> float [B, C, H, W]`` (e.g. scale and normalise);
            ``None`` passes batches through unchanged.
        autocast_dtype: e.g. ``torch.bfloat16`` to run under autocast; ``None`` disables it.
        channels_last: convert each batch to channels_last memory format.

    Returns:
        float32 CPU tensor ``[N, D]``.

    Raises:
        NonFiniteFeaturesError: if any feature is NaN/inf.

    Uses ``no_grad`` rather than ``inference_mode`` on purpose: inference tensors cannot be
    saved for backward, and the features are the inputs of a trained linear probe.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    chunks: list[Tensor] = []
    try:
        for images in _batches(data, batch_size):
            x = images.to(device, non_blocking=True)
            if preprocess is not None:
                x = preprocess(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device_type=device.type,
                dtype=autocast_dtype,
                enabled=autocast_dtype is not None,
            ):
                feats = backbone(x)
            chunks.append(feats.float().cpu())
    finally:
        backbone.train(was_training)
    if not chunks:
        raise ValueError("no data: the input has no samples")
    feats = torch.cat(chunks)
    bad_rows = (~torch.isfinite(feats)).any(dim=1).nonzero().flatten()
    if bad_rows.numel():
        raise NonFiniteFeaturesError(
            f"the backbone's features of {bad_rows.numel()} of {len(feats)} images are NaN or"
            f" infinite (first: image {int(bad_rows[0])}); its weights or the input hold"
            " non-finite values"
        )
    return feats
