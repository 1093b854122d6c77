"""A run killed with SIGKILL mid-epoch and restarted ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from geoharmony.engine.checkpoint import list_checkpoints, load_checkpoint
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

pytestmark = needs_fashion_mnist

ARGS = [
    *TINY,
    "optim.epochs=3",
    "train.checkpoint_every=1",
    "train.log_every=1",
    "gh.enabled=true",
    "gh.warmup_epochs=1",
    "gh.num_anchors=10",
]


def _command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "geoharmony",
        "pretrain",
        "--config",
        SMOKE,
        "--output",
        str(out),
        *ARGS,
    ]


def _train_steps(out: Path) -> int:
    log = out / "log.jsonl"
    if not log.exists():
        return 0
    return sum('"kind": "train"' in line for line in log.read_text().splitlines())


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_sigkill_mid_epoch_then_restart_matches_uninterrupted(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    subprocess.run(_command(straight), check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        _command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Kill during epoch 2: after epoch 1's checkpoint and at least one more logged step.
    deadline = time.monotonic() + 300
    steps_per_epoch = None
    while time.monotonic() < deadline and proc.poll() is None:
        checkpoints = list_checkpoints(killed / "checkpoints")
        if checkpoints and steps_per_epoch is None:
            steps_per_epoch = load_checkpoint(checkpoints[0])["global_step"]
        if steps_per_epoch and _train_steps(killed) > steps_per_epoch:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-epoch"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["epoch_00001.ckpt"]

    subprocess.run(_command(killed), check=True, capture_output=True, timeout=600)
    a = load_checkpoint(list_checkpoints(straight / "checkpoints")[-1])
    b = load_checkpoint(list_checkpoints(killed / "checkpoints")[-1])
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (straight, killed)]
    assert metrics[0]["probes"] == metrics[1]["probes"]  # every probe's every value
    # The restart dropped the log records of the lost part of epoch 2: every step once.
    logs = [_records(d) for d in (straight, killed)]
    for kind in ("train", "epoch"):
        steps = [[r["step"] for r in records if r["kind"] == kind] for records in logs]
        assert steps[1] == steps[0], kind
    assert [r["loss"] for r in logs[1] if r["kind"] == "epoch"] == [
        r["loss"] for r in logs[0] if r["kind"] == "epoch"
    ]
