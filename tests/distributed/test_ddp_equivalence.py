"""Real 2-process gloo pretraining equals one process with the whole batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import launch_ranks
from geoharmony.cli import main
from geoharmony.engine.checkpoint import list_checkpoints, load_checkpoint
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

pytestmark = needs_fashion_mnist

# GH from the first step; the prior is not refreshed (an argmax histogram can flip on a
# rounding-level tie), but both ranks must fill their banks with every rank's logits.
GH = ["gh.enabled=true", "gh.warmup_epochs=0", "gh.ramp_epochs=0", "gh.num_anchors=10"]
# Global batch 32 (16 per rank), with global-batch BatchNorm on the ranks.
SYNC = [
    "train.sync_batchnorm=true",
    "optim.batch_size=32",
    "optim.lr=0.005",
    "optim.warmup_epochs=0",
    "train.log_every=1",
]


# The multi-step curves below embed both views in one BatchNorm batch. With each view its own
# batch (the default) the float32 curves of these tiny networks part at step 2 by ~5e-4 (measured
# 2026-12-07): BatchNorm over 16-image halves amplifies the float32 rounding of the two global
# reductions past the 1e-4 these tests hold. The per-view path itself is exact: in float64, 2 ranks
# give one process's gradients to 1e-9 (test_view_batches_ddp.py), and the one-step test above
# runs it at float32.
JOINT = ["model.joint_view_batch=true"]


def _run_both(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    args = ["--config", SMOKE, "--no-eval", *TINY, *SYNC, *GH, *extra]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["pretrain", "--output", str(one), *args]) == 0
    launch_ranks(
        [sys.executable, "-m", "geoharmony", "pretrain", "--output", str(two), *args],
        world_size=2,
    )
    return one, two


def _step_losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


def _final(out: Path) -> dict:
    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])


def test_one_step_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    # 48 images: one step of 32. Same loss, same update of every weight, same bank.
    one, two = _run_both(tmp_path, "data.n_max=20", "optim.epochs=1")
    a, b = _final(one), _final(two)
    assert a["global_step"] == b["global_step"] == 1
    assert _step_losses(two) == pytest.approx(_step_losses(one), rel=1e-5)
    for key, value in a["model"].items():
        other = b["model"][key]
        if value.is_floating_point():
            scale = float(value.abs().max()) + 1e-12
            torch.testing.assert_close(other, value, rtol=1e-4, atol=1e-5 * scale, msg=key)
        else:
            assert torch.equal(other, value), key
    assert int(b["model"]["gh.prior.seen"].sum()) == 32


@pytest.mark.parametrize("method", ["simclr", "bcl"])
def test_loss_curve_on_two_ranks_follows_one_process(tmp_path: Path, method: str) -> None:
    # 4 steps over 2 epochs (BCL's scores, from both ranks' per-sample losses, drive epoch 2's
    # views). These tiny networks, with GH's sharp Sinkhorn targets from the first step, are
    # chaotic: in one process, scaling the learning rate by 1 + 2e-6 (a rounding-level change of
    # every update) moved step 3's loss by up to 0.04% and step 4's by 0.5-1.8% (measured on
    # this test's configuration). So steps 1-2 must agree to rounding, step 3 (the first on
    # epoch 2's views) to 0.5%, and step 4 is only checked to exist: a bound on it would measure
    # the machine's rounding, not the distributed code (it failed at 2% on one CPU).
    one, two = _run_both(
        tmp_path,
        *JOINT,
        "data.n_max=40",
        "optim.epochs=2",
        f"method.name={method}",
        "train.checkpoint_every=1",
    )
    curves = [_step_losses(one), _step_losses(two)]
    assert len(curves[0]) == len(curves[1]) == 4
    assert curves[1][:2] == pytest.approx(curves[0][:2], rel=1e-4)
    assert curves[1][2] == pytest.approx(curves[0][2], rel=5e-3)
    if method == "bcl":
        # The scores that drive epoch 2 were computed from both ranks' per-sample losses. (Later
        # losses may differ more: RandAugment's magnitudes are discrete, so a rounding-level
        # change of a score can flip an image's augmentation.)
        first = [
            load_checkpoint(d / "checkpoints" / "epoch_00001.ckpt")["model"] for d in (one, two)
        ]
        assert torch.equal(first[0]["observed"], first[1]["observed"])
        assert bool(first[1]["scored"])
        torch.testing.assert_close(first[1]["loss_ema"], first[0]["loss_ema"], rtol=1e-4, atol=0)
        torch.testing.assert_close(first[1]["scores"], first[0]["scores"], rtol=1e-3, atol=1e-4)


BEYOND = {
    # A dummy anchor takes part of the mass (rho ramps per step) and the prior is a live EMA
    # of every rank's soft assignments: both must see the global batch.
    "partial": ["gh.allocation.name=partial", "gh.prior.name=streaming"],
    # The relaxed marginal, each sample weighted by 1 / its anchors' prior share, scaled to
    # mean 1 over the global batch (per-rank scaling would differ).
    "relaxed": ["gh.allocation.name=relaxed", "gh.target_weighting=inverse_prior"],
}


@pytest.mark.parametrize("option", sorted(BEYOND))
def test_allocations_beyond_the_paper_on_two_ranks_follow_one_process(
    tmp_path: Path, option: str
) -> None:
    one, two = _run_both(
        tmp_path,
        *JOINT,
        "data.n_max=40",
        "optim.epochs=2",
        "train.checkpoint_every=1",
        *BEYOND[option],
    )
    curves = [_step_losses(one), _step_losses(two)]
    assert len(curves[0]) == len(curves[1]) == 4
    # Later steps are chaotic (see above): the first two steps, and the prior after epoch 1.
    assert curves[1][:2] == pytest.approx(curves[0][:2], rel=1e-4)
    a, b = (load_checkpoint(d / "checkpoints" / "epoch_00001.ckpt")["model"] for d in (one, two))
    torch.testing.assert_close(b["gh.prior.current"], a["gh.prior.current"], rtol=1e-4, atol=1e-6)
