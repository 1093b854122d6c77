"""BCL: momentum loss by index, memorisation scores, the score-driven batched RandAugment (PIL
oracle per op, strength, determinism, per-sample draws, data-parallel rows) and bit-identical
resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from geoharmony.configure import load_config
from geoharmony.data.randaugment import (
    OP_NAMES,
    apply_op,
    draw_rand_augment,
    op_value,
    rand_augment,
)
from geoharmony.methods import DataInfo, build_method
from geoharmony.methods.bcl import BCL, ScoredRandAugment, memorization_scores
from tiny_runs import REPO, needs_fashion_mnist, pause_resume_states

N = 10
UNIT = ["method.name=bcl", "model.width=0.0625", "model.projector_hidden=16"]


@pytest.fixture(autouse=True)
def one_thread():
    """Single-threaded: faster for these tiny tensors on a shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(*extra: str, n: int = N) -> BCL:
    method = build_method(load_config(None, [*UNIT, *extra]), DataInfo(n, 3))
    assert isinstance(method, BCL)
    return method


def smooth_images(batch: int, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 images with structure at several scales (so geometric ops visibly move content)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, 6, 6, generator=gen)
    x = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8)


def with_scores(method: BCL, scores: torch.Tensor) -> BCL:
    method.scores.copy_(scores)
    method.scored.fill_(True)
    return method


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- momentum loss and scores --------------------------------------------------------------
def test_momentum_loss_is_an_ema_by_index() -> None:
    method = make()
    beta = method.cfg.method.bcl.beta
    assert beta == 0.97
    method.observe_sample_losses(torch.tensor([2, 5]), torch.tensor([1.0, 3.0]))
    method.observe_sample_losses(torch.tensor([5, 7]), torch.tensor([2.0, 4.0]))
    method.observe_sample_losses(torch.tensor([5]), torch.tensor([10.0]))
    expected = torch.zeros(N)
    expected[2], expected[7] = 1.0, 4.0  # first observation initialises
    expected[5] = beta * (beta * 3.0 + (1 - beta) * 2.0) + (1 - beta) * 10.0
    assert torch.allclose(method.loss_ema, expected)
    assert method.observed.tolist() == [i in (2, 5, 7) for i in range(N)]


def test_scores_are_the_official_normalisation_into_unit_interval() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0])
    observed = torch.tensor([True, True, True, True, False])
    scores = memorization_scores(losses, observed)
    assert torch.allclose(scores, torch.tensor([1 / 6, 2 / 6, 0.5, 1.0, 0.5]))
    # The official formula (z-score, divided by its largest magnitude, mapped to [0, 1]).
    seen = losses[:4]
    z = (seen - seen.mean()) / seen.std()
    assert torch.allclose(scores[:4], z / z.abs().max() / 2 + 0.5)
    gen_ = torch.Generator().manual_seed(1)
    many = memorization_scores(torch.rand(50, generator=gen_) * 7, torch.ones(50, dtype=torch.bool))
    assert float(many.min()) >= 0 and float(many.max()) <= 1
    assert float(many.min()) == 0 or float(many.max()) == 1  # the extreme side reaches the end
    # Degenerate cases: nothing observed, or every loss equal.
    assert torch.equal(
        memorization_scores(losses, torch.zeros(5, dtype=torch.bool)), torch.full((5,), 0.5)
    )
    assert torch.equal(memorization_scores(torch.ones(5), observed), torch.full((5,), 0.5))


