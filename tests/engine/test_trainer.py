"""Real tiny pretraining runs: resume, pairing, faults, the end-to-end smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geoharmony.cli import main
from geoharmony.configure import from_dict
from geoharmony.data.build import build_run_data
from geoharmony.engine.checkpoint import list_checkpoints, load_checkpoint
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

pytestmark = needs_fashion_mnist

GH = ["gh.enabled=true", "gh.warmup_epochs=1", "gh.ramp_epochs=1", "gh.num_anchors=10"]


def pretrain(out: Path, *extra: str, flags: tuple[str, ...] = ("--no-eval",)) -> int:
    return main(["pretrain", "--config", SMOKE, "--output", str(out), *flags, *TINY, *extra])


def final_state(out: Path) -> dict:
    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])


def test_pause_and_resume_is_bit_identical(tmp_path: Path) -> None:
    assert pretrain(tmp_path / "straight", *GH) == 0
    assert pretrain(tmp_path / "paused", *GH, flags=("--no-eval", "--stop-after", "1")) == 0
    assert [p.name for p in list_checkpoints(tmp_path / "paused" / "checkpoints")] == [
        "epoch_00001.ckpt"
    ]
    assert pretrain(tmp_path / "paused", *GH) == 0
    straight, resumed = final_state(tmp_path / "straight"), final_state(tmp_path / "paused")
    assert_same_training_state(straight, resumed)
    # The prior bank is part of the state and was really estimated.
    assert resumed["model"]["gh.prior.seen"].any()


def test_resume_refuses_a_changed_config(tmp_path: Path, capsys) -> None:
    assert pretrain(tmp_path, flags=("--no-eval", "--stop-after", "1")) == 0
    assert pretrain(tmp_path, "optim.lr=0.1") == 2
    assert "optim.lr" in capsys.readouterr().err


def test_corrupt_newest_checkpoint_falls_back(tmp_path: Path, caplog) -> None:
    assert pretrain(tmp_path, "train.checkpoint_every=1") == 0
    newest = list_checkpoints(tmp_path / "checkpoints")[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    with caplog.at_level("WARNING"):
        # Resuming falls back to epoch 1 and trains epoch 2 again, rewriting it.
        assert pretrain(tmp_path) == 0
    assert "corrupt or truncated" in caplog.text
    assert load_checkpoint(newest)["epoch"] == 2


@pytest.mark.parametrize(
    ("poison", "said"),
    [("loss", "loss is nan at epoch 2"), ("gradients", "non-finite gradients at epoch 2")],
)
def test_non_finite_loss_or_gradients_stop_and_keep_last_good_checkpoint(
    tmp_path: Path, capsys, monkeypatch, poison: str, said: str
) -> None:
    # "gradients": what a broken kernel does (bf16 weight gradients on an AMX CPU): the loss is
    # fine, its gradients are not; stepping would write NaN into the weights and every feature.
    from geoharmony.methods.simclr import SimCLR

    calls = {"n": 0}
    original = SimCLR.ssl_loss

    def poisoned(self, z1, z2):
        calls["n"] += 1
        late = calls["n"] > 7  # epoch 2 of ~6 steps each
        if late and poison == "gradients" and z1.requires_grad:
            z1.register_hook(lambda grad: grad * float("nan"))
        loss = original(self, z1, z2)
        return loss * float("nan") if late and poison == "loss" else loss

    monkeypatch.setattr(SimCLR, "ssl_loss", poisoned)
    assert pretrain(tmp_path, "train.checkpoint_every=1") == 3
    err = capsys.readouterr().err
    assert said in err and "stopped without saving" in err
    if poison == "gradients":
        assert "(finite loss)" in err and ("first backbone." in err or "first projector." in err)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["epoch_00001.ckpt"]
    state = final_state(tmp_path)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_baseline_checkpoints_the_end_of_the_gh_warmup(tmp_path: Path) -> None:
    # Off the checkpoint grid (every 10 epochs) and not the last epoch, kept past pruning: the
    # checkpoint a paired +GH run starts from.
    extra = ("optim.epochs=3", "gh.warmup_epochs=1", "train.checkpoint_every=10")
    assert pretrain(tmp_path / "base", *extra, "train.keep_checkpoints=1") == 0
    names = [p.name for p in list_checkpoints(tmp_path / "base" / "checkpoints")]
    assert names == ["epoch_00001.ckpt", "epoch_00003.ckpt"]


def test_gh_run_continues_from_its_baseline(tmp_path: Path) -> None:
    assert pretrain(tmp_path / "base", flags=("--no-eval", "--stop-after", "1")) == 0
    ckpt = list_checkpoints(tmp_path / "base" / "checkpoints")[-1]
    assert pretrain(tmp_path / "gh", *GH, flags=("--no-eval", "--init-from", str(ckpt))) == 0
    state = final_state(tmp_path / "gh")
    assert state["epoch"] == 2
    # The bank was primed from the baseline's logits (every image but the dropped last partial
    # batch of 32), then refreshed: a real, non-uniform prior.
    seen = state["model"]["gh.prior.seen"]
    assert int(seen.sum()) > len(seen) - 32
    assert not torch.allclose(state["model"]["gh.prior.current"], torch.full((10,), 0.1))


def test_end_to_end_smoke_run_writes_metrics(tmp_path: Path) -> None:
    assert pretrain(tmp_path, *GH, "eval.monitor_every=1", flags=()) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "method",
        "gh",
        "dataset",
        "imbalance_ratio",
        "seed",
        "group_rule",
        "probes",
        "probe_set",
        "class_counts",
        "config",
    ):
        assert key in metrics, key
    assert metrics["gh"] is True and metrics["method"] == "simclr"
    assert list(metrics["probes"]) == ["knn", "linear"] and metrics["class_counts"][0] == 100
    for block in metrics["probes"].values():
        assert len(block["per_class"]) == 10
        assert 0 <= block["avg"] <= 100 and block["std"] >= 0
    assert "prior" in metrics and "geometry" in metrics
    assert metrics["precision"] == "fp32"  # as run (TINY sets it)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r["kind"] == "epoch"]
    assert len(epochs) == 2 and "monitor_knn_avg" in epochs[-1]
    assert "prior_effective_anchors" in epochs[-1] and epochs[-1]["prior_kl_to_true"] >= 0
    # compare: table and plot from the run.
    prefix = tmp_path / "cmp"
    assert main(["compare", str(tmp_path), str(tmp_path), "--output", str(prefix)]) == 0
    table = Path(f"{prefix}.md").read_text()
    assert "| Few |" in table and "SimCLR+GH" in table
    assert Path(f"{prefix}_per_class.png").stat().st_size > 0


def test_epoch_log_splits_the_loss_into_its_terms(tmp_path: Path) -> None:
    """Each epoch line carries the mean of every ``*_loss`` term over the steps that logged
    it: the SSL loss in every epoch, GH's only once its warm-up has ended."""
    assert pretrain(tmp_path, *GH, "train.log_every=1") == 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["kind"] == "train"]
    epochs = [r for r in log if r["kind"] == "epoch"]
    assert len(epochs) == 2
    for row in epochs:
        own = [r for r in steps if int(r["epoch"]) == row["epoch"] - 1]
        for term in ("ssl_loss", "gh_loss"):
            logged = [r[term] for r in own if term in r]
            if logged:
                assert row[term] == pytest.approx(sum(logged) / len(logged), rel=1e-5)
            else:
                assert term not in row
    assert "gh_loss" not in epochs[0] and "gh_loss" in epochs[1]  # warm-up: 1 epoch
    assert epochs[1]["loss"] > epochs[1]["ssl_loss"]  # the total holds the GH term too


