"""ResNet backbones whose parameter names match torchvision's ResNet.

The module tree mirrors ``torchvision.models.ResNet`` (``conv1``, ``bn1``, ``layer1..layer4``
with ``.{j}.conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/downsample.1``) but has no ``fc``: the
forward pass ends at global average pooling. A standard-stem, width-1, 3-channel model therefore
loads into ``torchvision.models.resnet18()`` / ``resnet50()`` with ``strict=True`` once an ``fc``
is added, and torchvision weights load here after dropping ``fc.*``.

Written here rather than wrapping torchvision because the CIFAR stem (3x3 stride-1 conv, no
max-pool) and the width multiplier are not torchvision options, and a wrapper would either carry
a dead ``fc`` or rename keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Stem = Literal["imagenet", "cifar"]

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_backbone",
    "cifar_resnet18",
    "imagenet_resnet18",
    "imagenet_resnet50",
]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut.

    ``[B, in_ch, H, W] -> [B, planes, H / stride, W / stride]``.
    """

    expansion = 1

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck, stride on the 3x3 conv (torchvision's "ResNet v1.5").

    ``[B, in_ch, H, W] -> [B, 4 * planes, H / stride, W / stride]``.
    """

    expansion = 4

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """ResNet feature extractor: ``forward(x [B, C_in, H, W]) -> features [B, out_dim]``.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)``.
        in_channels: input image channels (1 for grayscale; the data is not channel-copied).
        width: multiplier on the stage widths 64/128/256/512 (each rounded, at least 1).
        stem: ``"imagenet"`` = 7x7 stride-2 conv + 3x3 stride-2 max-pool (torchvision);
            ``"cifar"`` = 3x3 stride-1 conv and no max-pool (small images).
        zero_init_residual: zero the last BatchNorm scale of every residual branch so each block
            starts as the identity (Goyal et al. 2017).
        seed: if given, the conv weights are drawn from ``torch.Generator().manual_seed(seed)``
            instead of the global RNG, so a model is reproducible without global state.

    Attributes:
        out_dim: feature dimension, ``round(512 * width) * block.expansion``.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        in_channels: int = 3,
        width: float = 1.0,
        stem: Stem = "imagenet",
        zero_init_residual: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {tuple(layers)}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")

        widths = [max(1, round(base * width)) for base in (64, 128, 256, 512)]
        self.in_channels = in_channels
        self.width = width
        self.stem = stem
        self._in_ch = widths[0]

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(
                in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False
            )
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = _conv3x3(in_channels, widths[0])
            # Identity keeps the attribute (and torchvision's module order) without parameters.
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(block, widths[0], layers[0], stride=1)
        self.layer2 = self._make_stage(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_stage(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_stage(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[3] * block.expansion

        self.reset_parameters(zero_init_residual=zero_init_residual, seed=seed)

    def _make_stage(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out_ch = planes * block.expansion
        if stride != 1 or self._in_ch != out_ch:
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, out_ch, stride), nn.BatchNorm2d(out_ch)
            )
        modules: list[nn.Module] = [block(self._in_ch, planes, stride, downsample)]
        self._in_ch = out_ch
        modules += [block(out_ch, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    @torch.no_grad()
    def reset_parameters(
        self, *, zero_init_residual: bool = False, seed: int | None = None
    ) -> None:
        """torchvision's initialisation: Kaiming-normal (fan_out) convs, BatchNorm (1, 0)."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu", generator=gen
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_maps(self, x: Tensor) -> Tensor:
        """Last-stage feature maps: ``[B, C_in, H, W] -> [B, out_dim, H', W']``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features: ``[B, C_in, H, W] -> [B, out_dim]``."""
        # flatten of a [B, C, 1, 1] tensor is a view in either memory format, so channels_last
        # inputs stay channels_last through the whole network.
        return torch.flatten(self.avgpool(self.forward_maps(x)), 1)


def _named(block: Block, layers: tuple[int, ...], stem: Stem, doc: str) -> Callable[..., ResNet]:
    """A constructor of one ResNet variant (keyword arguments as :class:`ResNet`'s)."""

    def build(
        *,
        in_channels: int = 3,
        width: float = 1.0,
        zero_init_residual: bool = False,
        seed: int | None = None,
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            in_channels=in_channels,
            width=width,
            stem=stem,
            zero_init_residual=zero_init_residual,
            seed=seed,
        )

    build.__doc__ = doc
    return build


cifar_resnet18 = _named(
    BasicBlock,
    (2, 2, 2, 2),
    "cifar",
    "ResNet-18 for 32x32 images: 3x3 stride-1 stem, no max-pool; ``out_dim = round(512*w)``.",
)
imagenet_resnet18 = _named(
    BasicBlock,
    (2, 2, 2, 2),
    "imagenet",
    "torchvision-layout ResNet-18 (7x7 stem + max-pool); ``out_dim = 512`` at width 1.",
)
imagenet_resnet50 = _named(
    Bottleneck,
    (3, 4, 6, 3),
    "imagenet",
    "torchvision-layout ResNet-50 (7x7 stem + max-pool); ``out_dim = 2048`` at width 1.",
)


BACKBONES: dict[str, Callable[..., ResNet]] = {
    "cifar_resnet18": cifar_resnet18,
    "resnet18": imagenet_resnet18,
    "resnet50": imagenet_resnet50,
}


def build_backbone(name: str, **kwargs: object) -> ResNet:
    """Build a registered backbone by name; ``kwargs`` go to its factory.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    try:
        factory = BACKBONES[name]
    except KeyError:
        valid = ", ".join(sorted(BACKBONES))
        raise ValueError(f"unknown backbone {name!r}; valid names: {valid}") from None
    return factory(**kwargs)
