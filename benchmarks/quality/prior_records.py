"""Reading the prior-check records (``benchmarks/results/prior_check.json``, written by
:mod:`.prior_check`): which checkpoint each is of, and how far the estimators track the imbalance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks.quality import plan as plan_mod
from benchmarks.quality.formatting import cell_name

__all__ = [
    "PRIOR_CHECK_FILE",
    "checkpoint_kind",
    "effective_ratio",
    "estimates_of",
    "load_prior_checks",
    "prior_tracking",
    "ratio_epochs",
    "tracking_ratio",
]

PRIOR_CHECK_FILE = Path(__file__).resolve().parents[1] / "results" / "prior_check.json"

# Run ids spell a sensitivity variant without "=", "," and "."; the tables use its label.
_VARIANT_BY_SLUG = {
    plan_mod.variant_slug(label): label
    for label in (
        *(label for label, _, _ in plan_mod.SENSITIVITY),
        *(label for label, _ in plan_mod.ALLOCATION_VARIANTS),
    )
}


def load_prior_checks(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The prior-check records of the runs in ``runs`` (none without the file): the report never
    shows a lost run's numbers."""
    if not PRIOR_CHECK_FILE.is_file():
        return []
    return [r for r in json.loads(PRIOR_CHECK_FILE.read_text()) if r["run"] in runs]


def checkpoint_kind(record: dict[str, Any]) -> str:
    """``SimCLR @40``, ``SimCLR+GH (K=10) @80``, ``balanced ref. @80``, ``SimCLR+GH [r100_e120]
    @120``: a prior-check record's run kind, its variant spelled as in the goal table (run ids
    drop ``=``, ``,`` and ``.``), tagged with its regime outside the primary one."""
    run, epoch = record["run"], record["epoch"]
    regime = run.split("__")[1]
    where = "" if regime == plan_mod.PRIMARY.name else f" [{regime}]"
    if run.startswith("ref__"):
        return f"balanced ref.{where} @{epoch}"
    stem = run.rsplit("__", 2)[0]  # drop class order and seed
    method = stem.split("__")[-1]
    base, _, variant = method.partition("_gh")
    gh = "_gh" in method
    slug = variant.lstrip("_")
    return f"{cell_name(base, gh, _VARIANT_BY_SLUG.get(slug, slug))}{where} @{epoch}"


def estimates_of(records: Sequence[dict[str, Any]], kind: str, name: str) -> list[dict[str, float]]:
    """Estimator ``name``'s results on the prior-check records of one checkpoint kind."""
    return [
        r["estimates"][name]
        for r in records
        if checkpoint_kind(r) == kind and name in r["estimates"]
    ]


def _mean_effective(records: Sequence[dict[str, Any]], kind: str, name: str | None) -> float:
    """Mean effective number of estimator ``name`` (``None``: the true prior's) over the
    prior-check records of one checkpoint kind; NaN if there are none."""
    if name is None:
        values = [r["true_effective_classes"] for r in records if checkpoint_kind(r) == kind]
    else:
        values = [e["effective_number"] for e in estimates_of(records, kind, name)]
    return float(np.mean(values)) if values else math.nan


def tracking_ratio(records: Sequence[dict[str, Any]], epoch: int, name: str | None) -> float:
    """Long-tailed SimCLR / balanced reference mean effective number at ``epoch``: an estimator
    that tracks the imbalance has the true prior's ratio, one blind to it has 1."""
    simclr = _mean_effective(records, f"SimCLR @{epoch}", name)
    return simclr / _mean_effective(records, f"balanced ref. @{epoch}", name)


def ratio_epochs(records: Sequence[dict[str, Any]]) -> list[int]:
    """Epochs with both a SimCLR and a balanced-reference prior check."""
    kinds = {checkpoint_kind(r) for r in records}
    epochs = sorted({r["epoch"] for r in records})
    return [e for e in epochs if {f"SimCLR @{e}", f"balanced ref. @{e}"} <= kinds]


def prior_tracking(
    runs: dict[str, dict[str, Any]], regime: str
) -> tuple[dict[str, dict[bool, list[float]]], float]:
    """Per SimCLR+GH setting of ``regime`` with runs on both kinds of data, the final prior's
    effective numbers ``{balanced: [...]}``, and the true class prior's long-tailed / balanced
    ratio (NaN without such a setting). A prior that tracks the imbalance has the true ratio;
    one blind to it has 1."""
    found: dict[str, dict[bool, list[float]]] = {}
    truth: dict[bool, list[float]] = {}
    for entry in runs.values():
        spec = entry["spec"]
        prior = entry["metrics"].get("prior")
        if not spec.gh or prior is None or spec.regime != regime or spec.method != "simclr":
            continue
        if spec.variant in plan_mod.DIAGNOSTICS:  # read from the labels: not an estimate
            continue
        found.setdefault(spec.variant, {True: [], False: []})[spec.balanced].append(
            prior["effective_number_estimated"]
        )
        truth.setdefault(spec.balanced, []).append(prior["effective_number_true"])
    rows = {v: d for v, d in found.items() if d[True] and d[False]}
    if not rows:
        return {}, math.nan
    return rows, float(np.mean(truth[False]) / np.mean(truth[True]))


def effective_ratio(by_data: dict[bool, list[float]]) -> float:
    """Long-tailed / balanced mean effective number of one setting of :func:`prior_tracking`."""
    return float(np.mean(by_data[False]) / np.mean(by_data[True]))
