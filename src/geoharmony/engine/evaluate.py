"""Final evaluation of a pretrained backbone: every probe of :data:`geoharmony.eval.probes.PROBES`
(kNN, linear), geometry, prior agreement; for
unlabeled data, what can be said without labels (feature statistics, a kNN-cluster summary)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from geoharmony import parallel
from geoharmony.config import Config, ConfigError, to_dict
from geoharmony.data.build import RunData
from geoharmony.data.longtail import balanced_indices
from geoharmony.data.splits import ImageSplit
from geoharmony.engine.runtime import autocast_dtype
from geoharmony.engine.size_checks import shots_problem
from geoharmony.eval import (
    class_groups,
    class_mean_cosines,
    class_means,
    cosine_summary,
    effective_rank,
    etf_deviation,
    extract_features,
    result_from_predictions,
)
from geoharmony.eval.probes import BLOCK_KEYS, PRETRAINING_PROBES, PROBES, Probe
from geoharmony.eval.unlabeled import unlabeled_report
from geoharmony.methods import Method

__all__ = [
    "EvalFeatures",
    "evaluate_method",
    "evaluate_unlabeled",
    "extract_eval_features",
    "extract_split_features",
    "geometry_metrics",
    "probe_indices",
    "probe_result",
]


@dataclass
class EvalFeatures:
    """Frozen backbone features of the labelled probe-training set and of the test set."""

    train_x: torch.Tensor  # [N, D] float32
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor  # [M, D]
    test_y: torch.Tensor  # [M]


def extract_split_features(
    backbone: nn.Module,
    cfg: Config,
    data: RunData,
    split: ImageSplit,
    indices: np.ndarray,
    device: torch.device,
    local: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features ``[n, D]`` (clean images, evaluation preprocessing) and labels ``[n]``
    of ``split[indices]``; under data parallelism each rank extracts a contiguous shard and
    every rank gets all of them, unless ``local``."""
    if parallel.is_distributed() and not local:
        # Each rank extracts one contiguous shard; gathering in rank order restores the order.
        shard = np.array_split(indices, parallel.world_size())[parallel.rank()]
        feats, labels = extract_split_features(
            backbone, cfg, data, split, shard, device, local=True
        )
        return (
            parallel.all_gather_no_grad(feats.to(device)).cpu(),
            parallel.all_gather_no_grad(labels.to(device)).cpu(),
        )
    feats = extract_features(
        backbone,
        data.eval_batches(split, indices, cfg.eval.batch_size, device),
        device=device,
        preprocess=None,
        autocast_dtype=autocast_dtype(cfg.train.precision, device),
    )
    return feats, torch.from_numpy(split.labels_of(indices))


def extract_eval_features(
    method: Method,
    cfg: Config,
    data: RunData,
    device: torch.device,
    shots: int | None = None,
    seed: int = 0,
) -> EvalFeatures:
    """Features of a balanced labelled training subset (``shots`` per class, None = all; see
    :func:`probe_indices`) and of the whole test split."""
    train_idx = probe_indices(cfg, data, shots, seed)
    test_idx = np.arange(len(data.test), dtype=np.int64)
    backbone = method.backbone
    train_x, train_y = extract_split_features(backbone, cfg, data, data.train, train_idx, device)
    test_x, test_y = extract_split_features(backbone, cfg, data, data.test, test_idx, device)
    return EvalFeatures(train_x, train_y, test_x, test_y)


def probe_indices(cfg: Config, data: RunData, shots: int | None, seed: int) -> np.ndarray:
    """Indices into the training split of the labelled probe set: ``shots`` per class (None =
    all), seeded; with ``eval.probe_disjoint`` it avoids the pretraining images.

    Raises:
        ConfigError: a class has fewer than ``shots`` such images.
    """
    exclude = data.pretrain_indices if cfg.eval.probe_disjoint else None
    problem = shots_problem(
        "eval.probe_shots", shots, data.train, "training split", "eval.probe_shots=null", exclude
    )
    if problem:
        raise ConfigError(problem)
    return balanced_indices(data.train.labels_of(), shots, seed, exclude=exclude)


