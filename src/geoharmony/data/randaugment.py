"""Batched RandAugment on uint8 images, with a per-sample operation, magnitude and probability.

Used by BCL (:mod:`geoharmony.methods.bcl`), whose extra augmentation is a RandAugment whose
strength and application probability follow each sample's memorisation score. The operation list
and the magnitude ranges are those of the official BCL and GH code (``augment_list`` in
``BCL/randaug.py`` of MediaBrain-SJTU/BCL and MediaBrain-SJTU/Geometric-Harmonization): a
magnitude ``m`` in ``[0, 30]`` maps to the value ``low + (high - low) * m / 30`` of each op, and
operations are drawn uniformly with replacement. All 15 operations are implemented:

====================  ===========================  =============================================
operation             value at m = 0 .. 30          definition (PIL's, vectorised)
====================  ===========================  =============================================
``shear_x/_y``        0 .. 0.6, random sign        affine ``x_in = x + v y`` (resp. ``y + v x``)
``translate_x/_y``    0 .. 0.66 of the side, sign  affine shift
``rotate``            0 .. 60 degrees, sign        about the centre
``auto_contrast``     --                           per-channel min/max stretch
``invert``            --                           ``255 - x``
``equalize``          --                           PIL's per-channel histogram equalisation
``solarize``          threshold 0 .. 110           invert pixels ``>= threshold``
``posterize``         4 .. 8 bits (truncated)      keep the top bits
``contrast``          factor 0.1 .. 1.9            blend with the grayscale mean
``color``             factor 0.1 .. 1.9            blend with the grayscale image
``brightness``        factor 0.1 .. 1.9            blend with black
``sharpness``         factor 0.1 .. 1.9            blend with PIL's 3x3 smoothing (inner pixels)
``cutout``            square side 0 .. 0.4 W       grey square at a random centre
====================  ===========================  =============================================

As in the official list, solarize and posterize become *milder* as the magnitude grows (higher
threshold, more bits); the other ops grow stronger. Geometric ops sample with nearest neighbour
and fill with black, as PIL's ``transform`` / ``rotate`` do (one ``grid_sample`` for all of
them); colour ops follow torchvision's tensor kernels, which match PIL up to rounding. For
1-channel images ``color`` is the identity and cutout fills with the grey level of the RGB fill.

Written here because torchvision's and kornia's RandAugment use one magnitude per call (not per
sample), a different op list, and the global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "MAX_MAGNITUDE",
    "OP_NAMES",
    "OP_RANGES",
    "RandAugmentDraws",
    "apply_op",
    "draw_rand_augment",
    "rand_augment",
]

OP_NAMES: tuple[str, ...] = (
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "auto_contrast",
    "invert",
    "equalize",
    "solarize",
    "posterize",
    "contrast",
    "color",
    "brightness",
    "sharpness",
    "cutout",
)
# (value at magnitude 0, value at magnitude MAX_MAGNITUDE), from the official BCL/GH op list.
OP_RANGES: dict[str, tuple[float, float]] = {
    "shear_x": (0.0, 0.6),
    "shear_y": (0.0, 0.6),
    "translate_x": (0.0, 0.66),
    "translate_y": (0.0, 0.66),
    "rotate": (0.0, 60.0),
    "auto_contrast": (0.0, 1.0),
    "invert": (0.0, 1.0),
    "equalize": (0.0, 1.0),
    "solarize": (0.0, 110.0),
    "posterize": (4.0, 8.0),
    "contrast": (0.1, 1.9),
    "color": (0.1, 1.9),
    "brightness": (0.1, 1.9),
    "sharpness": (0.1, 1.9),
    "cutout": (0.0, 0.4),
}
MAX_MAGNITUDE = 30.0
_NUM_GEOMETRIC = 5  # the first five ops resample the image
_CUTOUT_RGB = (125.0, 123.0, 114.0)
_CUTOUT_GRAY = 123.0  # 0.299 R + 0.587 G + 0.114 B of the RGB fill, rounded


@dataclass(frozen=True)
class RandAugmentDraws:
    """Every random choice of a batch, drawn before looking at the images or the scores.

    Attributes:
        op: int64 ``[B, K]`` operation index into :data:`OP_NAMES` for each of ``K`` rounds.
        coin: float ``[B, K]`` uniform in ``[0, 1)``; round ``k`` applies iff
            ``coin < probability``.
        negate: bool ``[B, K]``; flips the sign of signed ops (shear, translate, rotate).
        position: float ``[B, K, 2]`` uniform in ``[0, 1)``; cutout centre ``(x, y)`` as fractions
            of the width and height.
    """

    op: Tensor
    coin: Tensor
    negate: Tensor
    position: Tensor

    def select(self, rows: slice | Tensor) -> RandAugmentDraws:
        """The draws of the given sample rows."""
        return RandAugmentDraws(
            self.op[rows], self.coin[rows], self.negate[rows], self.position[rows]
        )


def draw_rand_augment(batch: int, num_ops: int, generator: torch.Generator) -> RandAugmentDraws:
    """Draw ``num_ops`` rounds for ``batch`` samples on the generator's device."""
    if num_ops < 1:
        raise ValueError(f"num_ops must be >= 1, got {num_ops}")
    dev = generator.device
    return RandAugmentDraws(
        op=torch.randint(
            len(OP_NAMES), (batch, num_ops), generator=generator, device=dev, dtype=torch.int64
        ),
        coin=torch.rand(batch, num_ops, generator=generator, device=dev),
        negate=torch.rand(batch, num_ops, generator=generator, device=dev) < 0.5,
        position=torch.rand(batch, num_ops, 2, generator=generator, device=dev),
    )


