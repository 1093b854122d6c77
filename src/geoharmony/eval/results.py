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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from geoharmony.data.jsonfile import write_json
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
