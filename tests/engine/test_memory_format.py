"""channels_last on narrow models: which layers block it, and the trainer's fallback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from geoharmony.engine.memory_format import channels_last_blockers
from geoharmony.models.resnet import cifar_resnet18
from tiny_runs import REPO, SMOKE, TINY, needs_fashion_mnist

CPU = torch.device("cpu")


def test_blockers_are_the_narrow_strided_shortcuts() -> None:
    # Width 1/16: stage widths 4-8-16-32, so only the shortcut into stage 2 reads 4 channels.
    narrow = channels_last_blockers(cifar_resnet18(width=0.0625, in_channels=1), CPU)
    assert narrow == ["layer2.0.downsample.0"]
    assert channels_last_blockers(cifar_resnet18(width=0.125, in_channels=1), CPU) == []
    # The crash is oneDNN's: a GPU keeps channels_last at any width.
    cuda = torch.device("cuda")
    assert channels_last_blockers(cifar_resnet18(width=0.0625, in_channels=1), cuda) == []


@needs_fashion_mnist
def test_narrow_model_trains_with_channels_last_requested(tmp_path: Path) -> None:
    # In a child process: without the guard the crash would take pytest down with it.
    out = tmp_path / "run"
    args = ["pretrain", "--config", SMOKE, "--output", str(out), "--no-eval", *TINY]
    done = subprocess.run(
        [sys.executable, "-m", "geoharmony", *args, "optim.epochs=1", "train.channels_last=true"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train.channels_last ignored" in done.stderr
    assert "layer2.0.downsample.0" in done.stderr
    assert (out / "checkpoints" / "epoch_00001.ckpt").exists()