@pytest.mark.parametrize("probe", ["sgd"])
def test_evaluate_command_reads_a_checkpoint(tmp_path: Path, probe: str) -> None:
    assert pretrain(tmp_path) == 0
    ckpt = list_checkpoints(tmp_path / "checkpoints")[-1]
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--output",
                str(out),
                f"eval.probe={probe}",
                "eval.probe_epochs=3",
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    assert metrics["probe_set"]["preset"] == probe
    assert len(metrics["probes"]["linear"]["per_class"]) == 10


def test_oracle_prior_receives_the_true_class_shares(tmp_path: Path) -> None:
    assert pretrain(tmp_path, *GH, "gh.prior=oracle") == 0
    state = final_state(tmp_path)
    counts = torch.tensor(build_run_data(from_dict(state["config"]).data).class_counts)
    shares = (counts / counts.sum()).sort().values
    torch.testing.assert_close(state["model"]["gh.prior.current"].sort().values, shares.float())


def test_label_targets_run_with_the_trainer_data(tmp_path: Path) -> None:
    # Fails if the trainer does not lend the method its pretraining labels (GHTerm refuses).
    assert pretrain(tmp_path, *GH, "gh.targets=labels") == 0
    assert "gh.sample_labels" not in final_state(tmp_path)["model"]
