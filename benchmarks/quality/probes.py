"""Few-shot linear probes of a finished run, from its final checkpoint (``fewshot.json``).

Reuses :mod:`geoharmony.engine.evaluate`: the features of the run's own labelled probe set
(``eval.probe_shots`` per class, disjoint from pretraining, drawn with the run's seed as in
``metrics.json``) and of the test set are extracted once; each draw keeps ``shots`` images per
class of that set (seeded) and trains the run's linear-probe preset on them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoharmony.config import from_dict
from geoharmony.data.build import build_run_data
from geoharmony.data.longtail import balanced_indices
from geoharmony.engine.checkpoint import latest_valid_checkpoint
from geoharmony.engine.evaluate import EvalFeatures, extract_eval_features, probe_metrics
from geoharmony.engine.runtime import pick_device
from geoharmony.engine.trainer import norm_stats
from geoharmony.eval import write_json
from geoharmony.methods import DataInfo, build_method

__all__ = ["FEWSHOT_FILE", "SHOTS", "run_fewshot"]

FEWSHOT_FILE = "fewshot.json"
SHOTS = (10, 100)
DRAWS = 3
_KEEP = ("many", "medium", "few", "std", "avg", "worst", "per_class", "class_counts")


def _subset(feats: EvalFeatures, shots: int, seed: int) -> EvalFeatures:
    idx = balanced_indices(feats.train_y.numpy(), shots, seed)
    t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return EvalFeatures(feats.train_x[t], feats.train_y[t], feats.test_x, feats.test_y)


def run_fewshot(
    run_dir: str | Path, shots: tuple[int, ...] = SHOTS, draws: int = DRAWS
) -> dict[str, Any]:
    """Write ``RUN/fewshot.json``: for each shot count, ``draws`` probe results."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    found = latest_valid_checkpoint(run_dir / "checkpoints", torch.device("cpu"))
    if found is None:
        raise FileNotFoundError(f"no valid checkpoint in {run_dir / 'checkpoints'}")
    path, state = found
    cfg = from_dict(state["config"])
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = build_run_data(cfg.data)
    method = build_method(cfg, DataInfo.of(data))
    method.load_state_dict(state["model"])
    device = pick_device(cfg.train.device)
    method.to(device).eval()
    feats = extract_eval_features(
        method, cfg, data, device, norm_stats(cfg), cfg.eval.probe_shots, cfg.train.seed
    )
    counts = list(data.class_counts)
    out: dict[str, Any] = {"checkpoint": str(path), "epoch": int(state["epoch"]), "shots": {}}
    for n in shots:
        results = []
        for draw in range(draws):
            seed = 1000 * n + draw
            result = probe_metrics(_subset(feats, n, seed), cfg, counts, seed)
            results.append({k: result[k] for k in _KEEP} | {"draw_seed": seed})
        out["shots"][str(n)] = results
    out["seconds"] = time.perf_counter() - started
    write_json(run_dir / FEWSHOT_FILE, out)
    return out


def load_fewshot(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / FEWSHOT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
