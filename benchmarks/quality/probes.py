"""Probes of a finished run from its final checkpoint (``fewshot.json``): few-shot linear
probes, and a kNN probe on *held-out training images* for choosing hyper-parameters.

Reuses :mod:`geoharmony.engine.evaluate`: the features of the run's own labelled probe set
(``eval.probe_shots`` per class, disjoint from pretraining, drawn with the run's seed as in
``metrics.json``) and of the test set are extracted once; each few-shot draw keeps ``shots``
images per class of that set (seeded) and trains the run's linear-probe preset on them.

The held-out block (``fewshot.json["validation"]``) is the same weighted kNN as ``metrics.json``'s
(the labelled probe set as its memory) queried with :data:`VALIDATION_SHOTS` images per class of
the *training* split that neither pretraining nor the probe set uses: a validation set that never
touches the test split, so a choice made on it leaves the test numbers honest. A baseline and its
+GH continuation share seed and pretraining subset, hence the same validation images, so their
paired difference carries no sampling noise of that set.

The sized kNN block (``fewshot.json["knn_k"]``) repeats ``metrics.json``'s kNN probe on the same
features with :data:`SIZED_KNN_K` neighbours. The library's k = 200 is what the Fashion-MNIST
study uses against 1,000 labels per class; against the glyph presets' 100 a class, 200
neighbours always reach into other classes. 20 keeps that study's ratio of k to labels per
class (a fifth).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoharmony.config import Config
from geoharmony.data.build import RunData
from geoharmony.data.longtail import balanced_indices
from geoharmony.engine.evaluate import (
    EvalFeatures,
    extract_eval_features,
    extract_split_features,
    probe_indices,
    probe_result,
)
from geoharmony.engine.runtime import pick_device
from geoharmony.eval import write_json
from geoharmony.eval.probes import PROBES
from geoharmony.methods import Method
from geoharmony.pretrained import load_pretrained

__all__ = [
    "ADDABLE_BLOCKS",
    "FEWSHOT_FILE",
    "SHOTS",
    "SIZED_KNN_K",
    "VALIDATION_SHOTS",
    "add_missing_blocks",
    "load_fewshot",
    "missing_blocks",
    "run_fewshot",
    "validation_indices",
]

FEWSHOT_FILE = "fewshot.json"
SHOTS = (10, 100)
DRAWS = 3
VALIDATION_SHOTS = 1000  # per class; Fashion-MNIST leaves >= 4,000 per class after both sets
VALIDATION_SEED_OFFSET = 100_003  # the validation draw must not repeat the probe set's
SIZED_KNN_K = 20  # a fifth of 100 labels per class, as 200 is of Fashion-MNIST's 1,000


@dataclass
class _LoadedRun:
    """A finished run's final model, ready for feature extraction."""

    checkpoint: Path
    epoch: int
    cfg: Config
    data: RunData
    method: Method
    device: torch.device

    @classmethod
    def load(cls, run_dir: Path) -> _LoadedRun:
        run = load_pretrained(run_dir)
        if run.cfg.train.threads:
            torch.set_num_threads(run.cfg.train.threads)
        device = pick_device(run.cfg.train.device)
        run.method.to(device)
        return cls(run.path, run.epoch, run.cfg, run.data, run.method, device)

    def probe_features(self) -> EvalFeatures:
        """The probe set and test split, exactly as ``metrics.json`` saw them."""
        cfg = self.cfg
        return extract_eval_features(
            self.method, cfg, self.data, self.device, cfg.eval.probe_shots, cfg.train.seed
        )


def validation_indices(
    labels: np.ndarray,
    used: np.ndarray,
    seed: int,
    shots: int = VALIDATION_SHOTS,
) -> np.ndarray:
    """Indices of the validation set: ``shots`` images per class of the training split
    (``labels`` [N]) outside ``used`` (pretraining and probe-set indices), seeded by ``seed``.

    Raises ValueError naming the class when fewer than ``shots`` of its images are left."""
    return balanced_indices(labels, shots, seed + VALIDATION_SEED_OFFSET, exclude=used)