def rand_augment(
    images: Tensor, magnitude: Tensor, probability: Tensor, draws: RandAugmentDraws
) -> Tensor:
    """Apply ``K`` rounds of RandAugment, each with its own op per sample.

    Args:
        images: uint8 ``[B, C, H, W]``, C in {1, 3}.
        magnitude: float ``[B]`` in ``[0, 30]``, the sample's strength (shared by its rounds, as
            in the official code).
        probability: float ``[B]`` in ``[0, 1]``; each round applies with this probability.
        draws: :func:`draw_rand_augment` output for these ``B`` samples.

    Returns:
        uint8 ``[B, C, H, W]``; samples whose rounds all miss are returned unchanged.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 [B, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    b = images.shape[0]
    if draws.op.shape[0] != b or magnitude.shape != (b,) or probability.shape != (b,):
        raise ValueError(
            f"draws {tuple(draws.op.shape)}, magnitude {tuple(magnitude.shape)} and probability "
            f"{tuple(probability.shape)} do not match a batch of {b}"
        )
    dev = images.device
    magnitude = magnitude.to(dev, torch.float32)
    probability = probability.to(dev, torch.float32)
    out = images
    for k in range(draws.op.shape[1]):
        active = draws.coin[:, k].to(dev) < probability
        op = draws.op[:, k].to(dev)
        negate = draws.negate[:, k].to(dev)
        position = draws.position[:, k].to(dev)
        nxt = out.clone()
        # One resampling pass for every geometric op of this round; one pass per other op type
        # (a loop over op types, never over samples).
        rows = (active & (op < _NUM_GEOMETRIC)).nonzero().squeeze(1)
        if rows.numel():
            nxt[rows] = _geometric(out[rows], op[rows], magnitude[rows], negate[rows])
        for t in range(_NUM_GEOMETRIC, len(OP_NAMES)):
            rows = (active & (op == t)).nonzero().squeeze(1)
            if rows.numel():
                nxt[rows] = apply_op(
                    OP_NAMES[t], out[rows], magnitude[rows], position=position[rows]
                )
        out = nxt
    return out


def op_value(name: str, magnitude: Tensor) -> Tensor:
    """The op's parameter at ``magnitude`` (``[b]``, 0..30): ``low + (high - low) * m / 30``."""
    low, high = OP_RANGES[name]
    return low + (high - low) * magnitude / MAX_MAGNITUDE


def apply_op(
    name: str,
    images: Tensor,
    magnitude: Tensor,
    negate: Tensor | None = None,
    position: Tensor | None = None,
) -> Tensor:
    """Apply one named op to every image (uint8 ``[b, C, H, W]``) at per-image ``magnitude``.

    ``negate`` (bool ``[b]``) flips signed ops; ``position`` (``[b, 2]``) places the cutout
    (centre by default).
    """
    b = images.shape[0]
    dev = images.device
    magnitude = magnitude.to(dev, torch.float32)
    index = OP_NAMES.index(name)
    if index < _NUM_GEOMETRIC:
        flip = torch.zeros(b, dtype=torch.bool, device=dev) if negate is None else negate.to(dev)
        return _geometric(images, torch.full((b,), index, device=dev), magnitude, flip)
    v = op_value(name, magnitude)
    if name == "auto_contrast":
        return TF.autocontrast(images)
    if name == "invert":
        return 255 - images
    if name == "equalize":
        return TF.equalize(images)
    if name == "solarize":
        return torch.where(images.float() >= v.view(b, 1, 1, 1), 255 - images, images)
    if name == "posterize":
        bits = v.floor().clamp(1, 8).to(torch.int64)
        mask = ((255 << (8 - bits)) & 255).to(torch.uint8).view(b, 1, 1, 1)
        return images & mask
    if name == "contrast":
        mean = _gray(images).mean(dim=(1, 2, 3), keepdim=True)
        return _blend(images, mean, v)
    if name == "color":
        if images.shape[1] == 1:
            return images
        return _blend(images, _gray(images), v)
    if name == "brightness":
        return _blend(images, torch.zeros((), device=dev), v)
    if name == "sharpness":
        return _sharpness(images, v)
    if name == "cutout":
        centre = torch.full((b, 2), 0.5, device=dev) if position is None else position.to(dev)
        return _cutout(images, v, centre)
    raise ValueError(f"unknown op {name!r}; valid: {', '.join(OP_NAMES)}")


