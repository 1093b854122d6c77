"""Typed run configuration: dataclass schema, YAML presets, ``key=value`` overrides.

The schema is an OmegaConf structured config, so an unknown key or a value of the wrong type is
an error that names it. Presets may ``defaults: [other.yaml]`` to inherit from a file next to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "BCLConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DnCConfig",
    "EvalConfig",
    "GHConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "SDCLRConfig",
    "TrainConfig",
    "from_dict",
    "load_config",
    "to_dict",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key or file."""


@dataclass
class DataConfig:
    """Which images, which long-tail profile, how they are read."""

    source: str = "fashion_mnist"  # cifar10 | cifar100 | fashion_mnist | list | folder
    root: str | None = None  # None: the source's default location (Debian's Fashion-MNIST)
    train_list: str | None = None  # list source: OLTR-style train list file
    test_list: str | None = None  # list source: balanced test list file
    profile: str = "ldam"  # long-tail profile name (ldam | sdclr | none)
    imbalance_ratio: float = 100.0
    n_max: int | None = None  # images of the head class; None: the profile's default
    class_order: str = "default"  # default | reversed | random (seeded by class_order_seed)
    class_order_seed: int = 0
    subset_seed: int = 0  # which images of each class are kept
    image_size: int | None = None  # None: the source's native size (32 / 28); 224 for files
    num_workers: int = 2  # data-loader processes for file-backed sources


@dataclass
class ModelConfig:
    backbone: str = "cifar_resnet18"  # cifar_resnet18 | resnet18 | resnet50
    width: float = 1.0  # channel multiplier of the CIFAR ResNet
    projector_hidden: int = 512
    projector_dim: int = 128
    projector_layers: int = 2


@dataclass
class SDCLRConfig:
    prune_ratio: float = 0.9


@dataclass
class BCLConfig:
    variant: str = "I"  # I (probability and strength follow the score) | D (strength only)
    beta: float = 0.97  # EMA momentum of the per-sample loss
    base_strength: float = 10.0
    strength_range: float = 20.0
    max_strength: float = 30.0
    num_ops: int = 1  # RandAugment rounds per sample (official: 1 on CIFAR, 2 on ImageNet/Places)
    # strength = base + range * w * U(0, 1) instead of base + range * w (official ImageNet/Places)
    random_strength: bool = False


@dataclass
class DnCConfig:
    """DnC, re-implementation from the paper (docs/dnc.md): base, k-means experts, distillation."""

    num_experts: int = 2  # k-means clusters, one expert each
    base_epochs_fraction: float = 0.5  # of optim.epochs (rounded to whole epochs)
    expert_epochs_fraction: float = 0.25  # of optim.epochs; distillation gets the rest
    distill_weight: float = 1.0  # weight of the regression to the teachers' representations
    student_init: str = "base"  # base (continue from the base model) | scratch (re-initialise)
    kmeans_n_init: int = 3  # k-means restarts (seeded by train.seed)


@dataclass
class MethodConfig:
    name: str = "simclr"  # simclr | focal | sdclr | bcl | dnc
    temperature: float = 0.2
    focal_gamma: float = 2.0
    gather_negatives: bool = True  # use every rank's views as negatives under DDP
    sdclr: SDCLRConfig = field(default_factory=SDCLRConfig)
    bcl: BCLConfig = field(default_factory=BCLConfig)
    dnc: DnCConfig = field(default_factory=DnCConfig)


@dataclass
class GHConfig:
    """Geometric Harmonization (DESIGN.md section 3); ``enabled: false`` is the plain baseline."""

    enabled: bool = False
    num_anchors: int = 100
    structure_seed: int = 0
    logits: str = "projected"  # projected (official) | cosine
    epsilon: float = 0.05
    temperature: float = 0.1
    sinkhorn_iters: int = 300
    sinkhorn_tol: float | None = None
    weight: float = 1.0
    warmup_epochs: int = 500  # SSL only; the prior is estimated meanwhile
    ramp_epochs: int = 10  # linear rise of the weight after the warm-up
    prior: str = "bank"  # bank (paper) | streaming | uniform | mixture (EM on the bank) | oracle
    bank_warmup_momentum: float = 0.9
    bank_momentum: float = 0.999
    prior_floor: float = 0.0
    prior_refresh_every: int = 20  # epochs between bank refreshes after the warm-up
    streaming_momentum: float = 0.99
    # sinkhorn (paper) | labels: a diagnostic upper bound, not self-supervised: each image's
    # surrogate label is its true class (anchor k = class k), so it needs num_anchors >= classes.
    targets: str = "sinkhorn"


