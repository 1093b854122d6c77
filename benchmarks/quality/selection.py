"""Choosing a GH setting on held-out training images (the ``knn_val`` probe), never on the test
split, and what the test split says of that choice afterwards."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.quality import plan as plan_mod
from benchmarks.quality.analysis import VALIDATION_PROBE, pair_rows
from benchmarks.quality.stats import MIN_PAIRS_FOR_T, mean_sd, paired_t

__all__ = ["held_out_choice", "held_out_pairs", "selection_candidates", "tested"]


def selection_candidates(
    pairs: Sequence[dict[str, Any]],
    regime: str,
    groups: Sequence[str] = ("primary", "sensitivity"),
) -> dict[str, list[dict[str, Any]]]:
    """SimCLR+GH pairs of ``groups`` in ``regime`` by setting (``""`` = the preset), kept to
    the sensitivity design's class orders and seeds so every setting is judged on the same
    pairs; label-reading diagnostics are not candidates."""
    out: dict[str, list[dict[str, Any]]] = {}
    for pair in pairs:
        group, cell_regime, method, _, variant = pair["cell"]
        order, seed = pair["class_order"], pair["seed"]
        if (
            group in groups
            and cell_regime == regime
            and method == "simclr"
            and variant not in plan_mod.DIAGNOSTICS
            and order in plan_mod.SENSITIVITY_ORDERS
            and seed in plan_mod.SENSITIVITY_SEEDS
        ):
            out.setdefault(variant, []).append(pair)
    return out


def held_out_pairs(
    rows_by_probe: dict[str, list[dict[str, Any]]],
    regime: str,
    groups: Sequence[str] = ("primary", "sensitivity"),
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """(held-out kNN pairs by candidate setting, test kNN pairs by +GH run id)."""
    validation = pair_rows(rows_by_probe.get(VALIDATION_PROBE, []))
    held = selection_candidates(validation, regime, groups)
    return held, {p["run_id"]: p for p in pair_rows(rows_by_probe.get("knn", []))}


def tested(held: Sequence[dict[str, Any]], test: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The test pairs of the +GH runs of the held-out pairs ``held`` that have one."""
    return [test[p["run_id"]] for p in held if p["run_id"] in test]


def held_out_choice(
    held: dict[str, list[dict[str, Any]]], test: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The setting with the lowest mean held-out Δ Few deficit among those with
    ``MIN_PAIRS_FOR_T``+ pairs, and its test Δ Few deficit (mean, sd, pairs, t)."""
    means = {v: mean_sd(p["deficit_few"] for p in m)[0] for v, m in held.items()}
    eligible = {
        v: mean
        for v, mean in means.items()
        if len(held[v]) >= MIN_PAIRS_FOR_T and not math.isnan(mean)
    }
    if not eligible:
        return None
    chosen = min(eligible, key=lambda v: eligible[v])
    on_test = tested(held[chosen], test)
    mean, sd = mean_sd(p["deficit_few"] for p in on_test)
    return {
        "setting": chosen or "the preset",
        "held_out": eligible[chosen],
        "test_mean": mean,
        "test_sd": sd,
        "pairs": len(on_test),
        "t": paired_t(mean, sd, len(on_test)),
    }
