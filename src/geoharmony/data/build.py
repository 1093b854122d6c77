"""Turn a :class:`~geoharmony.config.DataConfig` into the pretraining and evaluation sets: load
the source, check its files (:mod:`~geoharmony.data.preflight`), hold out a test split where
the source has none, cut the long-tail profile."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from geoharmony.config import ConfigError, DataConfig
from geoharmony.data import catalog
from geoharmony.data.longtail import (
    class_counts,
    longtail_indices,
    profile_counts,
    seeded_class_order,
    short_classes,
    stratified_holdout,
)
from geoharmony.data.normalization import Stats, norm_stats
from geoharmony.data.preflight import preflight
from geoharmony.data.sources import default_profile, image_size, load_splits
from geoharmony.data.splits import FileList, ImageSplit, Preparation

__all__ = ["RunData", "build_run_data", "class_order_for"]


@dataclass
class RunData:
    """The images of one run.

    Attributes:
        train: the whole (balanced or given) training split, without a hold-out.
        test: the test split: the source's, else the hold-out; empty for unlabeled data.
        pretrain_indices: ``[n]`` indices into ``train`` of the (long-tailed) pretraining set.
        class_counts: images of each class (by class id) in the pretraining set; empty when
            unlabeled.
        class_order: classes from head to tail as the profile assigned them.
        name: short description, e.g. ``fashion_mnist-lt (ldam, rho=100)``.
        image_size: side of the images the model sees.
        stats: per-channel ``(mean, std)`` the images are normalised with.
        workers: data-loader processes for file-backed splits.
        holdout: how the test split was held out of the training split, when it was.
        bad_files: unreadable files left out (``{"path", "error"}``); None when the source
            has no files to check.
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
    holdout: dict[str, Any] | None = None
    bad_files: list[dict[str, str]] | None = None

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def labelled(self) -> bool:
        """Whether the images have classes (else evaluation reports no accuracy)."""
        return self.train.num_classes > 0

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    def eval_batches(
        self, split: ImageSplit, indices: np.ndarray, batch_size: int, device: torch.device
    ) -> Iterator[Tensor]:
        """``split[indices]`` prepared for a model of this run, clean, in order (see
        :meth:`ImageSplit.eval_batches`)."""
        return split.eval_batches(indices, self.preparation, batch_size, device)

    @property
    def preparation(self) -> Preparation:
        """How a model of this run sees its images."""
        return Preparation(self.image_size, self.stats, self.workers)

    def record(self) -> dict[str, Any]:
        """What every result file records about its data."""
        record: dict[str, Any] = {
            "dataset": self.name,
            "source": getattr(self.train, "source", ""),
            "num_pretrain_images": len(self.pretrain_indices),
            "class_counts": list(self.class_counts),
            "class_order": list(self.class_order),
        }
        # Only where they apply, so the records of in-memory sources keep their keys.
        if not self.labelled:
            record["labels"] = "none"
        if self.holdout is not None:
            record["holdout"] = self.holdout
        if self.bad_files is not None:
            record["bad_files"] = list(self.bad_files)
        return record


def class_order_for(cfg: DataConfig, num_classes: int) -> list[int]:
    """Head-to-tail class order: identity, reversed, or a seeded permutation."""
    if cfg.class_order == "default":
        return list(range(num_classes))
    if cfg.class_order == "reversed":
        return list(reversed(range(num_classes)))
    return seeded_class_order(num_classes, cfg.class_order_seed)


def build_run_data(cfg: DataConfig, cache: Path | None = None, progress: bool = False) -> RunData:
    """Load the source, check its files, and cut the pretraining set the config asks for.

    Args:
        cache: the preflight's cache file (in the run folder); None checks every file again.
        progress: show the preflight's progress bar (on a terminal).

    Raises:
        DataFormatError: unreadable files (without ``data.skip_bad_files``), bad layouts.
        ConfigError: a profile that asks for more images than there are, or that needs labels
            the data does not have; a bad ``data.holdout_fraction``.
    """
    options = _loader_options(cfg)
    train, test = load_splits(cfg.source, cfg.root, cfg.labels, **options)
    bad = None
    if isinstance(train, FileList):
        assert test is None or isinstance(test, FileList)
        files = [train] if test is None else [train, test]
        files, bad = preflight(files, cfg.skip_bad_files, cache, cfg.num_workers, progress)
        train, test = files[0], (files[1] if len(files) > 1 else None)
    holdout = None
    if test is None and train.num_classes:
        train, test, holdout = _hold_out(cfg, train)
    if test is None:  # unlabeled: nothing to test on
        test = train.subset(np.zeros(0, dtype=np.int64))
    order = class_order_for(cfg, train.num_classes)
    indices, name = _pretrain_subset(cfg, train, order, holdout is not None)
    labels = train.labels_of(indices)
    return RunData(
        train=train,
        test=test,
        pretrain_indices=indices,
        class_counts=class_counts(labels, train.num_classes) if train.num_classes else [],
        class_order=order,
        name=name,
        image_size=image_size(cfg),
        stats=norm_stats(cfg.source),
        workers=cfg.num_workers,
        holdout=holdout,
        bad_files=bad,
    )


