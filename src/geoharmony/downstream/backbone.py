"""Read a geoharmony checkpoint's backbone for downstream use, and describe its architecture.

Downstream commands (``finetune``, ``probe``, ``export``, ``embed``) need only the backbone and
how its inputs were prepared (size, channels, normalisation), so they build a plain
:class:`~geoharmony.models.ResNet` from the stored config and load the ``backbone.*`` entries of
the checkpoint into it. They do not need the pretraining data.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from geoharmony.config import Config
from geoharmony.data import image_size, norm_stats
from geoharmony.engine.checkpoint import BACKBONE_PREFIX, CheckpointError, read_checkpoint
from geoharmony.models import ResNet, build_backbone
from geoharmony.pretrained import stored_config

__all__ = [
    "ArchitectureError",
    "ArchitectureInfo",
    "PretrainedBackbone",
    "backbone_state_dict",
    "describe_architecture",
    "load_backbone",
]

# torchvision constructors by (block, blocks per stage).
_TORCHVISION: dict[tuple[str, tuple[int, ...]], str] = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


class ArchitectureError(CheckpointError):
    """A checkpoint's backbone is not the architecture asked for, or does not fit its config."""


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a backbone state dict is, read from its tensors (not from the config).

    Attributes:
        block: ``basic`` or ``bottleneck``.
        layers: residual blocks in each of the four stages.
        stem: ``imagenet`` (7x7 stride-2 conv + max-pool) or ``cifar`` (3x3 stride-1, no pool).
        width: stage-1 channels / 64.
        in_channels: input image channels.
        feature_dim: pooled feature size.
        torchvision_name: the torchvision constructor with these stages, or None.
        torchvision_compatible: loads with ``strict=True`` into that constructor's model with
            ``fc = nn.Identity()`` and no other change.
        modifications: what to change in the torchvision model otherwise.
    """

    block: str
    layers: tuple[int, ...]
    stem: str
    width: float
    in_channels: int
    feature_dim: int
    torchvision_name: str | None
    torchvision_compatible: bool
    modifications: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out


def describe_architecture(state_dict: dict[str, Tensor]) -> ArchitectureInfo:
    """Read the architecture of a plain (unprefixed) ResNet backbone state dict."""
    try:
        conv1 = state_dict["conv1.weight"]
    except KeyError:
        raise ArchitectureError("the backbone has no 'conv1.weight': not a ResNet") from None
    blocks: dict[int, set[int]] = {1: set(), 2: set(), 3: set(), 4: set()}
    for key in state_dict:
        if m := _BLOCK_KEY.match(key):
            blocks[int(m.group(1))].add(int(m.group(2)))
    layers = tuple(len(blocks[s]) for s in (1, 2, 3, 4))
    if min(layers) == 0:
        raise ArchitectureError(f"the backbone lacks a residual stage (blocks per stage {layers})")
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    out_ch, in_ch, kernel = int(conv1.shape[0]), int(conv1.shape[1]), int(conv1.shape[-1])
    stem = "imagenet" if kernel == 7 else "cifar"
    width = out_ch / 64
    last = f"layer4.{layers[3] - 1}.{'conv3' if block == 'bottleneck' else 'conv2'}.weight"
    feature_dim = int(state_dict[last].shape[0])
    tv_name = _TORCHVISION.get((block, layers))
    mods: list[str] = []
    if tv_name is None:
        mods.append(f"no torchvision constructor has {block} blocks {list(layers)}")
    if out_ch != 64:
        mods.append(
            f"width {width:g} (stage widths {out_ch}..{feature_dim}) cannot be expressed by "
            "editing a torchvision ResNet: build it with geoharmony.models.build_backbone"
        )
    if stem == "cifar":
        mods.append(
            f"model.conv1 = nn.Conv2d({in_ch}, {out_ch}, kernel_size=3, stride=1, padding=1, "
            "bias=False)"
        )
        mods.append("model.maxpool = nn.Identity()")
    elif in_ch != 3:
        mods.append(
            f"model.conv1 = nn.Conv2d({in_ch}, {out_ch}, kernel_size=7, stride=2, padding=3, "
            "bias=False)"
        )
    if stem == "cifar" and in_ch != 3:
        mods.append(f"inputs have {in_ch} channel(s), not 3")
    compatible = tv_name is not None and not mods
    return ArchitectureInfo(
        block, layers, stem, width, in_ch, feature_dim, tv_name, compatible, mods
    )


def backbone_state_dict(model_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``backbone.*`` entries of a method state dict, without the prefix."""
    n = len(BACKBONE_PREFIX)
    return {k[n:]: v for k, v in model_state.items() if k.startswith(BACKBONE_PREFIX)}


