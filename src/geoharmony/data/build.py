"""Turn a :class:`~geoharmony.config.DataConfig` into the pretraining and evaluation sets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from geoharmony.config import DataConfig
from geoharmony.data.longtail import (
    class_counts,
    longtail_indices,
    profile_counts,
    seeded_class_order,
)
from geoharmony.data.normalization import Stats, norm_stats
from geoharmony.data.sources import image_size, load_source
from geoharmony.data.splits import ImageSplit

__all__ = ["RunData", "build_run_data", "class_order_for"]

# Images per class of the balanced training split of each in-memory source.
_NATIVE_PER_CLASS = {"cifar10": 5000, "cifar100": 500, "fashion_mnist": 6000}


@dataclass
class RunData:
    """The images of one run.

    Attributes:
        train: the whole (balanced or given) training split.
        test: the test split.
        pretrain_indices: ``[n]`` indices into ``train`` of the (long-tailed) pretraining set.
        class_counts: images of each class (by class id) in the pretraining set.
        class_order: classes from head to tail as the profile assigned them.
        name: short description, e.g. ``fashion_mnist-lt (ldam, rho=100)``.
        image_size: side of the images the model sees.
        stats: per-channel ``(mean, std)`` the images are normalised with.
        workers: data-loader processes for file-backed splits.
    """

    train: ImageSplit
    test: ImageSplit
    pretrain_indices: np.ndarray
    class_counts: list[int]
    class_order: list[int]
    name: str
    image_size: int
    stats: Stats
    workers: int = 0

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    def eval_batches(
        self, split: ImageSplit, indices: np.ndarray, batch_size: int, device: torch.device
    ) -> Iterator[Tensor]:
        """``split[indices]`` prepared for a model of this run, clean, in order (see
        :meth:`ImageSplit.eval_batches`)."""
        return split.eval_batches(
            indices, self.image_size, self.stats, batch_size, device, self.workers
        )

    def record(self) -> dict[str, Any]:
        """What every result file records about its data."""
        return {
            "dataset": self.name,
            "source": getattr(self.train, "source", ""),
            "num_pretrain_images": len(self.pretrain_indices),
            "class_counts": list(self.class_counts),
            "class_order": list(self.class_order),
        }


def class_order_for(cfg: DataConfig, num_classes: int) -> list[int]:
    """Head-to-tail class order: identity, reversed, or a seeded permutation."""
    if cfg.class_order == "default":
        return list(range(num_classes))
    if cfg.class_order == "reversed":
        return list(reversed(range(num_classes)))
    return seeded_class_order(num_classes, cfg.class_order_seed)


def build_run_data(cfg: DataConfig) -> RunData:
    """Load the source and cut the long-tailed pretraining set the config asks for.

    ``profile: none`` keeps the whole training split (for sources that are long-tailed already,
    such as the ImageNet-LT and Places-LT list files).
    """
    options: dict[str, Any] = {}
    if cfg.source == "list":
        options = {"train_list": cfg.train_list, "test_list": cfg.test_list}
    train = load_source(cfg.source, cfg.root, train=True, **options)
    test = load_source(cfg.source, cfg.root, train=False, **options)
    labels = train.labels_of()
    num_classes = train.num_classes
    order = class_order_for(cfg, num_classes)
    if cfg.profile == "none":
        indices = np.arange(len(labels), dtype=np.int64)
        name = cfg.source
    else:
        n_max = cfg.n_max or _NATIVE_PER_CLASS.get(cfg.source) or int(np.bincount(labels).min())
        counts = profile_counts(cfg.profile, num_classes, n_max, cfg.imbalance_ratio)
        indices = longtail_indices(labels, counts, cfg.subset_seed, order)
        name = f"{cfg.source}-lt ({cfg.profile}, rho={cfg.imbalance_ratio:g})"
    return RunData(
        train=train,
        test=test,
        pretrain_indices=indices,
        class_counts=class_counts(labels[indices], num_classes),
        class_order=order,
        name=name,
        image_size=image_size(cfg),
        stats=norm_stats(cfg.source),
        workers=cfg.num_workers,
    )
