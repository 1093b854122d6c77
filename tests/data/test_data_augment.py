from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.overrides import TorchFunctionMode

from geoharmony.data.augment import (
    BatchedSimCLRAugment,
    crop_resize,
    eval_transform,
    imagenet_two_view_transform,
    sample_crop_boxes,
)
from geoharmony.data.normalization import NORM_STATS, normalize_only


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(b: int, c: int, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, side, side), dtype=torch.uint8, generator=gen(seed))


def plain(size: int, channels: int = 3, **kw: Any) -> BatchedSimCLRAugment:
    """An augmenter without normalisation (mean 0, std 1), so outputs stay in [0, 1]."""
    return BatchedSimCLRAugment(size, [0.0] * channels, [1.0] * channels, **kw)


@pytest.mark.parametrize(
    ("channels", "side", "stats"), [(3, 32, "cifar100"), (1, 28, "fashion_mnist")]
)
def test_shape_dtype_range(channels: int, side: int, stats: str) -> None:
    x = rand_images(16, channels, side)
    out = plain(side, channels)(x, gen(0))
    assert out.shape == (16, channels, side, side) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    mean, std = NORM_STATS[stats]
    normed = BatchedSimCLRAugment(side, mean, std)(x, gen(0))
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    torch.testing.assert_close(normed, (out - m) / s)  # same draws, then normalised


def test_determinism_and_resume() -> None:
    x = rand_images(8, 3)
    aug = plain(32)
    assert torch.equal(aug(x, gen(5)), aug(x, gen(5)))
    assert not torch.allclose(aug(x, gen(5)), aug(x, gen(6)))
    g = gen(9)
    aug(x, g)
    state = g.get_state()  # a checkpoint saves this
    after = aug(x, g)
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(aug(x, g2), after)


def test_per_sample_parameters_differ() -> None:
    x = rand_images(1, 3).expand(32, -1, -1, -1).contiguous()
    out = plain(32)(x, gen(0)).flatten(1)
    distinct = (out[:, None] - out[None]).abs().amax(-1) > 1e-3
    assert distinct.sum() == 32 * 31  # every pair of views of the same image differs
    boxes = sample_crop_boxes(32, 32, 32, (0.1, 1.0), (3 / 4, 4 / 3), gen(0), "cpu")
    assert len({tuple(b) for b in boxes.tolist()}) > 25


def test_two_views() -> None:
    x = rand_images(6, 3)
    v1, v2_ = plain(32).two_views(x, gen(0))
    assert v1.shape == v2_.shape == (6, 3, 32, 32)
    assert not torch.allclose(v1, v2_)


def test_two_views_of_a_shard_equal_the_rows_of_the_whole_batch() -> None:
    # What a data-parallel rank does: draw the whole batch's parameters, apply its own rows.
    x = rand_images(6, 3)
    aug = plain(32)
    whole = aug.two_views(x, gen(3))
    shard = aug.two_views(x[2:5], gen(3), global_batch=6, offset=2)
    for w, s in zip(whole, shard, strict=True):
        torch.testing.assert_close(s, w[2:5])
    with pytest.raises(ValueError, match="do not fit"):
        aug.two_views(x[2:5], gen(3), global_batch=6, offset=4)


def test_identity_recipe_reproduces_input() -> None:
    # scale 1 and ratio 1 give the whole image; no flip, jitter or grayscale.
    x = rand_images(5, 3)
    aug = plain(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)
    torch.testing.assert_close(aug(x, gen(0)), x.float() / 255, atol=1e-5, rtol=0)
    flipped = plain(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, gray_p=0.0)
    torch.testing.assert_close(flipped(x, gen(0)), x.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_crop_same_size_is_exact_slice() -> None:
    x = rand_images(3, 3).float()
    boxes = torch.tensor([[0, 0, 16, 16], [5, 11, 16, 16], [16, 16, 16, 16]])
    out = crop_resize(x, boxes, torch.tensor([False, True, False]), 16)
    for k, (top, left, h, w) in enumerate(boxes.tolist()):
        expect = x[k, :, top : top + h, left : left + w]
        if k == 1:
            expect = expect.flip(-1)
        torch.testing.assert_close(out[k], expect, atol=1e-3, rtol=0)


def bilinear_reference(img: np.ndarray, box: list[int], size: int, flip: bool) -> np.ndarray:
    """Closed form of the crop: output pixel (v, u) reads input (top + (v + .5) h / S - .5,
    left + (u + .5) w / S - .5), coordinates clamped to the image, bilinear weights."""
    c, height, width = img.shape
    top, left, h, w = box
    u = np.arange(size)
    if flip:
        u = size - 1 - u
    ys = np.clip(top + (np.arange(size) + 0.5) * h / size - 0.5, 0, height - 1)
    xs = np.clip(left + (u + 0.5) * w / size - 0.5, 0, width - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    out = np.empty((c, size, size))
    for ch in range(c):
        p = img[ch]
        out[ch] = (
            p[np.ix_(y0, x0)] * (1 - wy) * (1 - wx)
            + p[np.ix_(y0, x1)] * (1 - wy) * wx
            + p[np.ix_(y1, x0)] * wy * (1 - wx)
            + p[np.ix_(y1, x1)] * wy * wx
        )
    return out


def test_crop_matches_closed_form() -> None:
    x = rand_images(4, 3, seed=3).float() / 255
    boxes = torch.tensor([[3, 7, 10, 13], [0, 0, 32, 32], [20, 1, 12, 9], [0, 22, 29, 10]])
    flips = torch.tensor([False, False, True, True])
    out = crop_resize(x, boxes, flips, 24).double().numpy()
    for k in range(4):
        ref = bilinear_reference(x[k].double().numpy(), boxes[k].tolist(), 24, bool(flips[k]))
        np.testing.assert_allclose(out[k], ref, atol=1e-5)


def test_crop_boxes_match_torchvision_distribution() -> None:
    n, scale, ratio = 4000, (0.1, 1.0), (3 / 4, 4 / 3)
    ours = sample_crop_boxes(n, 32, 32, scale, ratio, gen(0), "cpu").double()
    torch.manual_seed(0)
    img = torch.zeros(3, 32, 32)
    tv = torch.tensor(
        [v2.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)]  # type: ignore[attr-defined]
    ).double()
    for boxes in (ours, tv):
        top, left, h, w = boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + h <= 32).all() and (left + w <= 32).all()

    def stats(b: torch.Tensor) -> torch.Tensor:
        area = b[:, 2] * b[:, 3] / 1024
        return torch.stack([area.mean(), torch.log(b[:, 3] / b[:, 2]).mean(), b[:, 0].mean()])

    # Means over 4000 draws: standard errors are about 0.004, 0.003 and 0.1 pixel.
    torch.testing.assert_close(stats(ours), stats(tv), atol=0.3, rtol=0.03)


