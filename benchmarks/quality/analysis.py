"""Difficulty-adjusted disparity: per-class deficits against a balanced reference, grouped by the
run's pretraining counts, aggregated over class orders and seeds.

Pure functions over plain dicts (the ``metrics.json`` / ``fewshot.json`` contents that the run
records of :mod:`.records` hold), so the maths is testable on synthetic metrics. The per-run
deficit itself is the library's (:func:`geoharmony.eval.deficit.group_deficits`, here as
``deficits``), the one ``geoharmony compare --reference`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from benchmarks.quality.plan import RunSpec
from benchmarks.quality.probes import SIZED_KNN_K
from benchmarks.quality.stats import (
    MIN_PAIRS_FOR_T,
    largest_share_closed,
    mean_sd,
    share_ruled_out,
)

from geoharmony.eval.deficit import group_deficits as deficits
from geoharmony.eval.geometry import cosine_summary
from geoharmony.eval.metrics import GROUP_NAMES, class_groups
from geoharmony.eval.probes import PROBES as LIBRARY_PROBES
from geoharmony.eval.probes import probe_block

__all__ = [
    "GEOMETRY_KEYS",
    "PROBES",
    "SAME_SETTING_KEYS",
    "SIZED_KNN_PROBE",
    "STAT_KEYS",
    "VALIDATION_PROBE",
    "aggregate",
    "cell_key",
    "deficits",
    "find_cell",
    "geometry_pairs",
    "geometry_summaries",
    "group_summary",
    "pair_rows",
    "paired_differences",
    "per_class",
    "run_summaries",
    "same_setting_cells",
    "same_setting_rows",
]

# The study's probes: the library's two that metrics.json holds, and the few-shot linear probes
# of fewshot.json (probes.py) between them; see per_class.
PROBES = ("knn", "fewshot10", "fewshot100", "linear")
# The kNN probe on held-out *training* images (probes.py): for choosing settings, never reported
# as a result, so it is not one of the PROBES the tables and results.json show.
VALIDATION_PROBE = "knn_val"
# metrics.json's kNN at probes.SIZED_KNN_K neighbours (fewshot.json's ``knn_k`` block): a check
# of the kNN probe's k where the probe set has few labels per class (the glyph regime), shown by
# the glyph tables only.
SIZED_KNN_PROBE = f"knn{SIZED_KNN_K}"
STAT_KEYS = (
    "many",
    "medium",
    "few",
    "std",
    "avg",
    "deficit_many",
    "deficit_medium",
    "deficit_few",
    "deficit_few_minus_many",
)


def per_class(
    metrics: dict[str, Any], fewshot: dict[str, Any] | None, probe: str
) -> list[float] | None:
    """Per-class accuracies (percent, by class id) of one probe, or None if missing.

    ``linear``, ``knn``: metrics.json's blocks of the library's probes; ``fewshotN``: the
    mean over draws of the N-shot probes of fewshot.json (all on the test split); ``knn_val``:
    the kNN probe on held-out training images (fewshot.json's ``validation`` block);
    :data:`SIZED_KNN_PROBE`: ``knn`` at another k (fewshot.json's ``knn_k`` block).
    """
    if probe in LIBRARY_PROBES:
        block = probe_block(metrics, probe)
        return list(block["per_class"]) if block else None
    if probe == VALIDATION_PROBE:
        block = (fewshot or {}).get("validation")
        return list(block["knn"]["per_class"]) if block else None
    if probe == SIZED_KNN_PROBE:
        block = (fewshot or {}).get("knn_k", {}).get(str(SIZED_KNN_K))
        return list(block["per_class"]) if block else None
    if probe.startswith("fewshot"):
        draws = (fewshot or {}).get("shots", {}).get(probe[len("fewshot") :])
        if not draws:
            return None
        return [float(v) for v in np.mean([d["per_class"] for d in draws], axis=0)]
    valid = ", ".join((*PROBES, VALIDATION_PROBE, SIZED_KNN_PROBE))
    raise ValueError(f"unknown probe {probe!r}; valid: {valid}")


def group_summary(
    acc: Sequence[float] | np.ndarray, counts: Sequence[int], rule: str = "thirds"
) -> dict[str, float]:
    """Many/Medium/Few means, Std (population sd of the three) and Avg of per-class values,
    grouped by ``counts`` (the run's pretraining counts)."""
    values = np.asarray(acc, dtype=np.float64)
    groups = class_groups(np.asarray(counts, dtype=np.int64), rule)  # type: ignore[arg-type]
    out = {name: float(values[groups == g].mean()) for g, name in enumerate(GROUP_NAMES)}
    out["std"] = float(np.std([out[n] for n in GROUP_NAMES]))
    out["avg"] = float(values.mean())
    return out


def run_summaries(runs: dict[str, dict[str, Any]], probe: str) -> list[dict[str, Any]]:
    """One row per long-tailed run that has its reference: raw group metrics and deficits."""
    rows = []
    for entry in runs.values():
        spec: RunSpec = entry["spec"]
        if spec.balanced or spec.reference not in runs:
            continue
        m, ref = entry["metrics"], runs[spec.reference]
        acc = per_class(m, entry["fewshot"], probe)
        ref_acc = per_class(ref["metrics"], ref["fewshot"], probe)
        if acc is None or ref_acc is None:
            continue
        counts = m["class_counts"]
        rule = m.get("group_rule", "thirds")
        row = {**spec.record(), "probe": probe, "class_counts": counts, "group_rule": rule}
        row["init_from"] = spec.init_from
        row.update(group_summary(acc, counts, rule))
        row.update(deficits(acc, ref_acc, counts, rule))
        row["per_class"] = acc
        row["per_class_deficit"] = [r - a for r, a in zip(ref_acc, acc, strict=True)]
        rows.append(row)
    return rows


def same_setting_rows(runs: dict[str, dict[str, Any]], probe: str) -> list[dict[str, Any]]:
    """One row per long-tailed +GH run whose GH setting also ran on balanced data (its balanced
    reference continued with the same variant, seed and method): its deficits against that
    balanced +GH run instead of the plain reference.

    Against the plain reference, a setting that lifts every class alike (the true classes as
    targets are a supervised signal) closes the Few deficit without narrowing the disparity;
    against a balanced run of the same setting only what the long tail still costs counts."""
    balanced = {
        (s.regime, s.method, s.variant, s.seed): e
        for e in runs.values()
        if (s := e["spec"]).balanced and s.gh
    }
    rows = []
    for entry in runs.values():
        spec: RunSpec = entry["spec"]
        ref = balanced.get((spec.regime, spec.method, spec.variant, spec.seed))
        if spec.balanced or not spec.gh or ref is None:
            continue
        acc = per_class(entry["metrics"], entry["fewshot"], probe)
        ref_acc = per_class(ref["metrics"], ref["fewshot"], probe)
        if acc is None or ref_acc is None:
            continue
        counts, rule = (
            entry["metrics"]["class_counts"],
            entry["metrics"].get("group_rule", "thirds"),
        )
        row = {**spec.record(), "probe": probe, "same_setting_reference": ref["spec"].run_id}
        row.update(deficits(acc, ref_acc, counts, rule))
        rows.append(row)
    return rows


SAME_SETTING_KEYS = ("deficit_few", "deficit_many", "deficit_few_minus_many")


def same_setting_cells(runs: dict[str, dict[str, Any]], regime: str) -> list[dict[str, Any]]:
    """:func:`same_setting_rows` of ``regime`` per (method, variant, probe): ``runs``, the
    number of balanced runs they are measured against (``references``) and the mean / sd of
    each ``SAME_SETTING_KEYS`` key over class orders and seeds."""
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for probe in PROBES:
        for row in same_setting_rows(runs, probe):
            if row["regime"] == regime:
                cells.setdefault((row["method"], row["variant"], probe), []).append(row)
    out = []
    for (method, variant, probe), members in sorted(cells.items()):
        rec: dict[str, Any] = {"method": method, "variant": variant, "probe": probe}
        rec["runs"] = len(members)
        rec["references"] = len({m["same_setting_reference"] for m in members})
        for key in SAME_SETTING_KEYS:
            rec[f"{key}_mean"], rec[f"{key}_sd"] = mean_sd(m[key] for m in members)
        out.append(rec)
    return out


def cell_key(row: dict[str, Any]) -> tuple[str, str, str, bool, str]:
    """Rows of one cell differ only by class order and seed."""
    return (row["group"], row["regime"], row["method"], bool(row["gh"]), row["variant"])


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over class orders and seeds of every statistic, per cell and probe."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((*cell_key(row), row["probe"]), []).append(row)
    return [
        _cell_record(
            cell,
            members,
            imbalance_ratio=members[0]["imbalance_ratio"],
            runs=len(members),
            seeds=len({r["seed"] for r in members}),
            class_orders=sorted({r["class_order"] for r in members}),
        )
        for cell, members in cells.items()
    ]


def _cell_record(
    cell: tuple[Any, ...], members: Sequence[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """One aggregated record: the cell's identity, ``extra``, and mean/sd of every statistic."""
    names = ("group", "regime", "method", "gh", "variant", "probe")
    rec: dict[str, Any] = {**dict(zip(names, cell, strict=True)), **extra}
    for key in STAT_KEYS:
        rec[f"{key}_mean"], rec[f"{key}_sd"] = mean_sd(m[key] for m in members)
    return rec


def pair_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per +GH run whose baseline has a row of the same probe: its ``cell`` key,
    ``probe``, ``run_id``, ``class_order``, ``seed`` and, for every ``STAT_KEYS`` key, +GH minus
    its own baseline (same class order, seed and first phase)."""
    by_id = {(r["run_id"], r["probe"]): r for r in rows}
    out = []
    for row in rows:
        base = by_id.get((row.get("init_from"), row["probe"]))
        if not row["gh"] or base is None:
            continue
        out.append(
            {k: row[k] for k in ("probe", "run_id", "class_order", "seed")}
            | {"cell": cell_key(row), "baseline_deficit_few": base["deficit_few"]}
            | {"baseline_gap": base["deficit_few_minus_many"]}
            | {k: row[k] - base[k] for k in STAT_KEYS}
        )
    return out


def paired_differences(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd of :func:`pair_rows` per cell and probe (negative deficit differences mean GH
    closed part of the gap), with the share of the paired baselines' own Few deficit closed
    (``share_closed``: -mean Δ / mean baseline deficit), the same share of their Few - Many
    deficit gap (``gap_closed``, of ``baseline_gap_mean``), the Few share's one-sided 95% upper
    bound (``share_closed_bound``, :func:`largest_share_closed`) and whether the pairs rule out a
    halving (``halving_ruled_out``, :func:`share_ruled_out` at 50%; None below
    ``MIN_PAIRS_FOR_T`` pairs)."""
    diffs: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for pair in pair_rows(rows):
        diffs.setdefault((*pair["cell"], pair["probe"]), []).append(pair)
    out = []
    for cell, members in diffs.items():
        rec = _cell_record(cell, members, pairs=len(members))
        changes = [m["deficit_few"] for m in members]
        baselines = [m["baseline_deficit_few"] for m in members]
        rec["baseline_deficit_few_mean"], rec["baseline_deficit_few_sd"] = mean_sd(baselines)
        deficit = rec["baseline_deficit_few_mean"]
        rec["share_closed"] = -rec["deficit_few_mean"] / deficit if deficit > 0 else math.nan
        rec["share_closed_bound"] = largest_share_closed(changes, baselines)
        gap = float(np.mean([m["baseline_gap"] for m in members]))
        rec["baseline_gap_mean"] = gap
        rec["gap_closed"] = -rec["deficit_few_minus_many_mean"] / gap if gap > 0 else math.nan
        enough = len(members) >= MIN_PAIRS_FOR_T
        rec["halving_ruled_out"] = share_ruled_out(changes, baselines, 0.5) if enough else None
        out.append(rec)
    return out


# Class-mean geometry of the test features (metrics.json "geometry"), grouped by pretraining counts.
GEOMETRY_KEYS = ("cos_many_many", "cos_many_few", "cos_few_few", "etf_deviation", "effective_rank")


def _grouped_geometry(
    geometry: dict[str, Any], counts: Sequence[int], rule: str
) -> dict[str, float]:
    """``GEOMETRY_KEYS`` of one run's geometry, its class-mean cosines grouped by ``counts``."""
    cos = torch.tensor(geometry["class_mean_cosines"], dtype=torch.float64)
    groups = class_groups(np.asarray(counts, dtype=np.int64), rule)  # type: ignore[arg-type]
    out = {k: v for k, v in cosine_summary(cos, groups).items() if k in GEOMETRY_KEYS}
    out["etf_deviation"] = float(geometry["etf_deviation"])
    out["effective_rank"] = float(geometry["effective_rank"])
    return out


def geometry_summaries(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per long-tailed run with its reference: its class-mean geometry (``GEOMETRY_KEYS``)
    and its balanced reference's (``ref_<key>``), both grouped by the *run's* pretraining counts,
    so ``ref_cos_few_few`` is how close this run's tail classes sit without the long tail."""
    rows = []
    for entry in runs.values():
        spec: RunSpec = entry["spec"]
        if spec.balanced or spec.reference not in runs:
            continue
        m, ref = entry["metrics"], runs[spec.reference]["metrics"]
        if "geometry" not in m or "geometry" not in ref:
            continue
        counts, rule = m["class_counts"], m.get("group_rule", "thirds")
        row = {**spec.record(), "init_from": spec.init_from}
        row.update(_grouped_geometry(m["geometry"], counts, rule))
        ref_geo = _grouped_geometry(ref["geometry"], counts, rule)
        row.update({f"ref_{k}": v for k, v in ref_geo.items()})
        rows.append(row)
    return rows


def geometry_pairs(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(baseline, +GH) geometry rows of every paired run among ``rows``."""
    by_id = {r["run_id"]: r for r in rows}
    return [(by_id[r["init_from"]], r) for r in rows if r["init_from"] in by_id]


def find_cell(cells: Sequence[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    """The first of ``cells`` whose fields equal ``want``; None if there is none."""
    for c in cells:
        if all(c.get(k) == v for k, v in want.items()):
            return c
    return None