def _loader_options(cfg: DataConfig) -> dict[str, Any]:
    """The config fields the source's description names as its loader's options (``labels``
    goes through ``load_splits``, which drops other sources' labels itself).

    Raises:
        ConfigError: ``data.download=true`` for a source that cannot be downloaded.
    """
    source = catalog.find_source(cfg.source)
    names = () if source is None else source.options
    if cfg.download and "download" not in names:
        fetchable = [name for name, s in catalog.SOURCES.items() if "download" in s.options]
        raise ConfigError(
            f"data.download=true fetches {' and '.join(fetchable)} only, not {cfg.source!r}"
        )
    return {name: getattr(cfg, name) for name in names if name != "labels"}


def _hold_out(cfg: DataConfig, train: ImageSplit) -> tuple[ImageSplit, ImageSplit, dict[str, Any]]:
    """The training split without a seeded, class-stratified hold-out, the hold-out (the test
    split of a labelled source that has none), and its record."""
    fraction = cfg.holdout_fraction
    if not 0.0 < fraction < 1.0:
        raise ConfigError(
            f"data.holdout_fraction={fraction}: the share of each class held out for the probes "
            "(there is no test split) must lie strictly between 0 and 1, e.g. 0.2"
        )
    labels = train.labels_of()
    kept, held = stratified_holdout(labels, fraction, cfg.subset_seed)
    record = {
        "fraction": fraction,
        "seed": cfg.subset_seed,
        "images": len(held),
        "class_counts": class_counts(labels[held], train.num_classes),
    }
    return train.subset(kept), train.subset(held), record


def _pretrain_subset(
    cfg: DataConfig, train: ImageSplit, order: list[int], held_out: bool
) -> tuple[np.ndarray, str]:
    """Indices into ``train`` of the pretraining set the profile cuts, and the data's name."""
    profile = default_profile(cfg)
    if profile == "none":
        suffix = "" if train.num_classes else " (unlabeled)"
        return np.arange(len(train), dtype=np.int64), cfg.source + suffix
    if not train.num_classes:
        raise ConfigError(
            f"data.profile={profile} draws a number of images from each class, but "
            f"{train.source} has no labels; use data.profile=none (the images as they are)"
        )
    labels = train.labels_of()
    source = catalog.find_source(cfg.source)
    per_class = None if source is None else source.images_per_class
    n_max = cfg.n_max or per_class or int(np.bincount(labels).min())
    try:
        counts = profile_counts(profile, train.num_classes, n_max, cfg.imbalance_ratio)
    except ValueError as err:
        raise ConfigError(f"data.profile={profile}: {err}") from None
    short = short_classes(labels, counts, order)
    if short:
        raise ConfigError(_shortage_message(cfg, profile, train, order, short, held_out))
    indices = longtail_indices(labels, counts, cfg.subset_seed, order)
    return indices, f"{cfg.source}-lt ({profile}, rho={cfg.imbalance_ratio:g})"


def _shortage_message(
    cfg: DataConfig,
    profile: str,
    train: ImageSplit,
    order: list[int],
    short: list[tuple[int, int, int]],
    held_out: bool,
) -> str:
    shown = ", ".join(f"{train.class_names[c]!r} {w} > {a}" for c, w, a in short[:5])
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    where = f" (after the {cfg.holdout_fraction:.0%} hold-out)" if held_out else ""
    n_max = cfg.n_max or "the default"
    fix = "set data.profile=none to take the images as they are"
    fitting = _largest_fitting_n_max(cfg, profile, train, order)
    if fitting:
        fix = f"set data.n_max to at most {fitting}, or " + fix
    return (
        f"data.profile={profile} with data.n_max={n_max} and data.imbalance_ratio="
        f"{cfg.imbalance_ratio:g} asks more images of some classes than they have{where}: "
        f"{shown}{more} (wanted > available); {fix}"
    )


def _largest_fitting_n_max(
    cfg: DataConfig, profile: str, train: ImageSplit, order: list[int]
) -> int | None:
    """The largest head-class count whose profile every class can supply (None: none can)."""
    labels = train.labels_of()

    def fits(n: int) -> bool:
        counts = profile_counts(profile, train.num_classes, n, cfg.imbalance_ratio)
        return not short_classes(labels, counts, order)

    low, high = 0, 2 * int(np.bincount(labels).max())  # fits(low) holds, or low is 0
    while low < high:  # fits() is monotone: a smaller head count asks fewer of every class
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low or None
