"""Mask R-CNN with a feature pyramid over a geoharmony ResNet (torchvision's detection heads).

The pyramid takes the four stages' outputs (C2-C5) of :class:`~geoharmony.models.ResNet` and adds
torchvision's FPN (256 channels, a max-pooled P6), as Mask R-CNN R50-FPN does, with BatchNorm
after its convolutions (the self-supervised protocol normalises the FPN as the backbone; the
trainer makes both synchronised across processes). The stages are
called in the order :meth:`ResNet.forward_maps` calls them: the ResNet registers ``maxpool``
before ``bn1``, so torchvision's ``IntermediateLayerGetter``, which runs the children in
registration order, would pool before the stem's BatchNorm.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from geoharmony.downstream.backbone import ArchitectureError, load_backbone
from geoharmony.engine.checkpoint import BACKBONE_PREFIX, read_checkpoint
from geoharmony.models import ResNet, build_backbone
from geoharmony.models.resnet import BasicBlock, Bottleneck

__all__ = [
    "DetectionBackbone",
    "ResNetFPN",
    "build_mask_rcnn",
    "load_detection_backbone",
    "mask_rcnn_from_checkpoint",
]

# Mask R-CNN R50-FPN's anchors: one side per level (P2-P6), three aspect ratios each.
ANCHOR_SIZES = (32, 64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


class ResNetFPN(nn.Module):
    """``[B, C, H, W]`` images -> ``OrderedDict`` of five ``[B, out_channels, h, w]`` maps
    (strides 4 to 64 with the ImageNet stem), the ``backbone`` torchvision's detectors take."""

    def __init__(self, body: ResNet, out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        stages = [body.layer1, body.layer2, body.layer3, body.layer4]
        last_blocks = [cast(BasicBlock | Bottleneck, stage[-1]) for stage in stages]
        in_channels = [block.last_bn().num_features for block in last_blocks]
        self.fpn = FeaturePyramidNetwork(
            in_channels, out_channels, LastLevelMaxPool(), norm_layer=nn.BatchNorm2d
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        maps: OrderedDict[str, Tensor] = OrderedDict()
        for name, stage in zip("0123", (b.layer1, b.layer2, b.layer3, b.layer4), strict=True):
            x = stage(x)
            maps[name] = x
        return self.fpn(maps)


def build_mask_rcnn(
    body: ResNet,
    num_classes: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    anchor_sizes: Sequence[int] = ANCHOR_SIZES,
    rpn_proposals: tuple[int, int] = (1000, 1000),
    roi_samples_per_image: int = 512,
) -> MaskRCNN:
    """Mask R-CNN on ``body`` for ``num_classes`` object classes (plus background).

    ``image_mean`` / ``image_std``: the backbone's own normalisation (one value per channel, on
    [0, 1] pixels), as the self-supervised detection protocols fine-tune with. ``min_size``: the
    shorter side images are resized to (several: one drawn per training image; the last is
    used at test); ``max_size``: the longest side at most. ``anchor_sizes``: one per level.
    ``rpn_proposals``: proposals kept after NMS per image, in training and at test;
    ``roi_samples_per_image``: proposals sampled per training image for the heads.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if len(image_mean) != body.in_channels or len(image_std) != body.in_channels:
        raise ValueError(
            f"image_mean and image_std need one value per input channel ({body.in_channels})"
        )
    sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
    anchors = AnchorGenerator(
        tuple((int(s),) for s in anchor_sizes), (ASPECT_RATIOS,) * len(anchor_sizes)
    )
    return MaskRCNN(
        ResNetFPN(body, fpn_channels),
        num_classes=num_classes + 1,
        min_size=sizes,
        max_size=max_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
        rpn_anchor_generator=anchors,
        rpn_post_nms_top_n_train=rpn_proposals[0],
        rpn_post_nms_top_n_test=rpn_proposals[1],
        box_batch_size_per_image=roi_samples_per_image,
    )


@dataclass(frozen=True)
class DetectionBackbone:
    """A pretrained ResNet for the detector, with its input normalisation and what was read.

    ``report``: the source file, how many backbone tensors were loaded (all of them: loads are
    strict), the source's tensors left unused by prefix (a checkpoint's projector, GH's state,
    an exported torchvision model's ``fc``), and the pretraining run's summary."""

    body: ResNet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    report: dict[str, Any]


def _exported_record(path: Path) -> dict[str, Any] | None:
    """The sidecar ``geoharmony export`` wrote next to ``path`` (None: not an export)."""
    sidecar = path.with_suffix(".json")
    if not path.is_file() or path.suffix not in (".pt", ".safetensors") or not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text())
    except ValueError as err:
        raise ArchitectureError(f"{sidecar}: not valid JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != "torchvision-resnet-state-dict":
        return None
    return record


def _from_export(path: Path, record: dict[str, Any]) -> DetectionBackbone:
    arch, prep = record["architecture"], record["input"]
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    body = build_backbone(
        arch["backbone"], in_channels=int(arch["in_channels"]), width=float(arch["width"])
    )
    expected = body.state_dict().keys()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ArchitectureError(
            f"{path}: {len(missing)} tensors of a {arch['backbone']} (width {arch['width']:g}) "
            f"are missing, first {missing[:4]}"
        )
    try:
        body.load_state_dict({k: state[k] for k in expected})
    except RuntimeError as err:  # shape mismatches
        raise ArchitectureError(f"{path}: {str(err).splitlines()[-1].strip()}") from None
    unused = Counter(k.split(".", 1)[0] for k in state if k not in expected)
    report = {
        "source": str(path),
        "format": "geoharmony export",
        "backbone_tensors_loaded": len(expected),
        "unused_tensors": dict(sorted(unused.items())),
        "pretrained": record.get("source", {}),
    }
    return DetectionBackbone(body, tuple(prep["mean"]), tuple(prep["std"]), report)


def load_detection_backbone(path: str | Path) -> DetectionBackbone:
    """The backbone of a geoharmony checkpoint (file or run directory) or of a file written by
    ``geoharmony export`` (``FILE.pt`` or ``.safetensors`` with its ``FILE.json``).

    Raises:
        CheckpointError / ArchitectureError: unreadable, or weights that do not fit.
    """
    path = Path(path)
    record = _exported_record(path)
    if record is not None:
        return _from_export(path, record)
    pretrained = load_backbone(path)
    _, state = read_checkpoint(path)
    unused = Counter(
        k.split(".", 1)[0] for k in state["model"] if not k.startswith(BACKBONE_PREFIX)
    )
    report = {
        "source": str(pretrained.path),
        "format": "geoharmony checkpoint",
        "backbone_tensors_loaded": len(pretrained.backbone.state_dict()),
        "unused_tensors": dict(sorted(unused.items())),
        "pretrained": pretrained.summary(),
    }
    return DetectionBackbone(pretrained.backbone, pretrained.mean, pretrained.std, report)


def mask_rcnn_from_checkpoint(
    path: str | Path, num_classes: int, **detector: Any
) -> tuple[MaskRCNN, DetectionBackbone]:
    """Mask R-CNN (``detector``: :func:`build_mask_rcnn`'s sizes) whose backbone is the one
    :func:`load_detection_backbone` reads from ``path``, with that backbone's normalisation."""
    backbone = load_detection_backbone(path)
    model = build_mask_rcnn(backbone.body, num_classes, backbone.mean, backbone.std, **detector)
    return model, backbone
