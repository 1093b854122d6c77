"""Difficulty-adjusted disparity of one run: per-class deficits against a balanced reference.

Raw Many/Medium/Few accuracies confound how often a class was seen with how hard it is (on
Fashion-MNIST, Shirt stays near 50% and Bag near 97% whatever their counts). The deficit removes
the difficulty: for every class c,

    deficit[c] = reference_acc[c] - run_acc[c]          (percentage points)

where the reference is pretrained on a *balanced* set of (nearly) the same total image count,
with the same data and probe protocol (docs/design.md section 6). The deficits are then grouped into
Many/Medium/Few by the *run's* pretraining counts and group rule (the reference has no tail).
A positive deficit is accuracy the long tail cost; Few - Many says how much more the tail lost.

Everything here is pure arithmetic over ``metrics.json`` dicts; tables, plots and the written
reading live in :mod:`geoharmony.eval.compare` and :mod:`geoharmony.eval.reading`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geoharmony.data.catalog import find_source
from geoharmony.eval.metrics import GROUP_NAMES, GroupRule, class_groups, group_metrics
from geoharmony.eval.probes import probe_block, upgrade_metrics

__all__ = [
    "DEFICIT_KEYS",
    "ReferenceMismatchError",
    "check_reference",
    "group_deficits",
    "probe_accuracies",
    "run_deficits",
]

DEFICIT_KEYS: tuple[str, ...] = (
    "deficit_many",
    "deficit_medium",
    "deficit_few",
    "deficit_avg",
    "deficit_few_minus_many",
)
# The probe protocol a deficit needs to be equal: the probe set of metrics.json and the
# config's evaluation keys that change what a probe measures.
_PROBE_KEYS = ("preset", "shots", "disjoint", "train_images", "test_images")
_EVAL_KEYS = ("probe_epochs", "probe_source", "knn_k", "knn_temperature")


class ReferenceMismatchError(ValueError):
    """A reference cannot serve a run (different data, probe protocol or image count), or a
    metrics.json lacks a field the deficit needs; the message names the key."""


def probe_accuracies(result: Mapping[str, Any], probe: str) -> NDArray[np.float64]:
    """Per-class test accuracies (percent) of ``probe`` in one ``metrics.json``.

    Returns:
        ``[C]`` float64 by class id; a class without test images (JSON ``null``) is NaN.
    """
    block = probe_block(result, probe)
    if block is None or "per_class" not in block:
        raise ReferenceMismatchError(
            f"{_name(result)}: metrics.json has no probes.{probe}.per_class"
        )
    return np.asarray([np.nan if a is None else a for a in block["per_class"]], dtype=np.float64)


def group_deficits(
    run_acc: ArrayLike,
    ref_acc: ArrayLike,
    counts: Sequence[int] | ArrayLike,
    rule: GroupRule = "thirds",
) -> dict[str, float]:
    """Group means of the per-class deficit ``ref_acc - run_acc``.

    Args:
        run_acc: ``[C]`` per-class accuracies (percent) of the long-tailed run.
        ref_acc: ``[C]`` the balanced reference's, same class ids.
        counts: ``[C]`` the *run's* pretraining images per class; the groups come from these.
        rule: the run's group rule (:func:`geoharmony.eval.metrics.class_groups`).

    Returns:
        ``DEFICIT_KEYS``: ``deficit_many`` / ``_medium`` / ``_few`` (mean deficit of the group's
        classes; NaN for an empty group), ``deficit_avg`` (mean over all classes) and
        ``deficit_few_minus_many``. Classes with a NaN accuracy in either run are left out of
        the means.
    """
    run = np.asarray(run_acc, dtype=np.float64)
    ref = np.asarray(ref_acc, dtype=np.float64)
    if run.shape != ref.shape or run.ndim != 1:
        raise ValueError(
            f"run and reference accuracies must be 1-D of equal length, got {run.shape} and "
            f"{ref.shape}"
        )
    groups = class_groups(np.asarray(counts, dtype=np.int64), rule)
    g = group_metrics(ref - run, groups)
    out = {f"deficit_{name}": g[name] for name in GROUP_NAMES}
    out["deficit_avg"] = g["avg"]
    out["deficit_few_minus_many"] = g["few"] - g["many"]
    return out


def run_deficits(
    run: Mapping[str, Any], reference: Mapping[str, Any], probe: str
) -> dict[str, Any]:
    """One run's deficits for one probe (the reference already checked by
    :func:`check_reference`).

    Returns:
        ``DEFICIT_KEYS`` plus ``per_class_deficit`` (``[C]`` list, NaN where undefined),
        ``class_counts`` (``[C]``, the run's), ``group_rule`` and ``probe``.
    """
    counts = [int(c) for c in _field(run, "class_counts")]
    rule = run.get("group_rule", "thirds")
    acc, ref = probe_accuracies(run, probe), probe_accuracies(reference, probe)
    out: dict[str, Any] = group_deficits(acc, ref, counts, rule)
    out.update(
        per_class_deficit=[float(d) for d in ref - acc],
        class_counts=counts,
        group_rule=rule,
        probe=probe,
    )
    return out


def check_reference(run: Mapping[str, Any], reference: Mapping[str, Any]) -> None:
    """Raise :class:`ReferenceMismatchError`, naming the key, unless ``reference`` is a balanced
    run on the same data set (source and number of classes), with the same probe protocol
    (``probe_set.*`` and the config's ``eval.`` probe keys) and a total pretraining image count
    within one image per class of ``run``'s."""
    run, reference = upgrade_metrics(run), upgrade_metrics(reference)
    run_counts = _field(run, "data.class_counts")
    ref_counts = _field(reference, "data.class_counts")
    if min(ref_counts) != max(ref_counts):
        raise ReferenceMismatchError(
            f"reference {_name(reference)} is not balanced: data.class_counts range from "
            f"{min(ref_counts)} to {max(ref_counts)} (pretrain it with data.imbalance_ratio=1)"
        )
    pairs = [
        ("data.source", _dataset(run), _dataset(reference)),
        ("number of classes", len(run_counts), len(ref_counts)),
    ]
    keys = [f"probe_set.{k}" for k in _PROBE_KEYS] + [f"config.eval.{k}" for k in _EVAL_KEYS]
    pairs += [(key, _field(run, key), _field(reference, key)) for key in keys]
    for key, mine, theirs in pairs:
        if mine != theirs:
            raise ReferenceMismatchError(
                f"reference {_name(reference)} differs from run {_name(run)} in {key}: "
                f"{theirs!r} against the run's {mine!r}"
            )
    total = int(_field(run, "data.num_pretrain_images"))
    ref_total = int(_field(reference, "data.num_pretrain_images"))
    if abs(total - ref_total) > len(run_counts):
        raise ReferenceMismatchError(
            f"reference {_name(reference)} differs from run {_name(run)} in "
            f"data.num_pretrain_images: {ref_total} against the run's {total}, more than one "
            f"image per class apart (pretrain it with data.n_max={round(total / len(run_counts))})"
        )


def _dataset(result: Mapping[str, Any]) -> str:
    """The data set a run read: the source kind (``fashion_mnist``), or its files for a list or
    folder source (``data.source`` is ``kind:location:split``; a built-in data set's location is
    only where it is installed)."""
    source = str(_field(result, "data.source"))
    kind = source.split(":", 1)[0]
    # A source's description says whether its files (path) or its name is the data set.
    described = find_source(kind)
    return source if described is not None and described.files else kind


def _field(result: Mapping[str, Any], dotted: str) -> Any:
    """``result["a"]["b"]`` for ``"a.b"``; a clear error naming the key when it is missing."""
    value: Any = result
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ReferenceMismatchError(
                f"{_name(result)}: metrics.json has no {dotted} (made by an older geoharmony? "
                "re-evaluate it with geoharmony evaluate)"
            )
        value = value[part]
    return value


def _name(result: Mapping[str, Any]) -> str:
    return str(result.get("_path", "?"))