@dataclass
class PretrainedBackbone:
    """A loaded backbone and what its inputs must look like.

    Attributes:
        backbone: the ResNet (eval mode, CPU), ``[B, in_channels, S, S] -> [B, feature_dim]``.
        cfg: the stored config with the given overrides applied.
        path: the checkpoint file read.
        epoch: completed pretraining epochs (None if not recorded).
        arch: the architecture read from the weights.
        size: input side S; ``mean``, ``std``: per-channel normalisation.
        data_record: the checkpoint's record of its pretraining data.
    """

    backbone: ResNet
    cfg: Config
    path: Path
    epoch: int | None
    arch: ArchitectureInfo
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_record: dict[str, Any]

    @property
    def in_channels(self) -> int:
        return self.arch.in_channels

    @property
    def feature_dim(self) -> int:
        return self.backbone.out_dim

    def summary(self) -> dict[str, Any]:
        """What a result file records about the checkpoint."""
        return {
            "checkpoint": str(self.path),
            "epoch": self.epoch,
            "method": self.cfg.method.name,
            "gh": self.cfg.gh.enabled,
            "backbone": self.cfg.model.backbone,
            "width": self.cfg.model.width,
            "input_size": self.size,
            "in_channels": self.in_channels,
            "feature_dim": self.feature_dim,
            "pretrain_dataset": self.data_record.get("dataset"),
        }


def load_backbone(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    expect: str | None = None,
) -> PretrainedBackbone:
    """Build the checkpoint's backbone from its stored config and load its weights (strictly).

    Args:
        path: checkpoint file or run directory.
        overrides: ``key=value`` changes of the stored config (e.g. ``data.root=...``).
        expect: a backbone name (``resnet18``, ``resnet50``, ``cifar_resnet18``); a checkpoint
            of another architecture is an :class:`ArchitectureError`.

    Raises:
        CheckpointError: unreadable or not a geoharmony checkpoint.
        ArchitectureError: not the expected architecture, or weights that do not fit the
            stored config.
    """
    resolved, state = read_checkpoint(path)
    cfg = stored_config(resolved, state, overrides)
    weights = backbone_state_dict(state["model"])
    arch = describe_architecture(weights)
    name = cfg.model.backbone
    if expect is not None and expect != name:
        raise ArchitectureError(
            f"{resolved} holds a {name} backbone (width {cfg.model.width:g}, {arch.stem} stem, "
            f"{arch.in_channels}-channel input), not the expected {expect}"
        )
    try:
        backbone = build_backbone(name, in_channels=arch.in_channels, width=cfg.model.width)
    except ValueError as err:
        raise ArchitectureError(f"{resolved}: {err}") from None
    try:
        result = backbone.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ArchitectureError(
            f"{resolved}: the backbone weights do not fit a plain {name} (width "
            f"{cfg.model.width:g}): {str(err).splitlines()[-1].strip()}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ArchitectureError(
            f"{resolved}: the backbone weights do not fit a plain {name} (width "
            f"{cfg.model.width:g}): missing {result.missing_keys[:4]}, unexpected "
            f"{result.unexpected_keys[:4]}"
        )
    backbone.eval()
    mean, std = norm_stats(cfg.data.source)
    if len(mean) not in (1, arch.in_channels):
        # e.g. a 1-channel model whose source has 3-channel statistics: average them.
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    epoch = state.get("epoch")
    return PretrainedBackbone(
        backbone=backbone,
        cfg=cfg,
        path=resolved,
        epoch=int(epoch) if epoch is not None else None,
        arch=arch,
        size=image_size(cfg.data),
        mean=tuple(mean),
        std=tuple(std),
        data_record=dict(state.get("data") or {}),
    )