def probe_result(
    probe: Probe, feats: EvalFeatures, cfg: Config, class_counts: list[int], seed: int = 0
) -> dict[str, Any]:
    """One probe on ``feats`` -> its block (many/medium/few/std/avg/worst, per_class [C])."""
    if probe.fit_predict is None:
        raise ValueError(f"probe {probe.name!r} is measured by its own command, not here")
    pred = probe.fit_predict(
        feats.train_x, feats.train_y, feats.test_x, len(class_counts), cfg.eval, seed
    )
    result = result_from_predictions(pred, feats.test_y, class_counts, cfg.eval.group_rule)  # type: ignore[arg-type]
    return {k: result[k] for k in BLOCK_KEYS}


def geometry_metrics(
    feats: EvalFeatures, class_counts: list[int], group_rule: str
) -> dict[str, Any]:
    """Class-mean geometry of the test features (docs/design.md section 6)."""
    means = class_means(feats.test_x, feats.test_y, len(class_counts))
    cosines = class_mean_cosines(means)
    groups = class_groups(class_counts, group_rule)  # type: ignore[arg-type]
    return {
        **cosine_summary(cosines, groups),
        "etf_deviation": etf_deviation(means),
        "effective_rank": effective_rank(feats.test_x),
        "class_mean_cosines": cosines.tolist(),
    }


def evaluate_method(
    method: Method,
    cfg: Config,
    data: RunData,
    device: torch.device,
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds for a pretrained method (on the main process; under
    data parallelism every rank extracts a share of the features, the others return ``{}``).
    Unlabeled data gets :func:`evaluate_unlabeled`'s report."""
    if not data.labelled:
        return evaluate_unlabeled(method, cfg, data, device)
    started = time.perf_counter()
    method.eval()
    feats = extract_eval_features(method, cfg, data, device, cfg.eval.probe_shots, cfg.train.seed)
    if parallel.rank() != 0:
        return {}
    counts = list(data.class_counts)
    seed = cfg.train.seed
    result: dict[str, Any] = {
        "probes": {
            name: probe_result(PROBES[name], feats, cfg, counts, seed)
            for name in PRETRAINING_PROBES
        },
        "class_counts": counts,
        "group_rule": cfg.eval.group_rule,
    }
    result.update(
        **method.describe(),
        dataset=data.name,
        imbalance_ratio=cfg.data.imbalance_ratio,
        seed=cfg.train.seed,
        schedule=cfg.optim.schedule,
        probe_set={
            "preset": cfg.eval.probe,
            "shots": cfg.eval.probe_shots,
            "disjoint": cfg.eval.probe_disjoint,
            "train_images": len(feats.train_y),
            "test_images": len(feats.test_y),
        },
        geometry=geometry_metrics(feats, counts, cfg.eval.group_rule),
        data=data.record(),
        config=to_dict(cfg),
    )
    result.update(method.evaluation_records(counts))
    result["eval_seconds"] = time.perf_counter() - started
    return result


def evaluate_unlabeled(
    method: Method, cfg: Config, data: RunData, device: torch.device
) -> dict[str, Any]:
    """``metrics.json`` of a run on unlabeled images: no accuracy (there is nothing to be right
    about), but the statistics of the pretraining images' features, their kNN-cluster summary
    (``eval.clusters``, ``eval.cluster_neighbours``) and what the method records (GH: its
    prior's shares)."""
    started = time.perf_counter()
    method.eval()
    idx = data.pretrain_indices
    feats, _ = extract_split_features(method.backbone, cfg, data, data.train, idx, device)
    if parallel.rank() != 0:
        return {}
    report = unlabeled_report(feats, cfg.eval.clusters, cfg.eval.cluster_neighbours, cfg.train.seed)
    result: dict[str, Any] = {
        **method.describe(),
        "labels": "none",
        "dataset": data.name,
        "seed": cfg.train.seed,
        "schedule": cfg.optim.schedule,
        **report,
        "data": data.record(),
        "config": to_dict(cfg),
    }
    result.update(method.evaluation_records([]))
    result["eval_seconds"] = time.perf_counter() - started
    return result
