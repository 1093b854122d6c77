"""Linear probe on cached features."""

from __future__ import annotations

import math

import pytest
import torch

from geoharmony.eval import PRESETS, LinearProbe, ProbeSettings, predict, train_linear_probe
from geoharmony.eval.linear_probe import get_probe_settings


def _separable(n_per_class: int, seed: int, num_classes: int = 5, dim: int = 32):
    gen = torch.Generator().manual_seed(seed)
    centers = 4 * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123))
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = (centers[y] + 0.5 * torch.randn(len(y), dim, generator=gen)).relu()
    return x, y


@pytest.mark.parametrize(
    ("preset", "epochs", "feature_norm"),
    [("adam", 60, None), ("sgd", None, None), ("adam", 60, "standardize"), ("adam", 60, "l2")],
)
def test_separable_data_is_learned(preset: str, epochs: int | None, feature_norm) -> None:
    x, y = _separable(200, seed=0)
    x_test, y_test = _separable(50, seed=1)
    probe = train_linear_probe(x, y, 5, preset=preset, epochs=epochs, feature_norm=feature_norm)
    assert isinstance(probe, torch.nn.Linear) and not probe.training
    assert (predict(probe, x) == y).float().mean().item() == 1.0
    assert (predict(probe, x_test) == y_test).float().mean().item() == 1.0


def test_deterministic_for_a_seed() -> None:
    x, y = _separable(100, seed=2)
    a = train_linear_probe(x, y, 5, epochs=20, seed=4)
    b = train_linear_probe(x, y, 5, epochs=20, seed=4)
    c = train_linear_probe(x, y, 5, epochs=20, seed=5)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


def test_probe_applies_its_normalisation_at_predict() -> None:
    x, y = _separable(100, seed=3)
    shifted = x * 1000 + 1e4  # badly scaled features: standardisation makes them learnable
    probe = train_linear_probe(shifted, y, 5, epochs=100, feature_norm="standardize")
    assert isinstance(probe, LinearProbe)
    torch.testing.assert_close(probe.feat_mean, shifted.mean(0))
    assert (predict(probe, shifted) == y).all()
    logits = predict(probe, shifted[:7], return_logits=True)
    assert logits.shape == (7, 5) and logits.dtype == torch.float32
    assert predict(probe, shifted[:0]).shape == (0,)


def test_preset_schedules() -> None:
    adam, sgd = PRESETS["adam"], PRESETS["sgd"]
    assert (adam.optimizer, adam.epochs, adam.batch_size) == ("adam", 500, 1000)
    assert adam.weight_decay == 5e-6 and adam.feature_norm == "none"
    assert adam.lr_at(0) == pytest.approx(1e-2)
    assert adam.lr_at(250) == pytest.approx(1e-4)
    assert adam.lr_at(500) == pytest.approx(1e-6)
    # Official gamma = (1e-6 / 1e-2) ** (1 / epochs), stepped once per epoch.
    assert adam.lr_at(1) / adam.lr_at(0) == pytest.approx((1e-4) ** (1 / 500))
    assert (sgd.optimizer, sgd.epochs, sgd.lr, sgd.momentum) == ("sgd", 30, 30.0, 0.9)
    assert [sgd.lr_at(e) for e in (0, 9, 10, 19, 20, 29)] == pytest.approx([30, 30, 3, 3, 0.3, 0.3])
    cosine = ProbeSettings(schedule="cosine", epochs=10, lr=1.0, final_lr=0.0)
    assert cosine.lr_at(5) == pytest.approx(0.5)
    assert get_probe_settings("adam", epochs=100).lr_at(100) == pytest.approx(1e-6)
    assert ProbeSettings(schedule="cosine", epochs=4).lr_at(0) == pytest.approx(1e-2)
    assert math.isclose(get_probe_settings("sgd", epochs=60).lr_at(20), 3.0)


def test_errors() -> None:
    x, y = _separable(10, seed=0)
    with pytest.raises(ValueError, match="adam, sgd"):
        train_linear_probe(x, y, 5, preset="lbfgs")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        train_linear_probe(x, y, 4, epochs=1)
    with pytest.raises(ValueError, match="train_y"):
        train_linear_probe(x, y[:-1], 5, epochs=1)
