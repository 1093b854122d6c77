"""The typed run configuration: its schema, as dataclasses, and what is computed from a config.

Reading one (YAML presets, ``key=value`` overrides, stored configs) is
:mod:`geoharmony.configure`'s job, one floor up; this module imports nothing of the data,
methods or engine, so every part of geoharmony can take a :class:`Config`.

Components declare their own sections: GH its ``gh`` options (:mod:`geoharmony.gh.options`),
each method its ``method.<name>`` options (an ``Options`` dataclass on the method class, added
to :class:`MethodConfig` from the method registry when a configuration is read). String options
with a fixed set of values declare it on the field (:func:`choice`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from geoharmony.gh.options import GHConfig, choice

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "GHConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "choice",
    "config_differences",
    "method_options",
    "stage_epochs",
    "to_dict",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key or file."""


@dataclass
class DataConfig:
    """Which images, which long-tail profile, how they are read."""

    source: str = "fashion_mnist"  # cifar10 | cifar100 | fashion_mnist | list | folder
    root: str | None = None  # None: the source's default location (Debian's Fashion-MNIST)
    # cifar10 / cifar100 only: fetch the data set into root through torchvision's downloader
    # (MD5-checked) where it is not there yet. Needs internet access; off by default.
    download: bool = False
    train_list: str | None = None  # list source: OLTR-style train list file
    test_list: str | None = None  # list source: balanced test list file
    # auto: the source's default, set when the config is read (ldam for the balanced CIFAR,
    # Fashion-MNIST and glyph sets; none, the images as they are, for list files, image folders
    # and unlabeled data) | none | a profile of geoharmony.data.longtail.PROFILES (ldam, sdclr);
    # checked where a config is read (geoharmony.configure), since the profiles are the data's
    profile: str = "auto"
    # auto: the source's labels (an image folder's class sub-folders, where there are two or
    # more; else it is unlabeled) | none: unlabeled (a folder's sub-folders are no classes);
    # unlabeled runs report feature statistics and clusters, no accuracy
    labels: str = choice("auto", ("auto", "none"))
    # A labelled source without a test split (an image folder without test/ or val/): this
    # share of each class (seeded by subset_seed) is held out of pretraining for the probes.
    holdout_fraction: float = 0.2
    # Image files that cannot be decoded (the preflight opens every file before the first step):
    # false stops the run with their list; true leaves them out, listed in RUN/bad_files.txt.
    skip_bad_files: bool = False
    imbalance_ratio: float = 100.0
    n_max: int | None = None  # images of the head class; None: the profile's default
    # default | reversed | random (seeded by class_order_seed)
    class_order: str = choice("default", ("default", "reversed", "random"))
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
    # false (official GH, models.py SimCLR.forward): each augmented view is its own forward pass,
    # so its own BatchNorm batch of B. true: both views in one pass, one BatchNorm batch of 2B
    # (the recipe every quality record before 2026-12-07 was made with; kept to reproduce them).
    joint_view_batch: bool = False


@dataclass
class MethodConfig:
    """Options every method shares. Each method's own options are the section
    ``method.<its name>``, declared by the method class (``Options``) and added to the schema
    from the registry (:mod:`geoharmony.methods.registry`) when a configuration is loaded."""

    name: str = "simclr"  # a registered method (geoharmony.methods.METHODS) or module:Class
    temperature: float = 0.2
    gather_negatives: bool = True  # use every rank's views as negatives under DDP


@dataclass
class OptimConfig:
    epochs: int = 1000
    batch_size: int = 512
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Both are the official GH code's (utils.py), evaluated once per epoch as it does:
    # warmup_cosine: linear warm-up, then one cosine to min_lr (lr_scheduler: every baseline);
    # two_stage_cosine: the same warm-up, cosine lr -> stage_lr until stage_epochs, then a
    # restart stage_lr -> min_lr (lr_scheduler_warm: every +GH run).
    schedule: str = choice("warmup_cosine", ("warmup_cosine", "two_stage_cosine"))
    warmup_epochs: int = 10  # linear lr warm-up of either schedule (official: 10)
    min_lr: float = 1e-6
    stage_lr: float = 0.3  # two_stage_cosine: lr at the end of stage 1 and start of stage 2
    # two_stage_cosine: epochs of stage 1; None: gh.warmup_epochs, so that a baseline and its
    # +GH run share one schedule whether GH is on or off (see stage_epochs()).
    stage_epochs: int | None = None


@dataclass
class EvalConfig:
    probe: str = choice("adam", ("adam", "sgd"))  # adam (official GH/BCL) | sgd (SDCLR)
    probe_epochs: int | None = None  # None: the preset's
    probe_shots: int | None = None  # None: every image of the balanced labelled split
    probe_source: str = "train"  # train: balanced subset of the training split
    probe_disjoint: bool = False  # probe images exclude the pretraining images
    group_rule: str = choice("thirds", ("thirds", "thresholds"))
    knn_k: int = 200
    knn_temperature: float = 0.1
    monitor_every: int = 10  # epochs between kNN monitor evaluations (0: off)
    monitor_train_per_class: int = 100  # labelled images per class for the monitor
    monitor_test_per_class: int = 100
    batch_size: int = 512
    # Unlabeled data (no accuracy to report): k-means clusters of the features, and nearest
    # neighbours per image, of the kNN-cluster summary in metrics.json.
    clusters: int = 10
    cluster_neighbours: int = 10


@dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # fp32 | bf16 | fp16 (autocast) | auto (bf16 where native, else fp32)
    precision: str = choice("fp32", ("fp32", "bf16", "fp16", "auto"))
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


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (for checkpoints, JSON and comparisons)."""
    out = OmegaConf.to_container(OmegaConf.structured(cfg))
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(a: Config, b: Config, ignore: set[str]) -> list[str]:
    """``key: a -> b`` for every differing key outside ``ignore``."""
    fa, fb = _flatten(to_dict(a)), _flatten(to_dict(b))
    return [
        f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}"
        for k in sorted(set(fa) | set(fb))
        if k not in ignore and fa.get(k) != fb.get(k)
    ]


def method_options(cfg: Config, name: str) -> Any:
    """The options section ``method.<name>`` (an instance of that method's ``Options``)."""
    try:
        return getattr(cfg.method, name)
    except AttributeError:
        raise ConfigError(f"the config has no options section method.{name}") from None


def stage_epochs(cfg: Config) -> int:
    """Epochs of the first stage of ``two_stage_cosine``: ``optim.stage_epochs``, else GH's
    warm-up (official +GH runs restart where GH starts; a baseline given this schedule, as the
    CPU presets' paired runs are, restarts at the same epoch, which the official baselines,
    on a single cosine, do not)."""
    if cfg.optim.stage_epochs is not None:
        return cfg.optim.stage_epochs
    return cfg.gh.warmup_epochs
