"""Per-class accuracy and Many/Medium/Few group metrics (docs/design.md section 6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FEW",
    "GROUP_NAMES",
    "MANY",
    "MEDIUM",
    "GroupRule",
    "class_groups",
    "format_group_value",
    "group_metrics",
    "per_class_accuracy",
]

GroupRule = Literal["thirds", "thresholds"]
MANY, MEDIUM, FEW = 0, 1, 2
GROUP_NAMES: tuple[str, str, str] = ("many", "medium", "few")


def _as_int_array(x: torch.Tensor | ArrayLike, name: str) -> NDArray[np.int64]:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def per_class_accuracy(
    pred: torch.Tensor | ArrayLike, target: torch.Tensor | ArrayLike, num_classes: int
) -> NDArray[np.float64]:
    """Accuracy of each class in percent.

    Args:
        pred: ``[M]`` predicted labels.
        target: ``[M]`` true labels in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        ``[C]`` float64; a class without test samples gets NaN (it has no accuracy).
    """
    p = _as_int_array(pred, "pred")
    t = _as_int_array(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must match, got {p.shape} and {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target values must lie in [0, {num_classes})")
    total = np.bincount(t, minlength=num_classes).astype(np.float64)
    correct = np.bincount(t[p == t], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * correct / total, np.nan)


def class_groups(
    train_class_counts: Sequence[int] | NDArray[np.integer],
    rule: GroupRule = "thirds",
    *,
    many_above: int = 100,
    few_below: int = 20,
) -> NDArray[np.int64]:
    """Assign every class to Many (0), Medium (1) or Few (2) from its *training* image count.

    Rules:
        ``thirds`` (CIFAR convention): classes sorted by count descending, ties broken by the
        lower class index first (stable sort); the last ``C // 3`` are Few, the ``C // 3`` before
        them Medium, and Many takes the rest (34/33/33 for 100 classes, 4/3/3 for 10). This is
        the official split (``sortIdx[C // 3 * 2:]`` is Many), except that the official code
        uses an unstable ``np.argsort`` so its tie order is unspecified.
        ``thresholds`` (ImageNet-LT / Places-LT convention): Many ``> many_above`` (100),
        Medium ``few_below..many_above`` inclusive (20..100), Few ``< few_below`` (20).
        A group can be empty under this rule.

    Returns:
        ``[C]`` int64 group ids.
    """
    counts = _as_int_array(np.asarray(train_class_counts), "train_class_counts")
    num_classes = counts.size
    if rule == "thirds":
        if num_classes < 3:
            raise ValueError(f"rule 'thirds' needs at least 3 classes, got {num_classes}")
        order = np.argsort(-counts, kind="stable")
        third = num_classes // 3
        groups = np.empty(num_classes, dtype=np.int64)
        groups[order[: num_classes - 2 * third]] = MANY
        groups[order[num_classes - 2 * third : num_classes - third]] = MEDIUM
        groups[order[num_classes - third :]] = FEW
        return groups
    if rule == "thresholds":
        return np.where(counts > many_above, MANY, np.where(counts >= few_below, MEDIUM, FEW))
    raise ValueError(f"unknown group rule {rule!r}; valid rules: thirds, thresholds")


def group_metrics(per_class_acc: ArrayLike, groups: ArrayLike) -> dict[str, float]:
    """Summarise per-class accuracies (percent) by group.

    * ``many`` / ``medium`` / ``few``: mean of the per-class accuracies of the classes in the
      group (a class average, not a sample average; equal for balanced test sets).
    * ``std``: *population* standard deviation (ddof 0) of the three group accuracies, as in
      the official code (``np.std``).
    * ``avg``: mean per-class accuracy; ``worst``: lowest per-class accuracy.

    An empty group (possible with the ``thresholds`` rule) gets NaN and ``std`` is taken over
    the non-empty groups. Classes whose accuracy is NaN (no test samples) are left out of every
    mean.

    Returns:
        ``{"many", "medium", "few", "std", "avg", "worst"}`` as Python floats.
    """
    acc = np.asarray(per_class_acc, dtype=np.float64)
    grp = np.asarray(groups)
    if acc.ndim != 1 or acc.shape != grp.shape:
        raise ValueError(
            f"per_class_acc and groups must be 1-D of equal length, got {acc.shape}, {grp.shape}"
        )
    valid = ~np.isnan(acc)
    if not valid.any():
        raise ValueError("no class has an accuracy (all NaN)")
    out: dict[str, float] = {}
    for gid, name in enumerate(GROUP_NAMES):
        members = valid & (grp == gid)
        out[name] = float(acc[members].mean()) if members.any() else float("nan")
    present = [out[n] for n in GROUP_NAMES if not np.isnan(out[n])]
    out["std"] = float(np.std(present))
    out["avg"] = float(acc[valid].mean())
    out["worst"] = float(acc[valid].min())
    return out


def format_group_value(value: float | None) -> str:
    """Two decimals, or ``-`` for a group without classes (``None`` in JSON, NaN in memory)."""
    return "-" if value is None or np.isnan(value) else f"{float(value):.2f}"
