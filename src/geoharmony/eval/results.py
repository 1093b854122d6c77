"""Assemble evaluation results into the stable result-dict schema.

Schema (every key always present; accuracies in percent as floats):

* ``many``, ``medium``, ``few``: group accuracies (mean of per-class accuracies in the group);
* ``std``: population std of the group accuracies; ``avg``: mean per-class accuracy;
  ``worst``: lowest per-class accuracy;
* ``per_class``: list of C per-class accuracies; ``class_counts``: list of C training counts
  (the counts the groups were formed from); ``group_rule``: ``"thirds"`` or ``"thresholds"``.

NaN (an empty group, a class without test samples) is kept in the dict and written to JSON as
``null`` by :func:`write_json`, so the files stay strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from geoharmony.eval.metrics import GroupRule, class_groups, group_metrics, per_class_accuracy

__all__ = ["SCHEMA_KEYS", "assemble_result", "result_from_predictions", "write_json"]

SCHEMA_KEYS: tuple[str, ...] = (
    "many",
    "medium",
    "few",
    "std",
    "avg",
    "worst",
    "per_class",
    "class_counts",
    "group_rule",
)


def assemble_result(
    per_class_acc: ArrayLike,
    class_counts: Sequence[int] | ArrayLike,
    group_rule: GroupRule = "thirds",
    *,
    groups: ArrayLike | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a result dict from per-class accuracies and training class counts.

    Args:
        per_class_acc: ``[C]`` per-class accuracies in percent.
        class_counts: ``[C]`` training (pre-training) image counts per class.
        group_rule: rule used to form groups from ``class_counts``.
        groups: precomputed ``[C]`` group ids (must come from ``group_rule``); computed if None.
        extra: additional keys (e.g. ``knn_avg``, ``method``); may not shadow schema keys.
    """
    acc = np.asarray(per_class_acc, dtype=np.float64)
    counts = np.asarray(class_counts).astype(np.int64)
    if acc.shape != counts.shape or acc.ndim != 1:
        raise ValueError(
            f"per_class_acc and class_counts must be 1-D of equal length, got {acc.shape} and "
            f"{counts.shape}"
        )
    if group_rule not in ("thirds", "thresholds"):
        raise ValueError(f"unknown group rule {group_rule!r}; valid rules: thirds, thresholds")
    grp = class_groups(counts, group_rule) if groups is None else np.asarray(groups)
    result: dict[str, Any] = dict(group_metrics(acc, grp))
    result["per_class"] = [float(a) for a in acc]
    result["class_counts"] = [int(c) for c in counts]
    result["group_rule"] = group_rule
    if extra:
        clash = sorted(set(extra) & set(SCHEMA_KEYS))
        if clash:
            raise ValueError(f"extra keys shadow schema keys: {clash}")
        result.update(extra)
    return result


def result_from_predictions(
    pred: torch.Tensor | ArrayLike,
    target: torch.Tensor | ArrayLike,
    class_counts: Sequence[int] | ArrayLike,
    group_rule: GroupRule = "thirds",
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Result dict from test predictions ``[M]``, targets ``[M]`` and training counts ``[C]``."""
    counts = np.asarray(class_counts)
    acc = per_class_accuracy(pred, target, num_classes=counts.size)
    return assemble_result(acc, counts, group_rule, extra=extra)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray | torch.Tensor):
        return _json_safe(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(
    path: str | os.PathLike[str], data: Mapping[str, Any], indent: int | None = 2
) -> None:
    """Write ``data`` as strict JSON, atomically (temp file in the same folder + os.replace).

    NaN/inf become ``null``; numpy scalars/arrays and tensors become plain JSON values. Readers
    never see a partial file, and a crash leaves the previous file intact. ``indent=None``
    writes it compactly (large machine-read files).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_json_safe(data), f, indent=indent, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
