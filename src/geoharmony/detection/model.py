"""Mask R-CNN with a feature pyramid over a geoharmony ResNet (torchvision's detection heads).

The pyramid takes the four stages' outputs (C2-C5) of :class:`~geoharmony.models.ResNet` and adds
torchvision's FPN (256 channels, a max-pooled P6), as Mask R-CNN R50-FPN does. The stages are
called in the order :meth:`ResNet.forward_maps` calls them: the ResNet registers ``maxpool``
before ``bn1``, so torchvision's ``IntermediateLayerGetter``, which runs the children in
registration order, would pool before the stem's BatchNorm.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from geoharmony.downstream.backbone import PretrainedBackbone, load_backbone
from geoharmony.engine.checkpoint import BACKBONE_PREFIX, read_checkpoint
from geoharmony.models import ResNet
from geoharmony.models.resnet import BasicBlock, Bottleneck

__all__ = ["ResNetFPN", "build_mask_rcnn", "mask_rcnn_from_checkpoint"]


class ResNetFPN(nn.Module):
    """``[B, C, H, W]`` images -> ``OrderedDict`` of five ``[B, out_channels, h, w]`` maps
    (strides 4 to 64 with the ImageNet stem), the ``backbone`` torchvision's detectors take."""

    def __init__(self, body: ResNet, out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        stages = [body.layer1, body.layer2, body.layer3, body.layer4]
        last_blocks = [cast(BasicBlock | Bottleneck, stage[-1]) for stage in stages]
        in_channels = [block.last_bn().num_features for block in last_blocks]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, LastLevelMaxPool())
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
    min_size: int = 800,
    max_size: int = 1333,
) -> MaskRCNN:
    """Mask R-CNN on ``body`` for ``num_classes`` object classes (plus background).

    ``image_mean`` / ``image_std``: the backbone's own normalisation (one value per channel, on
    [0, 1] pixels), as the self-supervised detection protocols fine-tune with. ``min_size`` /
    ``max_size``: the shorter and the longest side images are resized to.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if len(image_mean) != body.in_channels or len(image_std) != body.in_channels:
        raise ValueError(
            f"image_mean and image_std need one value per input channel ({body.in_channels})"
        )
    return MaskRCNN(
        ResNetFPN(body),
        num_classes=num_classes + 1,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
    )


def mask_rcnn_from_checkpoint(
    path: str | Path, num_classes: int, min_size: int = 800, max_size: int = 1333
) -> tuple[MaskRCNN, PretrainedBackbone, dict[str, Any]]:
    """Mask R-CNN whose backbone is a geoharmony checkpoint's (file or run directory), with
    that backbone's normalisation; returns the detector, the loaded backbone and a report of
    the checkpoint's keys: how many backbone tensors the detector took (every one: the load is
    strict) and, by prefix, how many it left unused (the projector, GH's state, ...)."""
    pretrained = load_backbone(path)
    _, state = read_checkpoint(path)
    unused = Counter(
        k.split(".", 1)[0] for k in state["model"] if not k.startswith(BACKBONE_PREFIX)
    )
    model = build_mask_rcnn(
        pretrained.backbone, num_classes, pretrained.mean, pretrained.std, min_size, max_size
    )
    report = {
        "checkpoint": str(pretrained.path),
        "backbone_tensors_loaded": len(pretrained.backbone.state_dict()),
        "unused_checkpoint_tensors": dict(sorted(unused.items())),
    }
    return model, pretrained, report