def test_scores_are_published_at_epoch_end_and_checkpointed() -> None:
    method = make()
    assert not bool(method.scored)
    method.observe_sample_losses(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert not bool(method.scored) and torch.equal(method.scores, torch.zeros(N))
    method.on_epoch_end(0)
    assert bool(method.scored)
    assert torch.allclose(method.scores[:4], torch.tensor([1 / 6, 2 / 6, 0.5, 1.0]))
    fresh = make()
    fresh.load_state_dict(method.state_dict())
    for name in ("loss_ema", "observed", "scores", "scored"):
        assert torch.equal(getattr(fresh, name), getattr(method, name)), name


# ----- the augmentation ----------------------------------------------------------------------
def test_no_extra_augmentation_before_the_first_scores() -> None:
    method = make()
    images = smooth_images(4)
    g = gen(0)
    state = g.get_state()
    assert method.augment_views(images, torch.arange(4), g) is images
    assert torch.equal(g.get_state(), state)  # the generator is untouched: SimCLR's views


def test_zero_scores_change_nothing_and_full_scores_change_images() -> None:
    images = smooth_images(64)
    idx = torch.arange(64)
    zero = with_scores(make(n=64), torch.zeros(64))
    assert torch.equal(zero.augment_views(images, idx, gen(0)), images)
    one = with_scores(make(n=64), torch.ones(64))
    out = one.augment_views(images, idx, gen(0))
    changed = (out != images).flatten(1).any(dim=1)
    # Every sample gets one op at strength 30; the only no-ops there are posterize (8 bits)
    # and solarize (threshold 110) on some images.
    assert float(changed.float().mean()) > 0.8
    # Half-way scores: about half the samples are augmented (probability w).
    half = with_scores(make(n=64), torch.full((64,), 0.5))
    frac = float(
        (half.augment_views(images, idx, gen(0)) != images).flatten(1).any(1).float().mean()
    )
    assert 0.2 < frac < 0.8


def test_higher_scores_give_stronger_augmentation() -> None:
    images = smooth_images(256)
    idx = torch.arange(256)

    def mean_change(score: float, variant: str) -> float:
        method = with_scores(
            make(f"method.bcl.variant={variant}", n=256), torch.full((256,), score)
        )
        out = method.augment_views(images, idx, gen(7))  # same ops and signs, other strengths
        return float((out.float() - images.float()).abs().mean())

    # BCL-D: always applied, strength 10 (w = 0) vs 30 (w = 1).
    assert mean_change(0.0, "D") > 0
    assert mean_change(1.0, "D") > 1.3 * mean_change(0.0, "D")
    # BCL-I: probability and strength both grow.
    assert mean_change(1.0, "I") > mean_change(0.5, "I") > mean_change(0.1, "I")


def test_strength_and_probability_schedules() -> None:
    w = torch.tensor([0.0, 0.25, 0.5, 1.0])
    u = torch.tensor([0.5, 0.5, 0.5, 0.5])
    strength, prob = make().strength_and_probability(w, u)
    assert torch.allclose(strength, torch.tensor([10.0, 15.0, 20.0, 30.0]))
    assert torch.equal(prob, w)
    strength, prob = make("method.bcl.variant=D").strength_and_probability(w, u)
    assert torch.allclose(strength, torch.tensor([10.0, 15.0, 20.0, 30.0]))
    assert torch.equal(prob, torch.ones(4))
    capped, _ = make("method.bcl.base_strength=20").strength_and_probability(w, u)
    assert torch.allclose(capped, torch.tensor([20.0, 25.0, 30.0, 30.0]))
    jittered, _ = make(
        "method.bcl.base_strength=0",
        "method.bcl.strength_range=30",
        "method.bcl.random_strength=true",
    ).strength_and_probability(w, u)
    assert torch.allclose(jittered, 30 * w * u)


def test_same_generator_same_output_and_per_sample_draws() -> None:
    method = with_scores(make("method.bcl.num_ops=2", n=32), torch.ones(32))
    image = smooth_images(1)
    batch = image.expand(32, -1, -1, -1).contiguous()  # one image, 32 times
    idx = torch.arange(32)
    a = method.augment_views(batch, idx, gen(3))
    b = method.augment_views(batch, idx, gen(3))
    c = method.augment_views(batch, idx, gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    distinct = {tuple(x.flatten().tolist()) for x in a}
    assert len(distinct) > 20  # each copy drew its own ops and signs


def test_a_rank_augments_its_rows_of_the_global_batch() -> None:
    images, idx = smooth_images(8), torch.arange(8)
    scores = torch.linspace(0.2, 1.0, 8)
    single = with_scores(make(n=8), scores).augment_views(images, idx, gen(5))
    for rank in (0, 1):
        rows = torch.arange(4 * rank, 4 * rank + 4)
        method = with_scores(make(n=8), scores)
        shard = method.augment_views(images[rows], idx[rows], gen(5), rows, 8)
        assert torch.equal(shard, single[rows])


def test_views_get_independent_draws_through_the_stream_hook() -> None:
    # Through the two-view recipe, BCL's RandAugment draws separately for the two views.
    from geoharmony.data.augment import BatchedSimCLRAugment

    method = with_scores(make(n=8), torch.ones(8))
    images, idx = smooth_images(8), torch.arange(8)
    plain = BatchedSimCLRAugment(
        images.shape[-1], [0.0], [1.0], scale=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0
    )
    v1, v2 = plain.two_views(images, gen(0), hook=method.view_hook(), indices=idx)
    assert not torch.equal(v1, v2)
    b1, b2 = plain.two_views(images, gen(0))
    assert torch.equal(b1, b2)  # without the hook the identity recipe gives equal views
    assert not torch.equal(v1, b1)


class _SharedScoreProbe(torch.utils.data.Dataset):
    """What a data-loader worker reads through BCL's per-image hook: (score, scored flag)."""

    def __init__(self, hook: ScoredRandAugment) -> None:
        self.hook = hook

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.stack([self.hook.shared_scores[i], self.hook.shared_scores[-1]])


def test_persistent_workers_see_each_epochs_scores() -> None:
    method = make(n=4)
    loader = torch.utils.data.DataLoader(
        _SharedScoreProbe(method.image_hook()),
        batch_size=4,
        num_workers=1,
        persistent_workers=True,
    )
    before = next(iter(loader))
    assert torch.equal(before, torch.zeros(4, 2))
    method.observe_sample_losses(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    method.on_epoch_end(0)
    after = next(iter(loader))  # the same worker process, still alive
    torch.testing.assert_close(after[:, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert torch.equal(after[:, 1], torch.ones(4))


def test_per_image_hook_follows_the_scores() -> None:
    method = make(n=4)
    hook = method.image_hook()
    image = smooth_images(1)[0]
    assert torch.equal(hook(image, 0, gen(0)), image)  # no scores yet: untouched
    with_scores(method, torch.ones(4))
    method.publish_scores()
    assert not torch.equal(hook(image, 0, gen(0)), image)
    assert torch.equal(hook(image, 0, gen(0)), hook(image, 0, gen(0)))


# ----- the RandAugment ops against PIL -------------------------------------------------------
def _pil_reference(
    name: str, pil: Image.Image, v: float, centre: tuple[float, float]
) -> Image.Image:
    w, h = pil.size
    if name == "shear_x":
        return pil.transform(pil.size, Image.AFFINE, (1, v, 0, 0, 1, 0))
    if name == "shear_y":
        return pil.transform(pil.size, Image.AFFINE, (1, 0, 0, v, 1, 0))
    if name == "translate_x":
        return pil.transform(pil.size, Image.AFFINE, (1, 0, v * w, 0, 1, 0))
    if name == "translate_y":
        return pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0, 1, v * h))
    if name == "rotate":
        return pil.rotate(v)
    if name == "auto_contrast":
        return ImageOps.autocontrast(pil)
    if name == "invert":
        return ImageOps.invert(pil)
    if name == "equalize":
        return ImageOps.equalize(pil)
    if name == "solarize":
        return ImageOps.solarize(pil, v)
    if name == "posterize":
        return ImageOps.posterize(pil, int(v))
    if name == "cutout":  # the official CutoutAbs with a fixed centre
        side = v * w
        x0, y0 = int(max(0, centre[0] * w - side / 2)), int(max(0, centre[1] * h - side / 2))
        out = pil.copy()
        ImageDraw.Draw(out).rectangle(
            (x0, y0, min(w, x0 + side), min(h, y0 + side)), (125, 123, 114)
        )
        return out
    enhancer = {
        "contrast": ImageEnhance.Contrast,
        "color": ImageEnhance.Color,
        "brightness": ImageEnhance.Brightness,
        "sharpness": ImageEnhance.Sharpness,
    }[name]
    return enhancer(pil).enhance(v)


@pytest.mark.parametrize("name", OP_NAMES)
def test_each_op_matches_pil(name: str) -> None:
    images = smooth_images(2, seed=11)
    magnitude = torch.tensor([20.0, 27.0])
    centre = torch.tensor([[0.3, 0.6], [0.9, 0.1]])
    out = apply_op(name, images, magnitude, position=centre)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(2):
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy())
        v = float(op_value(name, magnitude[i : i + 1]))
        ref = np.asarray(_pil_reference(name, pil, v, tuple(centre[i].tolist()))).astype(int)
        diff = np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref)
        # Colour ops agree up to rounding; resampling ops up to rare ties at pixel boundaries.
        assert diff.max() <= 1 or (diff > 1).mean() < 0.005, (name, diff.max(), (diff > 1).mean())
        changed = np.abs(ref - images[i].permute(1, 2, 0).numpy().astype(int)).mean()
        if name != "posterize" or v < 8:
            assert changed > 0, name  # the reference really did something


def test_ops_work_on_single_channel_images_and_negate_flips_signed_ops() -> None:
    gray = smooth_images(len(OP_NAMES), channels=1)
    draws = draw_rand_augment(len(OP_NAMES), 1, gen(0))
    draws = type(draws)(
        torch.arange(len(OP_NAMES)).view(-1, 1), draws.coin, draws.negate, draws.position
    )
    out = rand_augment(gray, torch.full((len(OP_NAMES),), 25.0), torch.ones(len(OP_NAMES)), draws)
    assert out.shape == gray.shape and out.dtype == torch.uint8
    color = OP_NAMES.index("color")
    assert torch.equal(out[color], gray[color])  # colour is the identity on grayscale
    image = smooth_images(1)
    left = apply_op("rotate", image, torch.tensor([20.0]), negate=torch.tensor([False]))
    right = apply_op("rotate", image, torch.tensor([20.0]), negate=torch.tensor([True]))
    assert not torch.equal(left, right)
    assert torch.equal(
        torch.flip(apply_op("rotate", torch.flip(image, [3]), torch.tensor([20.0])), [3]), right
    )


@pytest.mark.parametrize("preset", ["bcl", "bcl_gh"])
def test_smoke_presets(preset: str) -> None:
    cfg = load_config(REPO / "configs" / "smoke" / f"{preset}.yaml")
    assert cfg.method.name == "bcl" and cfg.gh.enabled == preset.endswith("_gh")
    assert cfg.method.bcl.variant == "I"


@needs_fashion_mnist
def test_bcl_gh_kill_and_resume_is_bit_identical(tmp_path: Path) -> None:
    a, _ = pause_resume_states(
        tmp_path,
        "method.name=bcl",
        "gh.enabled=true",
        "gh.warmup_epochs=1",
        "gh.ramp_epochs=1",
        "gh.num_anchors=10",
    )
    # Epoch 2 ran with real scores, restored from the epoch-1 checkpoint by the resumed run.
    assert bool(a["model"]["scored"]) and a["model"]["observed"].any()
    assert 0 < float(a["model"]["scores"].std())
