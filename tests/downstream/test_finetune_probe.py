"""``geoharmony finetune`` and ``geoharmony probe`` end to end on tiny data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from geoharmony.cli import main
from geoharmony.eval.probes import BLOCK_KEYS

RUN_KEYS = ("method", "gh", "dataset", "imbalance_ratio", "seed", "task", "loss", "tau", "mode")


def _finetune(run: Path, out: Path, *extra: str) -> dict:
    code = main(
        ["finetune", "--checkpoint", str(run), "--output", str(out), "--no-progress", *extra]
    )
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def test_linear_logit_adjusted_writes_schema_and_is_seeded(tiny_run: Path, tmp_path: Path) -> None:
    result = _finetune(tiny_run, tmp_path / "lin", "--epochs", "200")
    for key in ("class_counts", "group_rule", *RUN_KEYS):
        assert key in result, key
    assert list(result["probes"]) == ["finetune"]
    block = result["probes"]["finetune"]
    assert set(block) == set(BLOCK_KEYS)
    assert result["task"] == "finetune" and result["mode"] == "linear"
    assert result["loss"] == "la" and result["tau"] == 1.0 and result["method"] == "simclr"
    assert result["class_counts"] == [100, 59, 35, 21, 12, 7, 4, 2, 1, 1]
    assert len(block["per_class"]) == 10 and result["group_rule"] == "thirds"
    assert result["finetune"]["train_images"] == 242 and result["finetune"]["test_images"] == 200
    assert block["avg"] > 20.0  # well above chance (10) on the learnable toy classes
    state = torch.load(tmp_path / "lin" / "model.pt", weights_only=False)
    assert state["head"]["weight"].shape == (10, 32) and state["backbone"] is None
    again = _finetune(tiny_run, tmp_path / "lin2", "--epochs", "200")
    assert again["probes"] == result["probes"]
    ce = _finetune(tiny_run, tmp_path / "ce", "--epochs", "200", "--loss", "ce", "--seed", "3")
    assert ce["loss"] == "ce" and ce["tau"] == 0.0 and ce["seed"] == 3


def test_full_finetune_updates_backbone(tiny_run: Path, tmp_path: Path) -> None:
    result = _finetune(
        tiny_run, tmp_path / "full", "--mode", "full", "--epochs", "2", "--tau", "0.5"
    )
    assert result["mode"] == "full" and result["tau"] == 0.5
    assert len(result["history"]) == 2 and np.isfinite(result["history"][-1]["loss"])
    state = torch.load(tmp_path / "full" / "model.pt", weights_only=False)
    assert state["backbone"]["conv1.weight"].shape == (4, 1, 3, 3)


class _Poisoned(nn.Module):
    """Cross-entropy whose loss (``loss``) or logit gradients (``gradients``) are NaN."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.poison == "gradients":  # a finite loss from a broken backward kernel
            logits.register_hook(lambda grad: grad * float("nan"))
        loss = nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if self.poison == "loss" else loss


@pytest.mark.parametrize("mode", ["full", "linear"])
@pytest.mark.parametrize(
    ("poison", "said"),
    [
        ("loss", "fine-tuning loss is nan at epoch 1"),
        ("gradients", "non-finite gradients at fine-tuning epoch 1 (finite loss)"),
    ],
)
def test_finetune_stops_on_non_finite_loss_or_gradients(
    tiny_run: Path, tmp_path: Path, capsys, monkeypatch, poison: str, said: str, mode: str
) -> None:
    from geoharmony.downstream import finetune

    monkeypatch.setattr(finetune, "_criterion", lambda s, counts: _Poisoned(poison))
    out = tmp_path / mode
    args = ["finetune", "--checkpoint", str(tiny_run), "--output", str(out), "--no-progress"]
    assert main([*args, "--mode", mode, "--epochs", "1"]) == 3
    err = capsys.readouterr().err
    assert said in err
    if poison == "gradients":  # the full mode's backbone comes first, the linear head alone
        assert f"parameters, first {'backbone' if mode == 'full' else 'weight'}" in err
    assert not (out / "model.pt").exists()


def test_checkpoint_with_nan_weights_is_named_not_probed(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    # What a NaN weight update leaves behind: every feature NaN. Stop with the cause, not with
    # a probe's error about empty classes or a table of zero accuracies.
    from geoharmony.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

    run = tmp_path / "nan_run"
    shutil.copytree(tiny_run, run)
    newest = list_checkpoints(run / "checkpoints")[-1]
    state = load_checkpoint(newest)
    weight = next(k for k in state["model"] if k.endswith("conv1.weight"))
    state["model"][weight][0, 0, 0, 0] = float("nan")
    save_checkpoint(newest, state)
    code = main(["finetune", "--checkpoint", str(run), "--output", str(tmp_path / "out")])
    assert code == 2
    assert "features of 242 of 242 images are NaN or infinite" in capsys.readouterr().err


def test_transfer_probe_on_image_folder(
    tiny_run: Path,
    tmp_path: Path,
    make_images: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "transfer"
    train = {f"train/{c}/{i}.png": 10 * k + i for k, c in enumerate("abc") for i in range(4 - k)}
    test = {f"val/{c}/{i}.png": 100 + 10 * k + i for k, c in enumerate("bc") for i in range(2)}
    make_images(root, {**train, **test}, mode="L")
    out = tmp_path / "probe"
    base = ["probe", "--checkpoint", str(tiny_run), "--data-source", "folder", "--root", str(root)]
    assert main([*base, "--output", str(out), "--workers", "0", "--epochs", "5"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    for key in ("class_counts", "group_rule", "accuracy", "task", "method", "gh", "seed"):
        assert key in result, key
    assert list(result["probes"]) == ["linear"]
    assert set(result["probes"]["linear"]) == set(BLOCK_KEYS)
    assert result["task"] == "probe" and result["class_counts"] == [4, 3, 2]
    assert result["class_names"] == ["a", "b", "c"]
    # The test split lacks class "a": its labels are mapped by name, and "a" has no accuracy.
    assert result["probes"]["linear"]["per_class"][0] is None
    assert result["probe_set"]["test_images"] == 4
    code = main([*base[:4], "list", "--root", str(root), "--output", str(out)])
    assert code == 2 and "--train-list and --test-list" in capsys.readouterr().err
