"""Transfer probe: a linear probe of a checkpoint's frozen backbone on another labelled set.

The transfer set is an image folder (``ROOT/train/<class>/...`` and ``ROOT/test`` or
``ROOT/val``) or a pair of OLTR-style list files. Features come from the evaluation transform at
the checkpoint's input size (see :func:`~geoharmony.downstream.images.input_transform`); the probe
is one of the linear-probe presets (``adam`` / ``sgd``). Groups come from the transfer set's own
training counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoharmony.config import ConfigError
from geoharmony.data.catalog import file_sources
from geoharmony.data.longtail import balanced_indices
from geoharmony.data.sources import DataFormatError, FileList, load_splits
from geoharmony.downstream.backbone import load_backbone
from geoharmony.downstream.images import file_features, resolve_device
from geoharmony.eval import predict, result_from_predictions, train_linear_probe
from geoharmony.eval.probes import nest_probe

__all__ = ["TRANSFER_SOURCES", "load_transfer_splits", "transfer_probe"]


def _transfer_sources() -> tuple[str, ...]:
    """The sources a transfer probe can read, sorted by name: those whose description says
    their images are files (the probe decodes its features from the files)."""
    return tuple(sorted(file_sources()))


TRANSFER_SOURCES = _transfer_sources()  # ("folder", "list")


def load_transfer_splits(
    source: str,
    root: str | Path,
    train_list: str | None = None,
    test_list: str | None = None,
) -> tuple[FileList, FileList]:
    """The labelled training and test splits, with the test labels mapped to the training
    classes by name (see :func:`~geoharmony.data.sources.load_splits`)."""
    valid = _transfer_sources()
    if source not in valid:
        raise ValueError(f"transfer source must be {' or '.join(valid)}, got {source!r}")
    options: dict[str, Any] = {}
    if source == "list":
        if train_list is None or test_list is None:
            raise ValueError("--data-source list needs --train-list and --test-list")
        options = {"train_list": train_list, "test_list": test_list}
    train, test = load_splits(source, root, **options)
    if train.num_classes < 2:
        raise DataFormatError(
            f"{root}: a transfer probe needs labelled images of two or more classes "
            f"({root}/train/<class_name>/<image>), found {train.num_classes}"
        )
    if test is None:
        raise DataFormatError(f"{root}: no test split folder ({root}/test or {root}/val)")
    assert isinstance(train, FileList) and isinstance(test, FileList)
    return train, test


def transfer_probe(
    checkpoint: str | Path,
    source: str,
    root: str | Path,
    *,
    train_list: str | None = None,
    test_list: str | None = None,
    preset: str = "adam",
    epochs: int | None = None,
    shots: int | None = None,
    group_rule: str | None = None,
    seed: int = 0,
    batch_size: int = 256,
    workers: int = 2,
    device: str = "auto",
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Probe ``checkpoint`` on the transfer set -> a ``metrics.json`` dict.

    Args:
        shots: labelled images per class for the probe (balanced, seeded); None uses them all.
        group_rule: ``thirds`` or ``thresholds``; None picks thirds (thresholds below 3
            classes).
    """
    pb = load_backbone(checkpoint, overrides)
    train, test = load_transfer_splits(source, root, train_list, test_list)
    num_classes = train.num_classes
    rule = group_rule or ("thirds" if num_classes >= 3 else "thresholds")
    try:
        train_idx = balanced_indices(np.asarray(train.labels), shots, seed)
    except ValueError as err:
        raise ConfigError(f"--shots {shots}: {err}") from None
    dev = resolve_device(device)
    train_x = file_features(
        pb, train.root, [train.paths[i] for i in train_idx], dev, batch_size, workers
    )
    train_y = torch.from_numpy(np.asarray(train.labels)[train_idx])
    test_x = file_features(pb, test.root, test.paths, dev, batch_size, workers)
    test_y = torch.from_numpy(test.labels)
    probe = train_linear_probe(
        train_x, train_y, num_classes, preset=preset, epochs=epochs, seed=seed, device=dev
    )
    pred = predict(probe, test_x)
    counts = np.bincount(train_y.numpy(), minlength=num_classes)
    result = nest_probe("linear", result_from_predictions(pred, test_y, counts, rule))  # type: ignore[arg-type]
    result.update(
        task="probe",
        accuracy=float((pred == test_y).double().mean() * 100),
        method=pb.cfg.method.name,
        gh=pb.cfg.gh.enabled,
        dataset=f"{source}:{root}",
        imbalance_ratio=pb.cfg.data.imbalance_ratio,
        seed=seed,
        class_names=list(train.class_names),
        probe_set={
            "preset": preset,
            "epochs": epochs,
            "shots": shots,
            "train_images": len(train_y),
            "test_images": len(test_y),
        },
        transfer={"source": source, "root": str(root), "train": train.source, "test": test.source},
        pretrained=pb.summary(),
    )
    return result