def _validation_block(run: _LoadedRun, probe: EvalFeatures | None = None) -> dict[str, Any] | None:
    """kNN of the held-out training images against the probe set (features of the probe set
    are reused from ``probe`` when given); None where a class has fewer than
    :data:`VALIDATION_SHOTS` images left (the glyph set's head class puts all of its training
    images into pretraining), which the report reads as "no held-out probe"."""
    cfg, data = run.cfg, run.data
    if cfg.eval.probe_shots is None:
        raise ValueError(
            "eval.probe_shots is None (every unused training image is in the probe set): no "
            "training images are left for a validation set"
        )
    probe_idx = probe_indices(cfg, data, cfg.eval.probe_shots, cfg.train.seed)
    used = np.union1d(data.pretrain_indices, probe_idx)
    labels = data.train.labels_of()
    left = np.bincount(np.delete(labels, used), minlength=int(labels.max()) + 1)
    if left.min() < VALIDATION_SHOTS:
        return None
    heldout_idx = validation_indices(labels, used, cfg.train.seed)
    backbone = run.method.backbone
    if probe is None:
        train_x, train_y = extract_split_features(
            backbone, cfg, data, data.train, probe_idx, run.device
        )
    else:
        train_x, train_y = probe.train_x, probe.train_y
    val_x, val_y = extract_split_features(backbone, cfg, data, data.train, heldout_idx, run.device)
    heldout = EvalFeatures(train_x, train_y, val_x, val_y)
    knn = probe_result(PROBES["knn"], heldout, cfg, list(data.class_counts))
    return {
        "knn": knn | {"class_counts": list(data.class_counts)},
        "images": len(heldout_idx),
        "seed": cfg.train.seed + VALIDATION_SEED_OFFSET,
    }


def _sized_knn_block(run: _LoadedRun, feats: EvalFeatures) -> dict[str, Any]:
    """``metrics.json``'s kNN probe on the same features with :data:`SIZED_KNN_K` neighbours,
    under the key ``str(k)``."""
    cfg = replace(run.cfg, eval=replace(run.cfg.eval, knn_k=SIZED_KNN_K))
    counts = list(run.data.class_counts)
    knn = probe_result(PROBES["knn"], feats, cfg, counts)
    return {str(SIZED_KNN_K): knn | {"class_counts": counts}}


def run_fewshot(
    run_dir: str | Path, shots: tuple[int, ...] = SHOTS, draws: int = DRAWS
) -> dict[str, Any]:
    """Write ``RUN/fewshot.json``: for each shot count, ``draws`` probe results; and the
    held-out kNN block (``validation``)."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    run = _LoadedRun.load(run_dir)
    feats = run.probe_features()
    counts = list(run.data.class_counts)
    out: dict[str, Any] = {"checkpoint": str(run.checkpoint), "epoch": run.epoch, "shots": {}}
    for n in shots:
        results = []
        for draw in range(draws):
            seed = 1000 * n + draw
            result = probe_result(PROBES["linear"], _subset(feats, n, seed), run.cfg, counts, seed)
            results.append(result | {"class_counts": counts, "draw_seed": seed})
        out["shots"][str(n)] = results
    out["validation"] = _validation_block(run, feats)
    out["knn_k"] = _sized_knn_block(run, feats)
    out["seconds"] = time.perf_counter() - started
    write_json(run_dir / FEWSHOT_FILE, out)
    return out


# The blocks of fewshot.json that add_missing_blocks adds to runs probed before they existed,
# each with the function that computes it from the run and its probe features.
_BLOCK_MAKERS: dict[str, Callable[[_LoadedRun, EvalFeatures], dict[str, Any] | None]] = {
    "validation": _validation_block,
    "knn_k": _sized_knn_block,
}
ADDABLE_BLOCKS = tuple(_BLOCK_MAKERS)


def missing_blocks(fewshot: dict[str, Any] | None) -> list[str]:
    """Which of :data:`ADDABLE_BLOCKS` a run's ``fewshot.json`` (None: none yet) lacks."""
    return [name for name in ADDABLE_BLOCKS if name not in (fewshot or {})]


def add_missing_blocks(run_dir: str | Path) -> dict[str, Any]:
    """Add the held-out kNN block (``validation``) and the sized kNN block (``knn_k``) to an
    existing ``RUN/fewshot.json`` where they are missing (runs probed before they existed); the
    blocks already there are kept as they are. Returns the blocks added (empty: none missing),
    and ``seconds`` when it added any."""
    run_dir = Path(run_dir)
    path = run_dir / FEWSHOT_FILE
    fewshot = load_fewshot(run_dir)
    if fewshot is None:
        raise FileNotFoundError(
            f"{path}: missing; run `python -m benchmarks.quality fewshot` first"
        )
    missing = missing_blocks(fewshot)
    if not missing:
        return {}
    started = time.perf_counter()
    run = _LoadedRun.load(run_dir)
    if Path(fewshot["checkpoint"]).name != run.checkpoint.name:
        raise ValueError(
            f"{path} was probed at {fewshot['checkpoint']}, but the newest checkpoint is "
            f"{run.checkpoint}; rerun the few-shot probes instead"
        )
    feats = run.probe_features()
    added = {name: _BLOCK_MAKERS[name](run, feats) for name in missing}
    write_json(path, fewshot | added)
    return added | {"seconds": time.perf_counter() - started}


def _subset(feats: EvalFeatures, shots: int, seed: int) -> EvalFeatures:
    idx = balanced_indices(feats.train_y.numpy(), shots, seed)
    t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return EvalFeatures(feats.train_x[t], feats.train_y[t], feats.test_x, feats.test_y)


def load_fewshot(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / FEWSHOT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