def _gray(images: Tensor) -> Tensor:
    """float ``[b, 1, H, W]`` luma (floored, as torchvision does for uint8); 1 channel as is."""
    x = images.float()
    if images.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).floor().unsqueeze(1)


def _blend(images: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """``factor * images + (1 - factor) * degenerate`` clamped and truncated to uint8."""
    f = factor.view(-1, 1, 1, 1)
    out = f * images.float() + (1.0 - f) * degenerate
    return out.clamp_(0, 255).to(torch.uint8)


def _sharpness(images: Tensor, factor: Tensor) -> Tensor:
    """PIL's SHARPEN blend: inner pixels blend with a 3x3 (1 1 1 / 1 5 1 / 1 1 1)/13 smoothing."""
    _, c, h, w = images.shape
    if h <= 2 or w <= 2:
        return images
    kernel = torch.ones(3, 3, device=images.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    x = images.float()
    smooth = F.conv2d(x, kernel, groups=c).round_()
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(images, degenerate, factor)


def _cutout(images: Tensor, size: Tensor, centre: Tensor) -> Tensor:
    """Grey square of side ``size * W`` pixels around ``centre * (W, H)`` (PIL's CutoutAbs:
    corner ``int(max(0, c - s/2))``, far edge ``min(W, corner + s)``, both inclusive)."""
    b, c, h, w = images.shape
    side = size * w
    x0 = (centre[:, 0] * w - side / 2).clamp(min=0).floor()
    y0 = (centre[:, 1] * h - side / 2).clamp(min=0).floor()
    x1 = torch.minimum(x0 + side, torch.full_like(x0, w))
    y1 = torch.minimum(y0 + side, torch.full_like(y0, h))
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    inside = (
        (cols >= x0.view(b, 1, 1))
        & (cols <= x1.view(b, 1, 1))
        & (rows >= y0.view(b, 1, 1))
        & (rows <= y1.view(b, 1, 1))
        & (side > 0).view(b, 1, 1)
    ).unsqueeze(1)
    fill = _CUTOUT_RGB if c == 3 else (_CUTOUT_GRAY,)
    colour = torch.tensor(fill, device=images.device).round().to(torch.uint8).view(1, c, 1, 1)
    return torch.where(inside, colour, images)


def _geometric(images: Tensor, op: Tensor, magnitude: Tensor, negate: Tensor) -> Tensor:
    """Shear / translate / rotate each image by its own op and magnitude, in one resampling.

    Each op is an affine map from output to input pixel coordinates (continuous, origin at the
    top-left corner, pixel centres at ``i + 0.5``): PIL's ``Image.transform(AFFINE)`` convention.
    Nearest-neighbour sampling, black outside the image.
    """
    b, _, h, w = images.shape
    dev = images.device
    sign = 1.0 - 2.0 * negate.float()
    a = torch.eye(2, device=dev).repeat(b, 1, 1)  # x_in = A x_out + t
    t = torch.zeros(b, 2, device=dev)
    for index in range(_NUM_GEOMETRIC):
        sel = op == index
        name = OP_NAMES[index]
        v = op_value(name, magnitude) * sign
        if name == "shear_x":
            a[:, 0, 1] = torch.where(sel, v, a[:, 0, 1])
        elif name == "shear_y":
            a[:, 1, 0] = torch.where(sel, v, a[:, 1, 0])
        elif name == "translate_x":
            t[:, 0] = torch.where(sel, v * w, t[:, 0])
        elif name == "translate_y":
            t[:, 1] = torch.where(sel, v * h, t[:, 1])
        else:  # rotate counter-clockwise by v degrees about the centre, as PIL's rotate(v)
            rad = v * (math.pi / 180.0)
            cos, sin = torch.cos(rad), torch.sin(rad)
            rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
            centre = torch.tensor([w / 2.0, h / 2.0], device=dev)
            shift = centre - (rot @ centre)
            a = torch.where(sel.view(b, 1, 1), rot, a)
            t = torch.where(sel.view(b, 1), shift, t)
    # Normalised coordinates (align_corners=False): pixel p = S n + c, S = diag(W/2, H/2).
    scale = torch.tensor([w / 2.0, h / 2.0], device=dev)
    centre = scale
    theta = torch.empty(b, 2, 3, device=dev)
    theta[:, :, :2] = a * scale.view(1, 1, 2) / scale.view(1, 2, 1)
    theta[:, :, 2] = ((a @ centre) + t - centre) / scale
    grid = F.affine_grid(theta, [b, images.shape[1], h, w], align_corners=False)
    out = F.grid_sample(
        images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out.round_().to(torch.uint8)
