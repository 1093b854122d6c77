"""Two-view SimCLR augmentation: batched on-device for small images, per-image for large ones.

Small images (CIFAR 32x32, Fashion-MNIST 28x28) are augmented a whole batch at a time on the
training device by :class:`BatchedSimCLRAugment`, with every random parameter drawn from an
explicit ``torch.Generator`` (reproducible, and resumable by saving the generator state). Large
images go through per-image torchvision transforms in data-loader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import kornia.color
import kornia.enhance
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from geoharmony.data.pixels import IMAGENET_STATS

__all__ = [
    "AugmentParams",
    "BatchedSimCLRAugment",
    "ImageHook",
    "IndexedTwoViewTransform",
    "TwoViewTransform",
    "ViewHook",
    "crop_resize",
    "eval_transform",
    "imagenet_two_view_transform",
    "sample_crop_boxes",
]


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str,
    attempts: int = 10,
) -> torch.Tensor:
    """Per-sample RandomResizedCrop boxes, drawn as torchvision draws them.

    Each sample tries ``attempts`` (area fraction, log-uniform aspect ratio) pairs and keeps the
    first whose integer box fits; if none fits, it falls back to torchvision's centre crop with the
    aspect ratio clamped to ``ratio``. All samples are handled at once.

    Returns:
        int64 [B, 4] boxes ``(top, left, h, w)`` in pixels.
    """
    area = height * width
    u_area = torch.rand(batch, attempts, generator=generator, device=device)
    u_ratio = torch.rand(batch, attempts, generator=generator, device=device)
    u_pos = torch.rand(batch, 2, generator=generator, device=device)

    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    # torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    any_ok = ok.any(dim=1)
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    # randint(0, H - h + 1) as floor(u * (H - h + 1)); the fallback is centred.
    top = torch.where(any_ok, torch.floor(u_pos[:, 0] * (height - h + 1)), (height - h) // 2)
    left = torch.where(any_ok, torch.floor(u_pos[:, 1] * (width - w + 1)), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1).long()


def crop_resize(
    images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop each image to its box, optionally mirror it, and resize to ``size`` x ``size``.

    One affine sampling grid per sample and a single bilinear ``grid_sample``. Output pixel
    ``u`` (0..S-1) samples input column ``left + (u + 0.5) * w / S - 0.5`` (pixel-centre
    coordinates, the ``align_corners=False`` convention of torchvision's resize); a mirrored
    sample reads ``u`` as ``S - 1 - u``. Unlike crop-then-resize, samples within half a pixel of
    the box edge interpolate with the real neighbouring pixels instead of repeating the edge pixel;
    no antialiasing is applied, which only matters when a box is larger than ``size``.

    Args:
        images: float [B, C, H, W].
        boxes: int [B, 4] ``(top, left, h, w)``.
        flip: bool [B], mirror horizontally.
        size: output side S.

    Returns:
        float [B, C, S, S].
    """
    b, c, height, width = images.shape
    top, left, h, w = boxes.to(images.dtype).unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    # Normalised coordinates: x_in = (w / W) * x_out + (2 * left + w) / W - 1.
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class BatchedSimCLRAugment(nn.Module):
    """The SimCLR view recipe for a batch of small images, on the images' device.

    Per sample: RandomResizedCrop(S, scale, ratio) with bilinear sampling, horizontal flip with
    probability ``flip_p``, ColorJitter(brightness, contrast, saturation, hue) with probability
    ``jitter_p``, grayscale with probability ``gray_p``, then normalisation.

    The colour operations are kornia's torchvision-equivalent kernels with per-sample factors.
    Deviations from torchvision:

    * the four jitter operations run in one random order per batch (as kornia does), not one
      per sample; each sample's order is still uniform over the 24 orders;
    * crop borders interpolate with neighbouring pixels and there is no antialiasing (see
      :func:`crop_resize`);
    * the grayscale weights are kornia's (0.299, 0.587, 0.114) instead of (0.2989, 0.587, 0.114).

    For 1-channel images saturation, hue and grayscale are no-ops (as in torchvision); their
    random numbers are still drawn so the generator advances the same way for any channel count.

    Args:
        size: output side S.
        mean, std: C (or 1) per-channel normalisation values.
        scale, ratio: RandomResizedCrop area-fraction and aspect-ratio ranges.
        flip_p: horizontal flip probability.
        brightness, contrast, saturation: factors drawn from ``[max(0, 1 - v), 1 + v]``.
        hue: hue shift drawn from ``[-hue, hue]`` (fraction of the hue circle, <= 0.5).
        jitter_p: probability of applying the colour jitter.
        gray_p: grayscale probability.
    """

    mean: torch.Tensor  # float32 [C] buffer
    std: torch.Tensor  # float32 [C] buffer

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: tuple[float, float] = (0.1, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
    ):
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
        for name, v in [
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ]:
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip_p, self.jitter_p, self.gray_p = float(flip_p), float(jitter_p), float(gray_p)
        self.jitter = (float(brightness), float(contrast), float(saturation), float(hue))
        # Buffers so that .to(device) moves them; not saved (they come from the arguments).
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32), False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32), False)
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {list(std)}")

    def sample_params(
        self, batch: int, height: int, width: int, generator: torch.Generator
    ) -> AugmentParams:
        """Draw every random choice for ``batch`` images of ``height x width`` pixels."""
        dev = generator.device
        return AugmentParams(
            boxes=sample_crop_boxes(batch, height, width, self.scale, self.ratio, generator, dev),
            coins=torch.rand(batch, 3, generator=generator, device=dev),
            factors=torch.rand(batch, 4, generator=generator, device=dev),
            # One jitter order per batch; .tolist() is one small host sync per call on a GPU.
            order=tuple(torch.randperm(4, generator=generator, device=dev).tolist()),
        )

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented view of each image.

        Args:
            images: uint8 [B, C, H, W], C in {1, 3}.
            generator: the source of every random draw; must live on the images' device.

        Returns:
            float32 [B, C, S, S], normalised.
        """
        self._check_images(images)
        if generator.device.type != images.device.type:
            raise ValueError(
                f"generator is on {generator.device} but images are on {images.device}; "
                "create the generator on the images' device"
            )
        b, _, height, width = images.shape
        return self.apply_params(images, self.sample_params(b, height, width, generator))

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"expected uint8 [B, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        c = images.shape[1]
        if self.mean.numel() not in (1, c) or self.std.numel() not in (1, c):
            raise ValueError(
                f"mean/std have {self.mean.numel()}/{self.std.numel()} values "
                f"for {c}-channel images"
            )

    def apply_params(
        self,
        images: torch.Tensor,
        params: AugmentParams,
        finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Augment uint8 ``[B, C, H, W]`` images with ``params`` -> float32 ``[B, C, S, S]``."""
        self._check_images(images)
        b, c = images.shape[:2]
        dev = images.device
        u = params.coins.to(dev)
        x = crop_resize(
            images.float().div_(255.0), params.boxes.to(dev), u[:, 0] < self.flip_p, self.size
        )
        x = torch.where(
            (u[:, 1] < self.jitter_p).view(b, 1, 1, 1),
            self._jitter(x, params.factors.to(dev), list(params.order)),
            x,
        )
        if c == 3:
            gray = kornia.color.rgb_to_grayscale(x).expand_as(x)
            x = torch.where((u[:, 2] < self.gray_p).view(b, 1, 1, 1), gray, x)
        if finish is not None:
            # Extra per-view uint8 transforms (BCL's RandAugment) come last, on 8-bit pixels as
            # in the per-image PIL pipelines they come from.
            x = finish(x.mul(255.0).round_().to(torch.uint8)).float().div_(255.0)
        mean = self.mean.to(dev).view(1, -1, 1, 1)
        std = self.std.to(dev).view(1, -1, 1, 1)
        return (x - mean) / std

    def _jitter(self, x: torch.Tensor, u: torch.Tensor, order: list[int]) -> torch.Tensor:
        """Colour jitter with per-sample factors. x: float [B, C, S, S] in [0, 1]; u: [B, 4]."""
        c = x.shape[1]
        ops: list[Callable[[torch.Tensor], torch.Tensor]] = []
        for k, v in enumerate(self.jitter[:3]):
            factor = max(0.0, 1.0 - v) + (1.0 + v - max(0.0, 1.0 - v)) * u[:, k]
            ops.append(_FACTOR_OPS[k](factor))
        hue_shift = (2.0 * u[:, 3] - 1.0) * self.jitter[3]
        # kornia takes the hue shift in radians; torchvision in turns.
        ops.append(lambda y: kornia.enhance.adjust_hue(y, hue_shift * (2 * math.pi)))
        for k in order:
            if c == 1 and k >= 2:  # saturation and hue leave a single channel unchanged
                continue
            if self.jitter[k] > 0:
                x = ops[k](x)
        return x

    def two_views(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        global_batch: int | None = None,
        offset: int = 0,
        hook: ViewHook | None = None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views with independent per-sample parameters (the two share the jitter order).

        With ``global_batch`` set, ``images`` are rows ``offset : offset + B`` of a batch of that
        size: the parameters of the whole batch are drawn and this slice's rows are applied, so
        every rank of a data-parallel run augments its shard exactly as one process would.
        ``hook`` (with the images' dataset ``indices``) transforms each uint8 view last, before
        normalisation; see :data:`ViewHook`.

        Returns:
            two float32 ``[B, C, S, S]``.
        """
        self._check_images(images)
        b, _, height, width = images.shape
        total = b if global_batch is None else global_batch
        if not 0 <= offset <= total - b:
            raise ValueError(f"rows {offset}:{offset + b} do not fit a batch of {total}")
        params = self.sample_params(2 * total, height, width, generator)
        own = torch.arange(offset, offset + b)
        rows = torch.cat([own, own + total])  # view 1 rows, then view 2 rows, of the 2G draws
        finish = None
        if hook is not None:
            if indices is None:
                raise ValueError("a view hook needs the images' dataset indices")
            both = torch.cat([indices, indices])
            device_rows = rows.to(generator.device)

            def finish(views: torch.Tensor) -> torch.Tensor:
                return hook(views, both, generator, device_rows, 2 * total)

        views = self.apply_params(torch.cat([images, images]), params.select(rows), finish)
        v1, v2 = views.chunk(2)
        return v1, v2


# A per-sample transform of uint8 views ``[R, C, S, S]`` applied after the SimCLR recipe:
# ``hook(views, dataset_indices [R], generator, rows [R], total)``. The views are rows ``rows`` of
# ``total`` views of the global batch; draw randomness for all ``total`` rows (fixed shapes) and
# apply this process's rows, so data-parallel ranks reproduce a single process.
ViewHook = Callable[[torch.Tensor, torch.Tensor, torch.Generator, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class AugmentParams:
    """Random choices for a batch: crop ``boxes`` int64 ``[B, 4]`` (top, left, height, width),
    ``coins`` ``[B, 3]`` uniforms for flip / jitter / grayscale, jitter ``factors`` ``[B, 4]``,
    and the batch's jitter ``order``."""

    boxes: torch.Tensor
    coins: torch.Tensor
    factors: torch.Tensor
    order: tuple[int, ...]

    def select(self, rows: torch.Tensor) -> AugmentParams:
        """The parameters of the given sample rows (``[R]`` int64)."""
        rows = rows.to(self.boxes.device)
        return AugmentParams(self.boxes[rows], self.coins[rows], self.factors[rows], self.order)


def _brightness(f: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda y: kornia.enhance.adjust_brightness_accumulative(y, f)


def _contrast(f: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda y: kornia.enhance.adjust_contrast_with_mean_subtraction(y, f)


def _saturation(f: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda y: kornia.enhance.adjust_saturation_with_gray_subtraction(y, f)


# kornia's `*_accumulative` / `*_with_*_subtraction` variants are the ones that match
# torchvision's definitions (multiplicative brightness, blend with the grayscale mean / image).
_FACTOR_OPS = (_brightness, _contrast, _saturation)


# --------------------------------------------------------------------------------------------
# Per-image torchvision pipelines
# --------------------------------------------------------------------------------------------


class TwoViewTransform:
    """Apply a per-image transform twice: ``x -> (t(x), t(x))``. Picklable for worker processes."""

    def __init__(self, transform: Callable[[Any], Any]):
        self.transform = transform

    def __call__(self, x: Any) -> tuple[Any, Any]:
        return self.transform(x), self.transform(x)

    def __repr__(self) -> str:
        return f"TwoViewTransform({self.transform!r})"


def imagenet_two_view_transform(
    size: int = 224,
    mean: Sequence[float] = IMAGENET_STATS[0],
    std: Sequence[float] = IMAGENET_STATS[1],
    hook: ImageHook | None = None,
) -> TwoViewTransform | IndexedTwoViewTransform:
    """Two SimCLR views of a PIL image for ImageNet-LT / Places-LT.

    RandomResizedCrop(size, scale (0.08, 1)), flip p 0.5, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8,
    grayscale p 0.2, GaussianBlur (kernel ~10% of size, sigma 0.1-2) p 0.5, normalise.
    Randomness comes from torch's global generator, which the DataLoader seeds per worker.
    With ``hook`` (a per-image uint8 transform needing the sample's index, e.g. BCL's), it runs
    on each view after the recipe, before normalisation, and the transform takes ``(image, i)``.

    Returns:
        callable PIL image [, index] -> (float32 [3, size, size], float32 [3, size, size]).
    """
    kernel = int(0.1 * size) // 2 * 2 + 1  # odd
    recipe = [
        v2.ToImage(),  # uint8 tensor kernels are faster than PIL ones
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
    ]
    normalise = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if hook is None:
        return TwoViewTransform(v2.Compose(recipe + normalise))
    return IndexedTwoViewTransform(v2.Compose(recipe), hook, v2.Compose(normalise))


# A per-image transform of a uint8 ``[C, H, W]`` view of dataset sample ``index``, drawing its
# randomness from ``generator``: ``hook(view, index, generator) -> view``.
ImageHook = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


class IndexedTwoViewTransform:
    """``(image, index) -> (view1, view2)``: ``recipe``, then ``hook`` (per view), then
    ``normalise``. The hook's generator is seeded from torch's global generator, which the
    DataLoader seeds per worker. Picklable for worker processes."""

    wants_index = True

    def __init__(
        self, recipe: Callable[[Any], Any], hook: ImageHook, normalise: Callable[[Any], Any]
    ) -> None:
        self.recipe, self.hook, self.normalise = recipe, hook, normalise

    def _view(self, image: Any, index: int) -> Any:
        seed = int(torch.randint(0, 2**62, (1,)))
        view = self.hook(self.recipe(image), index, torch.Generator().manual_seed(seed))
        return self.normalise(view)

    def __call__(self, image: Any, index: int) -> tuple[Any, Any]:
        return self._view(image, index), self._view(image, index)


def eval_transform(
    size: int = 224,
    mean: Sequence[float] = IMAGENET_STATS[0],
    std: Sequence[float] = IMAGENET_STATS[1],
) -> v2.Compose:
    """Evaluation transform for large images: resize the short side to size / 0.875, centre
    crop ``size``, normalise. PIL image -> float32 [3, size, size]."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(size / 0.875), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
