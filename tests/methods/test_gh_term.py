"""GHTerm: the official per-epoch weight ramp, and the diagnostic ``gh.targets=labels`` (each
image's true class as its surrogate label)."""

import numpy as np
import pytest
import torch

from geoharmony.config import ConfigError, GHConfig
from geoharmony.configure import load_config
from geoharmony.data.build import build_run_data
from geoharmony.gh import swapped_cross_entropy
from geoharmony.gh.options import AllocationOptions, PriorOptions
from geoharmony.gh.term import GHTerm
from geoharmony.methods import DataInfo
from presets import pretraining_presets
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

LABELS = (2, 0, 1, 1, 2, 0)


def _term(**overrides) -> GHTerm:
    cfg = GHConfig(enabled=True, num_anchors=3, warmup_epochs=0, ramp_epochs=0, **overrides)
    return GHTerm(cfg, embed_dim=8, num_samples=len(LABELS), labels=LABELS)


def test_weight_ramps_per_epoch_as_the_official_loop() -> None:
    """train_cifar.py: GH from epoch + 1 > warm_up, w = (epoch + 1 - warm_up) / GH_warm_up."""
    cfg = GHConfig(enabled=True, num_anchors=3, warmup_epochs=500, ramp_epochs=10, weight=2.0)
    term = GHTerm(cfg, embed_dim=8, num_samples=4)
    for epoch in range(490, 520):
        official = 0.0 if epoch + 1 <= 500 else min(1.0, (epoch + 1 - 500) / 10)
        for within in (0.0, 0.5, 0.99):  # constant over the epoch's steps
            assert term.weight(epoch + within) == pytest.approx(2.0 * official)
    assert term.weight(500.0) == pytest.approx(0.2)  # a tenth of it in GH's first epoch


def test_label_targets_are_the_one_hot_classes_of_the_batch_images() -> None:
    term = _term(targets="labels")
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    indices = torch.tensor([4, 1, 3])  # classes 2, 0, 1
    loss, _ = term(z1, z2, indices, epoch=1.0)
    onehot = torch.eye(3)[[2, 0, 1]]
    l1, l2 = term.loss.logits(z1), term.loss.logits(z2)
    torch.testing.assert_close(loss, swapped_cross_entropy(l1, l2, onehot, onehot, 0.1))
    # The paper's Sinkhorn targets give a different loss on the same batch.
    sinkhorn_loss, _ = _term()(z1, z2, indices, epoch=1.0)
    assert not torch.allclose(loss, sinkhorn_loss)


def test_labels_stay_out_of_the_checkpoint() -> None:
    assert "sample_labels" not in _term(targets="labels").state_dict()
    assert set(_term(targets="labels").state_dict()) == set(_term().state_dict())


def test_label_targets_validate_their_inputs() -> None:
    cfg = GHConfig(enabled=True, num_anchors=2, targets="labels")
    with pytest.raises(ValueError, match="num_anchors"):
        GHTerm(cfg, 8, num_samples=len(LABELS), labels=LABELS)  # class 2 has no anchor
    with pytest.raises(ValueError, match="label for each"):
        GHTerm(GHConfig(enabled=True, num_anchors=3, targets="labels"), 8, num_samples=6)
    # The choice itself is checked once, where configurations are read.
    with pytest.raises(ConfigError, match=r"gh\.targets"):
        load_config(None, ["gh.targets=kmeans"])


@needs_fashion_mnist
def test_data_info_labels_follow_the_pretraining_indices() -> None:
    cfg = load_config(SMOKE, list(TINY))
    data = build_run_data(cfg.data)
    info = DataInfo.of(data)
    assert len(info.labels) == info.num_samples
    counts = np.bincount(np.asarray(info.labels), minlength=data.num_classes)
    assert counts.tolist() == list(data.class_counts)


def test_every_preset_gh_section_is_in_range() -> None:
    assert GHConfig().problems() == []
    for preset in pretraining_presets():
        assert load_config(preset).gh.problems() == [], preset


def test_out_of_range_gh_options_are_named() -> None:
    cfg = GHConfig(
        num_anchors=1,
        weight=-1.0,
        allocation=AllocationOptions(epsilon=0.0, iterations=0),
        prior=PriorOptions(momentum=1.0),
    )
    assert cfg.problems() == [
        "gh.num_anchors=1 must be at least 2",
        "gh.weight=-1.0 must not be negative",
        "gh.allocation.epsilon=0.0 must be positive",
        "gh.allocation.iterations=0 must be at least 1",
        "gh.prior.momentum=1.0 must be in [0, 1)",
    ]
    with pytest.raises(ConfigError, match=r"gh\.num_anchors=1 must be at least 2"):
        load_config(None, ["gh.num_anchors=1"])


def test_retired_options_load_when_off_and_are_refused_when_on() -> None:
    from geoharmony.config import to_dict
    from geoharmony.configure import from_dict

    stored = to_dict(load_config(None, ["gh.enabled=true"]))
    stored["gh"].update(queue_batches=0, affinity=0.0, affinity_source="batch", epsilon=0.07)
    assert from_dict(stored).gh.allocation.epsilon == 0.07  # moved into its section
    stored["gh"]["queue_batches"] = 8
    with pytest.raises(ConfigError, match=r"gh\.queue_batches=8: this option was retired"):
        from_dict(stored)
    with pytest.raises(ConfigError, match=r"gh\.affinity=0\.5: this option was retired"):
        load_config(None, ["gh.affinity=0.5"])


def test_a_warmup_as_long_as_the_run_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    cfg = GHConfig(enabled=True, num_anchors=3, warmup_epochs=5)
    with caplog.at_level("WARNING", logger="geoharmony.gh.term"):
        GHTerm(cfg, embed_dim=8, num_samples=6, total_epochs=5)
    assert "GH never turns on" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="geoharmony.gh.term"):
        GHTerm(cfg, embed_dim=8, num_samples=6, total_epochs=6)
    assert caplog.text == ""
