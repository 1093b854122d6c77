"""Synthetic ``metrics.json`` files in today's layout, shared by the tests of the deficit,
``compare`` and the probe descriptions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]  # the fmnist_lt preset, 2,478 images
REF_LINEAR = [80.0] * 10
REF_KNN = [50.0 + 5 * c for c in range(10)]
# Deficits (reference - run) per class id that each synthetic run is built with.
DEFICITS = {
    "simclr": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 1, 1, 2, 2, 2, 10, 10, 13]),
    "simclr_gh": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 6], [1, 1, 1, 1, 2, 2, 2, 10, 10, 10]),
    "focal": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 1, 1, 2, 2, 2, 10, 10, 13]),
}


def metrics(
    counts: list[int], linear: list[float], knn: list[float], method: str = "simclr", gh=False
) -> dict[str, Any]:
    """A metrics.json with the fields compare --reference reads (the schema of a real run)."""
    return {
        "probes": {"knn": {"per_class": knn}, "linear": {"per_class": linear}},
        "class_counts": counts,
        "group_rule": "thirds",
        "method": method,
        "gh": gh,
        "imbalance_ratio": max(counts) / min(counts),
        "precision": "fp32",
        "probe_set": {
            "preset": "adam",
            "shots": 1000,
            "disjoint": True,
            "train_images": 10000,
            "test_images": 10000,
        },
        "data": {
            "dataset": "fashion_mnist-lt",
            "source": "fashion_mnist:/usr/share/datasets/fashion-mnist:train",
            "num_pretrain_images": sum(counts),
            "class_counts": counts,
            "class_order": list(range(len(counts))),
        },
        "config": {
            "model": {"width": 0.25},
            "optim": {"epochs": 80},
            "eval": {
                "probe_epochs": None,
                "probe_source": "train",
                "knn_k": 200,
                "knn_temperature": 0.1,
            },
        },
    }


def run_metrics(name: str, counts: list[int] = COUNTS) -> dict[str, Any]:
    d_linear, d_knn = DEFICITS[name]
    return metrics(
        counts,
        [r - d for r, d in zip(REF_LINEAR, d_linear, strict=True)],
        [r - d for r, d in zip(REF_KNN, d_knn, strict=True)],
        method=name.removesuffix("_gh"),
        gh=name.endswith("_gh"),
    )


def write(folder: Path, result: dict[str, Any]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result))
    return str(folder)
