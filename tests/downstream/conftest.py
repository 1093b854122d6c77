"""Fixtures of the downstream tests: a tiny Fashion-MNIST-format data set, a tiny pretrained
run, checkpoints of chosen architectures, and image folders.

The suite runs with ``--import-mode=importlib``, so helpers reach the tests as fixtures.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoharmony.cli import main
from geoharmony.config import to_dict
from geoharmony.configure import load_config
from geoharmony.engine.checkpoint import save_checkpoint
from geoharmony.methods import DataInfo, build_method
from tiny_runs import randomise_batchnorm

REPO = Path(__file__).resolve().parents[2]


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _class_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 noise with a bright bar whose row depends on the class: learnable, not trivial."""
    images = rng.integers(0, 80, (len(labels), 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c + 3 : 2 * c + 7, 4:24] += 150
    return images


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IDX files of a 10-class, 28x28 set: 120 training and 20 test images per class."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", 120), ("t10k", 20)):
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", _class_images(labels, rng))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Path:
    """A one-epoch SimCLR run (cifar_resnet18 width 1/16, 1-channel) on the tiny set."""
    out = tmp_path_factory.mktemp("run")
    code = main(
        [
            "pretrain",
            "--config",
            str(REPO / "configs" / "smoke.yaml"),
            "--output",
            str(out),
            "optim.epochs=1",
            "model.width=0.0625",
            "data.n_max=100",
            f"data.root={fmnist_root}",
            "data.num_workers=0",
            "eval.monitor_every=0",
            "train.progress=false",
            "--no-eval",
        ]
    )
    assert code == 0
    return out


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """``make_checkpoint(backbone, width=1.0, in_channels=3, gh=False) -> path``: a checkpoint
    in the trainer's layout, with randomised BatchNorm statistics."""

    def make(backbone: str, width: float = 1.0, in_channels: int = 3, gh: bool = False) -> Path:
        cfg = load_config(
            None,
            [
                f"model.backbone={backbone}",
                f"model.width={width}",
                "model.projector_hidden=32",
                "model.projector_dim=16",
                f"gh.enabled={str(gh).lower()}",
                "gh.num_anchors=10",
                "data.source=folder",
                "data.root=/nonexistent",
            ],
        )
        method = build_method(cfg, DataInfo(8, in_channels, 10))
        randomise_batchnorm(method.backbone, seed=1)
        path = tmp_path / f"{backbone}_w{width}_c{in_channels}" / "epoch_00001.ckpt"
        save_checkpoint(
            path,
            {
                "format": 1,
                "epoch": 1,
                "global_step": 1,
                "model": method.state_dict(),
                "config": to_dict(cfg),
                "data": {"dataset": "folder", "class_counts": [1] * 10},
            },
        )
        return path

    return make


@pytest.fixture
def make_images() -> Callable[..., list[str]]:
    """``make_images(root, layout)``: write PNGs; ``layout`` maps relative path -> seed.
    Returns the paths sorted."""

    def make(root: Path, names: dict[str, int], size: int = 20, mode: str = "RGB") -> list[str]:
        for name, seed in names.items():
            rng = np.random.default_rng(seed)
            shape = (size, size + 4, 3) if mode == "RGB" else (size, size + 4)
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(path)
        return sorted(names)

    return make