@dataclass
class OptimConfig:
    epochs: int = 1000
    batch_size: int = 512
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "warmup_cosine"  # warmup_cosine | two_stage_cosine (official GH)
    warmup_epochs: int = 10  # linear lr warm-up (warmup_cosine)
    min_lr: float = 1e-6
    stage_lr: float = 0.3  # two_stage_cosine: lr at the end of stage 1 and start of stage 2


@dataclass
class EvalConfig:
    probe: str = "adam"  # adam (official GH/BCL) | sgd (SDCLR)
    probe_epochs: int | None = None  # None: the preset's
    probe_shots: int | None = None  # None: every image of the balanced labelled split
    probe_source: str = "train"  # train: balanced subset of the training split
    probe_disjoint: bool = False  # probe images exclude the pretraining images
    group_rule: str = "thirds"  # thirds | thresholds
    knn_k: int = 200
    knn_temperature: float = 0.1
    monitor_every: int = 10  # epochs between kNN monitor evaluations (0: off)
    monitor_train_per_class: int = 100  # labelled images per class for the monitor
    monitor_test_per_class: int = 100
    batch_size: int = 512


@dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast) | auto (bf16 where native, else fp32)
    channels_last: bool = False  # ignored, with a warning, where oneDNN cannot train it
    checkpoint_every: int = 10  # epochs; also written at the end and at gh.warmup_epochs
    keep_checkpoints: int = 2
    log_every: int = 20  # steps between JSONL log lines
    sync_batchnorm: bool = False
    threads: int | None = None  # torch intra-op threads; None: torch's default
    progress: bool = True


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    gh: GHConfig = field(default_factory=GHConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES: dict[str, tuple[str, ...]] = {
    "data.class_order": ("default", "reversed", "random"),
    "method.name": ("simclr", "focal", "sdclr", "bcl", "dnc"),
    "method.bcl.variant": ("I", "D"),
    "gh.logits": ("projected", "cosine"),
    "gh.prior": ("bank", "streaming", "uniform", "mixture", "oracle"),
    "gh.targets": ("sinkhorn", "labels"),
    "optim.schedule": ("warmup_cosine", "two_stage_cosine"),
    "eval.probe": ("adam", "sgd"),
    "eval.group_rule": ("thirds", "thresholds"),
    "train.precision": ("fp32", "bf16", "fp16", "auto"),
}


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a preset, resolving its ``defaults`` list of parent files (relative to it)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular 'defaults' chain")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parents = data.pop("defaults", [])
    merged: dict[str, Any] = {}
    for parent in parents if isinstance(parents, list) else [parents]:
        merged = _deep_merge(merged, _read_yaml(path.parent / str(parent), (*seen, path)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate_choices(cfg: DictConfig) -> None:
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: Config | None = None,
) -> Config:
    """``base`` (default: the schema's defaults) <- preset file (if any) <- ``key=value``
    overrides, strictly typed.

    Raises:
        ConfigError: unknown key, wrong type, bad choice, unreadable file.
    """
    cfg = OmegaConf.structured(base if base is not None else Config())
    source = "defaults"
    try:
        if path is not None:
            source = str(path)
            cfg = OmegaConf.merge(cfg, _read_yaml(Path(path)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key=value")
            source = f"override {item!r}"
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{source}: invalid key or value '{key}': {err.msg}") from None
    _validate_choices(cfg)
    result = OmegaConf.to_object(cfg)
    assert isinstance(result, Config)
    return result


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (for checkpoints, JSON and comparisons)."""
    out = OmegaConf.to_container(OmegaConf.structured(cfg))
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def from_dict(data: dict[str, Any]) -> Config:
    """Inverse of :func:`to_dict` (strict: unknown keys are errors)."""
    try:
        result = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), data))
    except OmegaConfBaseException as err:
        raise ConfigError(f"stored config is invalid: {err.msg}") from None
    assert isinstance(result, Config)
    return result
