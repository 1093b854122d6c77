"""Shared by tests (importable: pytest puts tests/ on sys.path): tiny real Fashion-MNIST runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoharmony.data.sources import FASHION_MNIST_DEBIAN_ROOT

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke.yaml")
# ~200 images, a 1/16-width ResNet, 1 thread: a few seconds per epoch and bit-reproducible.
TINY = [
    "data.n_max=100",
    "model.width=0.0625",
    "model.projector_hidden=32",
    "model.projector_dim=16",
    "optim.batch_size=32",
    "optim.epochs=2",
    "eval.monitor_every=0",
    "eval.probe_epochs=20",
    "eval.probe_shots=20",
    "train.threads=1",
    "train.progress=false",
    "train.precision=fp32",
]

# A file-backed run (image folders, list files) in seconds: 16-pixel crops, a 1/16-width
# ResNet-18, one epoch, one loader process; the images are taken as they are (profile none).
TINY_FILES = [
    "data.profile=none",
    "data.image_size=16",
    "data.num_workers=1",
    "model.backbone=resnet18",
    "model.width=0.0625",
    "model.projector_hidden=16",
    "model.projector_dim=8",
    "optim.batch_size=8",
    "optim.epochs=1",
    "eval.monitor_every=0",
    "eval.probe_epochs=5",
    "eval.probe_shots=null",
    "eval.knn_k=5",
    "train.progress=false",
    "train.threads=1",
    # As every tiny run (TINY above): bf16 on an AMX CPU breaks here, 16-pixel images leave
    # the ImageNet stem's layer4 1x1 maps, whose bf16 weight gradient oneDNN gets wrong.
    "train.precision=fp32",
]

needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_DEBIAN_ROOT / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed",
)


def pause_resume_states(tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    """Pretrain TINY for 2 epochs straight, and again paused after epoch 1 then resumed; assert
    both final checkpoints hold identical tensors and return them (straight, resumed)."""
    import torch

    from geoharmony.cli import main
    from geoharmony.engine.checkpoint import list_checkpoints, load_checkpoint

    def run(out: Path, *flags: str) -> None:
        args = ["pretrain", "--config", SMOKE, "--output", str(out), "--no-eval", *flags]
        assert main([*args, *TINY, *extra]) == 0

    run(tmp_path / "straight")
    run(tmp_path / "resumed", "--stop-after", "1")
    run(tmp_path / "resumed")
    a, b = (
        load_checkpoint(list_checkpoints(tmp_path / name / "checkpoints")[-1])
        for name in ("straight", "resumed")
    )
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    return a, b


def randomise_batchnorm(model, seed: int) -> None:
    """Give every BatchNorm2d non-trivial affine params and running stats, so that eval-mode
    comparisons (e.g. against torchvision) exercise them."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
