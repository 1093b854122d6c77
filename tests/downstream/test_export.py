"""``geoharmony export``: torchvision-layout state dicts, safetensors, architecture checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

from geoharmony.cli import main
from geoharmony.downstream.backbone import ArchitectureError, load_backbone
from geoharmony.downstream.export import export_backbone
from geoharmony.engine.checkpoint import CheckpointError


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def test_resnet18_loads_strictly_into_torchvision_with_same_features(
    make_checkpoint: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint("resnet18")
    out, st = tmp_path / "export" / "backbone.pt", tmp_path / "export" / "backbone.safetensors"
    code = main(
        ["export", "--checkpoint", str(ckpt), "--output", str(out), "--safetensors", str(st)]
    )
    assert code == 0
    assert "loads strictly" in capsys.readouterr().out

    state = torch.load(out, weights_only=True)
    assert not any(k.startswith(("backbone.", "fc.", "projector.")) for k in state)
    tv = torchvision.models.resnet18()
    tv.fc = nn.Identity()
    tv.load_state_dict(state, strict=True)

    ours = load_backbone(ckpt).backbone
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_features(tv, x), _features(ours, x), rtol=0, atol=0)
    # The BatchNorm statistics are the checkpoint's (randomised), not a fresh model's.
    assert not torch.equal(state["bn1.running_var"], torch.ones(64))

    loaded = load_file(str(st))
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    sidecar = json.loads(out.with_suffix(".json").read_text())
    arch = sidecar["architecture"]
    assert arch["torchvision_compatible"] and arch["torchvision_name"] == "resnet18"
    assert arch["modifications"] == [] and arch["feature_dim"] == 512
    assert "torchvision.models.resnet18()" in sidecar["load_with"]
    assert sidecar["input"]["channels"] == 3


def test_cifar_stem_exported_with_recorded_modifications(
    make_checkpoint: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = make_checkpoint("cifar_resnet18", width=1.0, in_channels=3)
    out = tmp_path / "cifar.pt"
    record = export_backbone(ckpt, out)
    assert "does not load into an unmodified torchvision ResNet" in caplog.text
    arch = record["architecture"]
    assert not arch["torchvision_compatible"] and arch["stem"] == "cifar"
    assert "model.maxpool = nn.Identity()" in arch["modifications"]
    # Following the recorded changes gives a torchvision model that loads strictly and agrees.
    tv = torchvision.models.resnet18()
    tv.fc = nn.Identity()
    tv.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    tv.maxpool = nn.Identity()
    tv.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_features(tv, x), _features(load_backbone(ckpt).backbone, x))
    assert json.loads(out.with_suffix(".json").read_text())["files"] == {"torch": str(out)}


def test_narrow_one_channel_backbone_warns_or_fails_on_request(
    make_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    ckpt = make_checkpoint("cifar_resnet18", width=0.0625, in_channels=1)
    record = export_backbone(ckpt, tmp_path / "narrow.pt")
    mods = " ".join(record["architecture"]["modifications"])
    assert "width 0.0625" in mods and "build_backbone" in record["load_with"]
    state = torch.load(tmp_path / "narrow.pt", weights_only=True)
    assert state["conv1.weight"].shape == (4, 1, 3, 3)
    with pytest.raises(ArchitectureError, match="does not load into an unmodified torchvision"):
        export_backbone(ckpt, tmp_path / "strict.pt", require_torchvision=True)


def test_wrong_architecture_and_foreign_files_are_clear_errors(
    make_checkpoint: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint("resnet18")
    with pytest.raises(
        ArchitectureError, match=r"holds a resnet18 backbone.*not the expected resnet50"
    ):
        export_backbone(ckpt, tmp_path / "x.pt", expect="resnet50")
    code = main(
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--output",
            str(tmp_path / "x.pt"),
            "--expect",
            "resnet50",
        ]
    )
    assert code == 2
    assert "not the expected resnet50" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()

    foreign = tmp_path / "torchvision.pt"
    torch.save(torchvision.models.resnet18().state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a geoharmony checkpoint"):
        export_backbone(foreign, tmp_path / "y.pt")
    assert main(["export", "--checkpoint", str(foreign), "--output", str(tmp_path / "y.pt")]) == 2
    assert "not a geoharmony checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "missing.ckpt"), "--output", "z.pt"]) == 2


def test_run_directory_and_weights_that_do_not_fit_the_config(
    make_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    from geoharmony.engine.checkpoint import load_checkpoint, save_checkpoint

    ckpt = make_checkpoint("resnet18")
    # A run directory resolves to its newest valid checkpoint.
    assert load_backbone(ckpt.parent).path == ckpt
    # A config that claims another architecture than the stored weights.
    state = load_checkpoint(ckpt)
    cfg = dict(state["config"])
    cfg["model"] = {**cfg["model"], "backbone": "resnet50"}
    state["config"] = cfg
    bad = tmp_path / "bad" / "epoch_00001.ckpt"
    save_checkpoint(bad, state)
    with pytest.raises(ArchitectureError, match="do not fit a plain resnet50"):
        load_backbone(bad)
