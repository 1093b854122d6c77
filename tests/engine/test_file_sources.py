"""Pretraining end to end on file-backed sources (an image folder, OLTR-style list files): the
path ImageNet-LT and Places-LT take, with per-image transforms in data-loader workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoharmony.cli import main
from tiny_runs import SMOKE, TINY_FILES

COUNTS = {"train": [12, 6, 3], "test": [4, 4, 4]}


def _images(root: Path) -> dict[str, list[str]]:
    """Random 20x20 PNGs as root/<split>/class<c>/<i>.png; returns each split's list lines."""
    rng = np.random.default_rng(0)
    lines: dict[str, list[str]] = {}
    for split, counts in COUNTS.items():
        lines[split] = []
        for label, count in enumerate(counts):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
                lines[split].append(f"{split}/class{label}/{i}.png {label}")
    return lines


@pytest.mark.parametrize(
    ("source", "method"),
    [("folder", "simclr"), ("list", "simclr"), ("folder", "bcl"), ("folder", "dnc")],
)
def test_pretrain_on_file_backed_source(tmp_path: Path, source: str, method: str) -> None:
    # BCL over 2 epochs: its scores reach the data-loader workers for epoch 2. DnC over 4: base,
    # k-means on the decoded pretraining images, experts, distillation.
    lines = _images(tmp_path / "data")
    extra = [f"data.source={source}", f"data.root={tmp_path / 'data'}", f"method.name={method}"]
    if method == "bcl":
        extra.append("optim.epochs=2")
    if method == "dnc":
        extra += ["optim.epochs=4", "optim.batch_size=6", "eval.batch_size=8"]
    if source == "list":
        for split in COUNTS:
            (tmp_path / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")
        extra += [
            f"data.train_list={tmp_path / 'train.txt'}",
            f"data.test_list={tmp_path / 'test.txt'}",
        ]
    out = tmp_path / "run"
    assert main(["pretrain", "--config", SMOKE, "--output", str(out), *TINY_FILES, *extra]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_counts"] == COUNTS["train"]
    assert metrics["probe_set"]["test_images"] == sum(COUNTS["test"])
    assert len(metrics["probes"]["linear"]["per_class"]) == 3
