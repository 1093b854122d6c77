"""Backbones and heads."""

from geoharmony.models.heads import Projector
from geoharmony.models.resnet import (
    BACKBONES,
    BasicBlock,
    Bottleneck,
    ResNet,
    build_backbone,
    cifar_resnet18,
    imagenet_resnet18,
    imagenet_resnet50,
)

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "Projector",
    "ResNet",
    "build_backbone",
    "cifar_resnet18",
    "imagenet_resnet18",
    "imagenet_resnet50",
]