def test_crop_fallback_matches_torchvision() -> None:
    # No box with aspect ratio in [2, 3] covering >= 99% of a square fits: centre-crop fallback.
    boxes = sample_crop_boxes(5, 32, 32, (0.99, 1.0), (2.0, 3.0), gen(0), "cpu")
    img = torch.zeros(3, 32, 32)
    expected = v2.RandomResizedCrop.get_params(img, [0.99, 1.0], [2.0, 3.0])  # type: ignore[attr-defined]
    assert boxes.tolist() == [list(expected)] * 5 == [[8, 0, 16, 32]] * 5


def test_jitter_matches_torchvision_functional() -> None:
    x = rand_images(6, 3, side=16, seed=1).float() / 255
    u = torch.rand(6, 4, generator=gen(2))
    aug = plain(16)
    order = [2, 0, 3, 1]
    got = aug._jitter(x, u, order)
    b, c, s = 0.6 + 0.8 * u[:, 0], 0.6 + 0.8 * u[:, 1], 0.6 + 0.8 * u[:, 2]
    hue = -0.1 + 0.2 * u[:, 3]
    ops: list[Callable[[torch.Tensor, float], torch.Tensor]] = [
        TF.adjust_brightness,
        TF.adjust_contrast,
        TF.adjust_saturation,
        TF.adjust_hue,
    ]
    for i in range(6):
        y = x[i]
        factors = [b[i], c[i], s[i], hue[i]]
        for k in order:
            y = ops[k](y, float(factors[k]))
        torch.testing.assert_close(got[i], y, atol=1e-4, rtol=0)


def test_one_channel_uses_same_random_stream() -> None:
    # Jitter on; brightness and contrast act per image, so a gray image replicated to 3 channels
    # gives 3 copies of the 1-channel view when saturation/hue/grayscale draws change nothing.
    x1 = rand_images(8, 1, side=28)
    x3 = x1.expand(-1, 3, -1, -1).contiguous()
    kw: dict[str, Any] = {"saturation": 0.0, "hue": 0.0, "gray_p": 0.5}
    out1 = plain(28, 1, **kw)(x1, gen(4))
    out3 = plain(28, 3, **kw)(x3, gen(4))
    for ch in range(3):
        torch.testing.assert_close(out3[:, ch], out1[:, 0], atol=1e-5, rtol=0)


def test_no_python_loop_over_samples() -> None:
    class CountCalls(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            return func(*args, **(kwargs or {}))

    aug = BatchedSimCLRAugment(32, *NORM_STATS["cifar10"])
    counts = []
    for b in (2, 64):
        x = rand_images(b, 3)
        with CountCalls() as mode:
            aug.two_views(x, gen(0))
        counts.append(mode.calls)
    assert counts[0] == counts[1]  # the number of torch calls does not grow with the batch


def test_normalize_only() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize_only(x, [0.0, 0.5, 0.2], [1.0, 0.5, 0.1])
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        normalize_only(x.float(), [0.0], [1.0])


def test_per_image_pipelines() -> None:
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    v1, v2_ = imagenet_two_view_transform(size=32)(pil)
    assert v1.shape == v2_.shape == (3, 32, 32) and v1.dtype == torch.float32
    ev = eval_transform(32)(pil)
    assert ev.shape == (3, 32, 32)
    assert torch.equal(ev, eval_transform(32)(pil))  # deterministic


def test_bad_input() -> None:
    aug = plain(32)
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 32, 32), gen(0))
    with pytest.raises(ValueError, match="scale"):
        plain(32, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="3/3 values for 1-channel"):
        aug(rand_images(2, 1), gen(0))
    with pytest.raises(ValueError, match="std must be positive"):
        BatchedSimCLRAugment(32, [0.0], [0.0])
    with pytest.raises(ValueError, match="hue"):
        plain(32, hue=0.7)
    assert math.isclose(aug.scale[0], 0.1)
