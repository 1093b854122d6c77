"""Mask R-CNN over a geoharmony ResNet (geoharmony.detection.model): the pyramid sees the
stages exactly as the ResNet computes them, a checkpoint's backbone arrives unchanged, and the
detector trains and predicts on a tiny batch."""

from __future__ import annotations

from pathlib import Path

import torch

from geoharmony.detection.model import ResNetFPN, build_mask_rcnn, mask_rcnn_from_checkpoint
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
    model, pretrained, report = mask_rcnn_from_checkpoint(tiny_run, num_classes=10, min_size=64)
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
    assert report["unused_checkpoint_tensors"]["projector"] > 0
    transform = model.transform
    assert transform.image_mean == list(pretrained.mean) and transform.image_std == list(
        pretrained.std
    )


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
