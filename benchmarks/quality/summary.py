"""The report's computed summary: a handful of bullet lines, each a count or a number taken from
the cells, the goal rows or the held-out choice, and each left out while its numbers are missing.
What the numbers mean is said by hand, in the reading above the generated part of
docs/results.md (:mod:`.report`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.quality import plan as plan_mod
from benchmarks.quality.analysis import find_cell
from benchmarks.quality.formatting import num, percent, pm
from benchmarks.quality.goal import allocation_goal_rows
from benchmarks.quality.selection import held_out_choice, held_out_pairs
from benchmarks.quality.stats import MIN_PAIRS_FOR_T, deficit_t

__all__ = ["choice_sentence", "goal_change", "regime_search_sentence", "summary"]


def summary(
    cells: Sequence[dict[str, Any]],
    goal: Sequence[dict[str, Any]],
    rows_by_probe: dict[str, list[dict[str, Any]]],
    regime: str,
    regimes: Sequence[plan_mod.Regime] = (),
    diffs: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """The bullets: SimCLR's deficit, the goal's count and best cell, the halvings ruled out,
    the labels diagnostic, the regime search, the held-out choice, the allocation study."""
    out = [
        _deficit_line(cells, regime),
        *_goal_lines(goal),
        _labels_line(goal),
        regime_search_sentence(cells, regimes, regime),
        _choice_line(rows_by_probe, regime),
        *_allocation_lines(cells, diffs, rows_by_probe),
    ]
    return [s for s in out if s] or ["_no finished runs yet_"]


def goal_change(row: dict[str, Any]) -> str:
    """``-0.38 (6% of the deficit, t = -0.6, 4 pairs)`` for one goal row."""
    t = "" if math.isnan(row["t"]) else f", t = {row['t']:+.1f}"
    if row["pairs"] < MIN_PAIRS_FOR_T:  # no t and no bound yet: the noise cannot be judged
        share = f"{percent(row['closed'])} of the deficit, too few pairs to judge the noise"
    elif math.isnan(row["closed_bound"]):
        # The baselines' deficit is within noise, so a share of it means little.
        share = "of a baseline deficit within noise"
    else:
        share = f"{percent(row['closed'])} of the deficit"
    pairs = "1 pair" if row["pairs"] == 1 else f"{row['pairs']} pairs"
    return f"{row['change']:+.2f} ({share}{t}, {pairs})"


def choice_sentence(choice: dict[str, Any]) -> str:
    """What the held-out images choose (:func:`.selection.held_out_choice`) and its test score."""
    return (
        f"Chosen on held-out training images (lowest mean held-out Δ Few deficit among settings "
        f"with {MIN_PAIRS_FOR_T}+ pairs): **{choice['setting']}** ({choice['held_out']:+.2f}); "
        f"on the test split its kNN Δ Few deficit is {pm(choice['test_mean'], choice['test_sd'])} "
        f"over {choice['pairs']} pairs (t = {num(choice['t'], '+.1f')})."
    )


def regime_search_sentence(
    cells: Sequence[dict[str, Any]], regimes: Sequence[plan_mod.Regime], primary: str
) -> str | None:
    """Which regime shows long-tailed SimCLR's kNN Few deficit most clearly (largest mean / sd:
    t grows with the number of runs, which differs between regimes), and how the others compare;
    None before two regimes have a t."""
    found = []
    for regime in regimes:
        group = "primary" if regime.name == primary else "regime"
        c = find_cell(
            cells, group=group, regime=regime.name, method="simclr", gh=False, probe="knn"
        )
        if c is not None and not math.isnan(deficit_t(c)):
            found.append((regime.name, c))
    if len(found) < 2:
        return None

    def said(name: str, c: dict[str, Any]) -> str:
        return (
            f"`{name}` {pm(c['deficit_few_mean'], c['deficit_few_sd'])} (mean / sd "
            f"{c['deficit_few_mean'] / c['deficit_few_sd']:.1f}, t = {deficit_t(c):+.1f}, "
            f"{c['runs']} runs)"
        )

    name, best = max(found, key=lambda nc: nc[1]["deficit_few_mean"] / nc[1]["deficit_few_sd"])
    others = "; ".join(said(n, c) for n, c in found if n != name)
    return (
        f"- Regime search (SimCLR, kNN Few deficit): clearest in {said(name, best)}; then {others}."
    )


def _deficit_line(cells: Sequence[dict[str, Any]], regime: str) -> str | None:
    base = find_cell(cells, group="primary", regime=regime, method="simclr", gh=False, probe="knn")
    if not base:
        return None
    return (
        f"- Long-tailed SimCLR, kNN Few deficit against the balanced reference: "
        f"{pm(base['deficit_few_mean'], base['deficit_few_sd'])} points over {base['runs']} "
        f"runs (Many: {pm(base['deficit_many_mean'], base['deficit_many_sd'])})."
    )


def _lowest(rows: Sequence[dict[str, Any]], what: str) -> str:
    """``The largest reduction of <what>: <cell>, <change>``, or the smallest rise where no
    row reduces it."""
    best = min(rows, key=lambda r: r["change"])
    if best["change"] < 0:
        label = f"The largest reduction of {what}"
    else:
        label = f"No cell reduces {what}; the smallest rise"
    return f"{label}: {best['name']}, {goal_change(best)}"


def _goal_lines(goal: Sequence[dict[str, Any]]) -> list[str]:
    """The goal's count, the lowest kNN change and the halvings ruled out, over the method cells
    (the label-reading diagnostics apart) with ``MIN_PAIRS_FOR_T``+ pairs; none before a kNN
    cell has them."""
    methods = [r for r in goal if not r["diagnostic"] and r["pairs"] >= MIN_PAIRS_FOR_T]
    knn = [r for r in methods if r["probe"] == "knn"]
    if not knn:
        return []

    def ruled_out(rows: Sequence[dict[str, Any]]) -> str:
        return f"{sum(bool(r['halving_ruled_out']) for r in rows)} of {len(rows)}"

    open_cells = [
        f"{r['name']} ({percent(r['closed'])} closed)" for r in knn if not r["halving_ruled_out"]
    ]
    return [
        f"- Goal met by {sum(r['met'] for r in methods)} of {len(methods)} paired cells of "
        f"methods with {MIN_PAIRS_FOR_T}+ pairs (all probes, diagnostics apart). "
        f"{_lowest(knn, 'the kNN Few deficit')}; the best of {len(knn)} kNN cells (t not "
        "corrected for the choice).",
        f"- Halving of the Few deficit ruled out (one-sided paired test at 5%) in {ruled_out(knn)} "
        f"kNN method cells of {MIN_PAIRS_FOR_T}+ pairs"
        + (f" (not in: {', '.join(open_cells)})" if open_cells else "")
        + f" and in {ruled_out(methods)} cells over all probes.",
    ]


def _labels_line(goal: Sequence[dict[str, Any]]) -> str | None:
    labels = [r for r in goal if r["diagnostic"] and "targets=labels" in r["name"]]
    if not labels:
        return None
    by_probe = "; ".join(
        f"{r['probe']} {goal_change(r)}, Many {r['many_change']:+.2f}, Few - Many "
        f"{r['gap_change']:+.2f}"
        for r in labels
    )
    return f"- True classes as GH's targets (diagnostic), Δ Few deficit: {by_probe}."


def _choice_line(rows_by_probe: dict[str, list[dict[str, Any]]], regime: str) -> str | None:
    choice = held_out_choice(*held_out_pairs(rows_by_probe, regime))
    return f"- GH settings, {_lowered(choice_sentence(choice))}" if choice else None


def _lowered(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def _allocation_lines(
    cells: Sequence[dict[str, Any]],
    diffs: Sequence[dict[str, Any]],
    rows_by_probe: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """The allocation study (issue 27): its baselines' kNN Few deficit, the goal's count and the
    range of the settings' changes, and the allocation the held-out images choose; none before
    the study has pairs."""
    regime = plan_mod.ALLOCATION.name
    base = find_cell(
        cells, group="allocation", regime=regime, method="simclr", gh=False, variant="", probe="knn"
    )
    knn = [r for r in allocation_goal_rows(diffs) if r["probe"] == "knn"]
    if base is None or not knn:
        return []
    line = (
        f"- Allocations (regime `{regime}`): long-tailed SimCLR's kNN Few deficit "
        f"{pm(base['deficit_few_mean'], base['deficit_few_sd'])} ({base['runs']} runs, "
        f"t = {num(deficit_t(base), '+.1f')})"
    )
    settings = [r for r in knn if not r["diagnostic"] and r["pairs"] >= MIN_PAIRS_FOR_T]
    if settings:
        changes = [r["change"] for r in settings]
        line += (
            f"; goal met by {sum(r['met'] for r in settings)} of {len(settings)} settings with "
            f"{MIN_PAIRS_FOR_T}+ pairs, whose kNN Δ Few deficit runs from {min(changes):+.2f} to "
            f"{max(changes):+.2f} ({sum(c < 0 for c in changes)} lower it)"
        )
    choice = held_out_choice(*held_out_pairs(rows_by_probe, regime, ("allocation",)))
    return [line + ".", f"- Allocations, {_lowered(choice_sentence(choice))}" if choice else ""]
