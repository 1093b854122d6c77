"""What ``geoharmony detect`` does: data, detector, schedule and run settings, strictly typed.

The defaults are the protocol self-supervised backbones are fine-tuned by for COCO (MoCo's
detectron2 setup; ``docs/protocol.md``): Mask R-CNN R50-FPN, the 1x schedule (90k iterations of
16 images, LR 0.02 with linear warm-up over 1000 iterations, x0.1 at 60k and 80k), SGD with
momentum 0.9 and weight decay 1e-4 (none on normalisation layers), shorter side drawn from
640-800 in training and 800 at test, BatchNorm synchronised across processes in the backbone
and the FPN. ``configs/downstream/coco_maskrcnn.yaml`` states the same values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from geoharmony.config import ConfigError, choice

__all__ = [
    "DetectionConfig",
    "DetectionData",
    "DetectionModel",
    "DetectionOptim",
    "DetectionTrain",
    "config_dict",
    "load_detection_config",
]


@dataclass
class DetectionData:
    """The COCO-format set (``annotations/instances_{split}.json`` + image folders) and how
    images are sized: the shorter side is drawn from ``train_min_sizes`` per training image
    and is ``test_min_size`` at test, the longer side at most ``max_size``."""

    train_split: str = "train"
    val_split: str = "val"
    train_min_sizes: list[int] = field(default_factory=lambda: [640, 672, 704, 736, 768, 800])
    test_min_size: int = 800
    max_size: int = 1333
    horizontal_flip: bool = True
    workers: int = 4

    def problems(self) -> list[str]:
        sizes = [*self.train_min_sizes, self.test_min_size, self.max_size]
        out = []
        if not self.train_min_sizes or min(sizes) < 1:
            out.append("data.train_min_sizes, test_min_size and max_size must be >= 1")
        if self.workers < 0:
            out.append(f"data.workers must be >= 0, got {self.workers}")
        return out


@dataclass
class DetectionModel:
    """The detector on the backbone: FPN width; the anchor side of each pyramid level (P2 to
    P6; three aspect ratios 0.5, 1, 2 each, as Mask R-CNN R50-FPN); region proposals kept
    after NMS per image in training and at test (detectron2's 1000 and 1000; torchvision's own
    default trains with 2000); proposals sampled per image for the box and mask heads (512, a
    quarter of them objects at most). Small images with few objects need fewer of both."""

    fpn_channels: int = 256
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    rpn_proposals_train: int = 1000
    rpn_proposals_test: int = 1000
    roi_samples_per_image: int = 512

    def problems(self) -> list[str]:
        out = []
        counts = (self.rpn_proposals_train, self.rpn_proposals_test, self.roi_samples_per_image)
        if self.fpn_channels < 1 or min(counts) < 1:
            out.append("model.fpn_channels, rpn_proposals_* and roi_samples_per_image must be >= 1")
        if len(self.anchor_sizes) != 5 or min(self.anchor_sizes, default=0) < 1:
            sizes = self.anchor_sizes
            out.append(f"model.anchor_sizes needs 5 positive sides (P2-P6), got {sizes}")
        return out


@dataclass
class DetectionOptim:
    """SGD by iterations. ``batch_size``: images per iteration over all processes; ``lr`` is
    for that batch (scale both together, as the linear scaling rule)."""

    iterations: int = 90_000
    batch_size: int = 16
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: list[int] = field(default_factory=lambda: [60_000, 80_000])
    gamma: float = 0.1
    warmup_iterations: int = 1000
    warmup_factor: float = 0.001

    def problems(self) -> list[str]:
        out = []
        if self.iterations < 1 or self.batch_size < 1 or self.lr <= 0:
            out.append("optim.iterations and batch_size must be >= 1 and optim.lr > 0")
        if sorted(self.steps) != list(self.steps) or any(s < 1 for s in self.steps):
            out.append(f"optim.steps must be increasing positive iterations, got {self.steps}")
        if self.warmup_iterations < 0 or not 0 < self.warmup_factor <= 1:
            out.append("optim.warmup_iterations must be >= 0 and warmup_factor in (0, 1]")
        return out

    def lr_at(self, iteration: int) -> float:
        """The learning rate of 0-based ``iteration``: linear warm-up from ``warmup_factor``,
        then a step down by ``gamma`` at each of ``steps``."""
        drops = sum(iteration >= s for s in self.steps)
        lr = self.lr * self.gamma**drops
        if iteration < self.warmup_iterations:
            alpha = iteration / self.warmup_iterations
            lr *= self.warmup_factor * (1 - alpha) + alpha
        return lr


@dataclass
class DetectionTrain:
    """The run: seed, device, precision (detectron2's default is float32), threads, checkpoint
    interval (iterations), progress bar, and the evaluation batch (images per forward)."""

    seed: int = 0
    device: str = "auto"
    precision: str = choice("fp32", ("auto", "fp32", "bf16", "fp16"))
    threads: int | None = None
    checkpoint_every: int = 5000
    log_every: int = 20
    progress: bool = True
    eval_batch_size: int = 4

    def problems(self) -> list[str]:
        out = []
        if self.checkpoint_every < 1 or self.log_every < 1 or self.eval_batch_size < 1:
            out.append("train.checkpoint_every, log_every and eval_batch_size must be >= 1")
        return out


@dataclass
class DetectionConfig:
    name: str = "coco_maskrcnn"
    data: DetectionData = field(default_factory=DetectionData)
    model: DetectionModel = field(default_factory=DetectionModel)
    optim: DetectionOptim = field(default_factory=DetectionOptim)
    train: DetectionTrain = field(default_factory=DetectionTrain)


def load_detection_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> DetectionConfig:
    """Defaults <- preset file (if any) <- ``key=value`` overrides, strictly typed.

    Raises:
        ConfigError: unknown key, wrong type, bad choice or out-of-range value, naming it.
    """
    from geoharmony.configure import read_preset, typed_merge

    layers: list[tuple[str, Any]] = [] if path is None else [(str(path), read_preset(path))]
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            layers.append((f"override {item!r}", OmegaConf.from_dotlist([item])))
        except OmegaConfBaseException as err:
            raise ConfigError(f"override {item!r}: {err.msg}") from None
    result = typed_merge(DetectionConfig, layers)
    problems = []
    for section in (result.data, result.model, result.optim, result.train):
        problems += section.problems()
    if problems:
        raise ConfigError("; ".join(problems))
    return result


def config_dict(cfg: DetectionConfig) -> dict[str, Any]:
    """``cfg`` as plain data (for metrics.json and the checkpoint)."""
    return dataclasses.asdict(cfg)
