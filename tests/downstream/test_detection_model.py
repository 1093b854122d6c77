"""Mask R-CNN over a geoharmony ResNet (geoharmony.detection.model): the pyramid sees the
stages exactly as the ResNet computes them, a checkpoint's backbone arrives unchanged, and the
detector trains and predicts on a tiny batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoharmony.detection.model import (
    ResNetFPN,
    build_mask_rcnn,
    load_detection_backbone,
    mask_rcnn_from_checkpoint,
)
from geoharmony.downstream.backbone import ArchitectureError
from geoharmony.downstream.export import export_backbone
from geoharmony.engine.checkpoint import read_checkpoint
from geoharmony.models import build_backbone
from tiny_runs import randomise_batchnorm


def test_the_pyramid_takes_the_stages_in_the_resnet_s_own_order() -> None:
    body = build_backbone("resnet18", in_channels=3, width=0.25)
    randomise_batchnorm(body, seed=0)
    with torch.no_grad():  # negative scales: max-pooling before the stem's BN would differ
        body.bn1.weight[::2] *= -1
    fpn = ResNetFPN(body).eval()
    seen = {}
    body.layer4.register_forward_hook(lambda m, i, out: seen.setdefault("c5", out))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = fpn(x)
        expected = body.forward_maps(x)
    assert torch.equal(seen["c5"], expected)
    assert list(maps) == ["0", "1", "2", "3", "pool"]
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2, 1]
    assert all(m.shape[1] == 256 for m in maps.values())


def test_a_checkpoint_s_backbone_arrives_unchanged_and_its_other_keys_are_reported(
    tiny_run: Path,
) -> None:
    model, backbone = mask_rcnn_from_checkpoint(tiny_run, num_classes=10, min_size=64)
    report = backbone.report
    _, state = read_checkpoint(tiny_run)
    stored = {
        k.removeprefix("backbone."): v
        for k, v in state["model"].items()
        if k.startswith("backbone.")
    }
    detector = model.backbone.body.state_dict()
    assert detector.keys() == stored.keys()
    for key in ("conv1.weight", "layer4.1.bn2.running_var", "layer2.0.downsample.0.weight"):
        assert torch.equal(detector[key], stored[key]), key
    assert report["backbone_tensors_loaded"] == len(stored)
    assert report["unused_tensors"]["projector"] > 0
    transform = model.transform
    assert transform.image_mean == list(backbone.mean) and transform.image_std == list(backbone.std)


def test_an_exported_backbone_loads_with_its_normalisation_and_reports_extra_tensors(
    tiny_run: Path, tmp_path: Path
) -> None:
    export_backbone(tiny_run, tmp_path / "backbone.pt")
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    state["fc.weight"] = torch.zeros(3, 3)  # as a torchvision model's classifier would be
    torch.save(state, tmp_path / "backbone.pt")
    from_export = load_detection_backbone(tmp_path / "backbone.pt")
    from_checkpoint = load_detection_backbone(tiny_run)
    assert from_export.report["unused_tensors"] == {"fc": 1}
    assert (from_export.mean, from_export.std) == (from_checkpoint.mean, from_checkpoint.std)
    exported = from_export.body.state_dict()
    for key, value in from_checkpoint.body.state_dict().items():
        assert torch.equal(exported[key], value), key
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "backbone.pt")
    with pytest.raises(ArchitectureError, match=r"layer1\.0\.conv1\.weight"):
        load_detection_backbone(tmp_path / "backbone.pt")


def test_the_detector_trains_and_predicts_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    body = build_backbone("cifar_resnet18", in_channels=1, width=0.125)
    model = build_mask_rcnn(body, 3, [0.3], [0.35], min_size=64, max_size=64)
    images = [torch.rand(1, 64, 64) for _ in range(2)]
    targets = []
    for label in (1, 3):
        mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
        mask[0, 10:40, 20:50] = 1
        box = torch.tensor([[20.0, 10.0, 50.0, 40.0]])
        targets.append({"boxes": box, "labels": torch.tensor([label]), "masks": mask})
    losses = model.train()(images, targets)
    assert set(losses) == {
        "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"
    }  # fmt: skip
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert body.conv1.weight.grad is not None and body.conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        (out, _) = model.eval()(images)
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    assert out["masks"].shape[1:] == (1, 64, 64)
