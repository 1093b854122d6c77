"""The learning-rate schedules against the official GH code's formulas (utils.py).

``official_baseline`` and ``official_gh`` are written from ``lr_scheduler`` and
``lr_scheduler_warm`` as they read (1-based ``epoch + 1``, a 10-epoch linear warm-up), so the
presets' rate at every epoch is pinned to the code the paper's numbers came from.
"""

import math
from pathlib import Path

import pytest

from geoharmony.configure import load_config
from geoharmony.engine.schedules import learning_rate, two_stage_cosine, warmup_cosine

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def official_baseline(epoch: int, epochs: int, lr_max: float, lr_min: float) -> float:
    epoch = epoch + 1
    if epoch < 10:
        return lr_max * epoch / 10
    return lr_min + (lr_max - lr_min) * 0.5 * (1 + math.cos((epoch - 10) / (epochs - 10) * math.pi))


def official_gh(
    epoch: int,
    epochs: int,
    warm_up: int,
    lr_max: float,
    lr_min: float,
    stage1: float,
    stage2: float,
) -> float:
    epoch = epoch + 1
    if epoch < 10:
        return lr_max * epoch / 10
    if epoch < warm_up:
        progress = (epoch - 10) / (warm_up - 10)
        return stage1 + (lr_max - stage1) * 0.5 * (1 + math.cos(progress * math.pi))
    progress = (epoch - warm_up) / (epochs - warm_up)
    return lr_min + (stage2 - lr_min) * 0.5 * (1 + math.cos(progress * math.pi))


def test_warmup_cosine_is_the_official_baseline_schedule() -> None:
    for epoch in range(100):
        assert warmup_cosine(epoch, 100, 0.5, 10, 1e-6) == pytest.approx(
            official_baseline(epoch, 100, 0.5, 1e-6), rel=1e-12
        )
    assert warmup_cosine(0, 100, 0.5, 10, 1e-6) == pytest.approx(0.05)  # not 0: (0 + 1) / 10
    assert warmup_cosine(9, 100, 0.5, 10, 1e-6) == pytest.approx(0.5)
    assert warmup_cosine(99, 100, 0.5, 10, 1e-6) == pytest.approx(1e-6)


def test_two_stage_cosine_is_the_official_gh_schedule() -> None:
    for epoch in range(1000):
        ours = two_stage_cosine(epoch, 1000, 0.5, 10, 500, 0.3, 1e-6)
        assert ours == pytest.approx(official_gh(epoch, 1000, 500, 0.5, 1e-6, 0.3, 0.3), rel=1e-12)
    assert two_stage_cosine(498, 1000, 0.5, 10, 500, 0.3, 1e-6) > 0.3  # stage 1 never reaches it
    assert two_stage_cosine(499, 1000, 0.5, 10, 500, 0.3, 1e-6) == pytest.approx(0.3)  # restart


def test_no_warmup_starts_at_the_full_rate_and_ends_at_the_minimum() -> None:
    for warmup in (0, 1):
        assert warmup_cosine(0, 5, 0.5, warmup, 1e-6) == pytest.approx(0.5)
        assert warmup_cosine(4, 5, 0.5, warmup, 1e-6) == pytest.approx(1e-6)
        assert two_stage_cosine(0, 5, 0.5, warmup, 2, 0.3, 1e-6) == pytest.approx(0.5)
    assert warmup_cosine(0, 1, 0.5, 0, 1e-6) == pytest.approx(0.5)  # a one-epoch run trains


def test_two_stage_without_a_stage_is_the_baseline_schedule() -> None:
    # The official loop uses lr_scheduler when --warm_up is 0.
    for epoch in (0, 5, 50, 99):
        assert two_stage_cosine(epoch, 100, 0.5, 10, 0, 0.3, 1e-6) == warmup_cosine(
            epoch, 100, 0.5, 10, 1e-6
        )


@pytest.mark.parametrize("rho", ["r100", "r50", "r10"])
@pytest.mark.parametrize("method", ["simclr", "focal", "sdclr", "dnc", "bcl"])
def test_cifar_presets_follow_train_cifar(rho: str, method: str) -> None:
    base = load_config(CONFIGS / "cifar100_lt" / rho / f"{method}.yaml")
    gh = load_config(CONFIGS / "cifar100_lt" / rho / f"{method}_gh.yaml")
    for cfg in (base, gh):  # train_cifar.py defaults, BCL included (the README's 1000 epochs)
        assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.min_lr) == (1000, 0.5, 1e-6)
        assert (cfg.optim.batch_size, cfg.optim.weight_decay) == (512, 5e-4)
        assert not cfg.model.joint_view_batch
    assert (gh.gh.warmup_epochs, gh.gh.ramp_epochs) == (500, 10)  # --warm_up 500, GH_warm_up
    for epoch in range(1000):
        assert learning_rate(base, epoch) == pytest.approx(
            official_baseline(epoch, 1000, 0.5, 1e-6)
        )
        assert learning_rate(gh, epoch) == pytest.approx(
            official_gh(epoch, 1000, 500, 0.5, 1e-6, 0.3, 0.3)
        )


@pytest.mark.parametrize("dataset", ["imagenet_lt", "places_lt"])
@pytest.mark.parametrize("method", ["simclr", "focal", "sdclr", "dnc", "bcl"])
def test_large_scale_presets_follow_train_imagenet_places(dataset: str, method: str) -> None:
    base = load_config(CONFIGS / dataset / f"{method}.yaml")
    gh = load_config(CONFIGS / dataset / f"{method}_gh.yaml")
    for cfg in (base, gh):
        assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.weight_decay) == (500, 0.5, 1e-4)
        assert cfg.optim.batch_size == 256
        assert cfg.train.sync_batchnorm
        assert cfg.gh.prior.floor == 100  # --stat_floor
        if method == "sdclr":
            assert cfg.method.sdclr.prune_ratio == 0.1  # type: ignore[attr-defined]
    assert (gh.gh.warmup_epochs, gh.gh.ramp_epochs) == (400, 30)
    for epoch in range(500):
        assert learning_rate(base, epoch) == pytest.approx(official_baseline(epoch, 500, 0.5, 1e-6))
        assert learning_rate(gh, epoch) == pytest.approx(
            official_gh(epoch, 500, 400, 0.5, 1e-6, 0.1, 0.1)
        )


def test_cpu_presets_give_the_baseline_its_pair_s_schedule() -> None:
    fmnist = CONFIGS / "fmnist_lt"
    base = load_config(fmnist / "simclr.yaml")
    gh = load_config(fmnist / "simclr_gh.yaml")
    for epoch in range(base.optim.epochs):
        assert learning_rate(base, epoch) == learning_rate(gh, epoch)
    assert learning_rate(base, 0) == pytest.approx(0.25)  # warm-up W = 2: epoch 0 at half
    assert learning_rate(base, gh.gh.warmup_epochs - 1) == pytest.approx(0.3)  # the restart
