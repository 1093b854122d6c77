"""The issues' goals, judged per paired +GH cell. The quality study's (issue 7): is the Few
deficit at least halved, beyond seed noise, without a cost in Std or Avg? The allocation
study's (issue 27): are both the Few deficit and the Few - Many deficit gap at least halved,
beyond seed noise, with Avg not lower?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.quality import plan as plan_mod
from benchmarks.quality.analysis import PROBES
from benchmarks.quality.formatting import cell_name
from benchmarks.quality.stats import paired_t, reduction_beyond_noise

__all__ = ["allocation_goal_rows", "goal_rows", "regime_goal_rows"]


def goal_rows(
    diffs: Sequence[dict[str, Any]],
    regime: str,
    groups: Sequence[str] = ("primary", "sensitivity"),
    gap_goal: bool = False,
) -> list[dict[str, Any]]:
    """The goal, per paired +GH cell and probe of ``groups`` in ``regime``: the Few deficit at
    least halved, Std down, Avg not lower, the Few change beyond seed noise (one-sided paired
    t-test, 5%). With ``gap_goal`` (the allocation study's), the Few - Many deficit gap at least
    halved instead of Std down: a change that lifts every class alike closes the Few deficit
    without narrowing the disparity. Every share is of the very baselines the cell's +GH runs
    are paired with."""
    order = {p: i for i, p in enumerate(PROBES)}
    pairs = [d for d in diffs if d["group"] in groups and d["regime"] == regime]
    rows = []
    for d in sorted(
        pairs, key=lambda d: (d["group"], d["method"], d["variant"], order[d["probe"]])
    ):
        change = d["deficit_few_mean"]
        # A share of a baseline deficit that is itself within noise means little: shown, but
        # without a bound (largest_share_closed).
        closed = d["share_closed"]
        t = paired_t(change, d["deficit_few_sd"], d["pairs"])
        significant = reduction_beyond_noise(t, d["pairs"])
        rows.append(
            {
                "name": cell_name(d["method"], True, d["variant"]),
                "variant": d["variant"],
                "diagnostic": d["variant"] in plan_mod.DIAGNOSTICS,
                "probe": d["probe"],
                "pairs": d["pairs"],
                "deficit": d["baseline_deficit_few_mean"],
                "change": change,
                "many_change": d["deficit_many_mean"],
                "gap_change": d["deficit_few_minus_many_mean"],
                "closed": closed,
                "closed_bound": d["share_closed_bound"],
                "halving_ruled_out": d["halving_ruled_out"],
                "t": t,
                "std": d["std_mean"],
                "avg": d["avg_mean"],
                "baseline_gap": d["baseline_gap_mean"],
                "gap_closed": d["gap_closed"],
                "met": closed >= 0.5
                and (d["gap_closed"] >= 0.5 if gap_goal else d["std_mean"] < 0)
                and d["avg_mean"] >= 0
                and significant,
            }
        )
    return rows


def regime_goal_rows(
    diffs: Sequence[dict[str, Any]], regimes: Sequence[plan_mod.Regime], primary: str
) -> list[dict[str, Any]]:
    """Goal rows of the SimCLR+GH pairs in the search regimes (not the primary one), each
    name tagged with its regime."""
    return [
        {**row, "name": f"{row['name']} [{r.name}]"}
        for r in regimes
        if r.name != primary
        for row in goal_rows(diffs, r.name, groups=("regime",))
    ]


def allocation_goal_rows(diffs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Goal rows of the allocation study (issue 27), judged by its goal (``gap_goal``)."""
    return goal_rows(diffs, plan_mod.ALLOCATION.name, groups=("allocation",), gap_goal=True)
