"""The report's Summary: a few sentences, each computed from the cells, the goal rows, the
prior checks, the held-out choice or the class-mean geometry, and each left out while its
numbers are missing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from benchmarks.quality import plan as plan_mod
from benchmarks.quality.analysis import find_cell, geometry_pairs
from benchmarks.quality.formatting import num, percent, pm
from benchmarks.quality.goal import allocation_goal_rows, regime_goal_rows
from benchmarks.quality.prior_records import checkpoint_kind, ratio_epochs, tracking_ratio
from benchmarks.quality.selection import held_out_choice, held_out_pairs
from benchmarks.quality.stats import MIN_PAIRS_FOR_T, deficit_t

__all__ = [
    "allocation_sentences",
    "choice_sentence",
    "goal_change",
    "regime_search_sentence",
    "same_targets_deficit",
    "summary",
]


def summary(
    cells: Sequence[dict[str, Any]],
    goal: Sequence[dict[str, Any]],
    prior_records: Sequence[dict[str, Any]],
    geo_rows: Sequence[dict[str, Any]],
    rows_by_probe: dict[str, list[dict[str, Any]]],
    regime: str,
    regimes: Sequence[plan_mod.Regime] = (),
    diffs: Sequence[dict[str, Any]] = (),
    same_setting: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """A few computed sentences: the deficit, the best +GH cell, prior recovery, allocation,
    the regime search, the setting held-out images would choose, class-mean geometry."""
    out = [
        _deficit_sentence(cells, regime),
        *_goal_sentences(goal),
        _labels_sentence(goal),
        _prior_recovery_sentence(prior_records),
        _oracle_sentence(goal, prior_records),
        regime_search_sentence(cells, regimes, regime),
        _search_gh_sentence(diffs, regimes, regime),
        _choice_summary(rows_by_probe, regime),
        _geometry_sentence(geo_rows, regime),
        *allocation_sentences(cells, diffs, rows_by_probe, same_setting),
    ]
    return [s for s in out if s] or ["_no finished runs yet_"]


def same_targets_deficit(same_setting: Sequence[dict[str, Any]], labels_row: dict[str, Any]) -> str:
    """A sentence: the kNN deficits of a labels-as-targets setting (``labels_row``: its goal
    row) against balanced runs of the same setting (``same_setting``:
    :func:`.analysis.same_setting_cells`), beside the plain baselines'; empty without them."""
    found = [
        c for c in same_setting if c["probe"] == "knn" and c["variant"] == labels_row.get("variant")
    ]
    if not found:
        return ""
    c, base_few, base_gap = found[0], labels_row["deficit"], labels_row["baseline_gap"]
    few, gap, many = c["deficit_few_mean"], c["deficit_few_minus_many_mean"], c["deficit_many_mean"]
    return (
        f"Against balanced runs of the same setting ({c['runs']} long-tailed runs, "
        f"{c['references']} balanced), its kNN Few deficit is {pm(few, c['deficit_few_sd'])}, "
        f"Many {pm(many, c['deficit_many_sd'])} and Few - Many gap "
        f"{pm(gap, c['deficit_few_minus_many_sd'])}, where the plain baselines' (against the "
        f"plain reference) are {num(base_few)} and {num(base_gap)}: the long tail still costs "
        f"the Few classes {percent(few / base_few)} of what it costs without GH."
    )


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


def _best_label(best: dict[str, Any], deficit: str) -> str:
    """How to name the cell with the lowest change: a reduction only if it is one."""
    if best["change"] < 0:
        return f"the largest reduction of {deficit}"
    return f"no cell reduces {deficit}; the smallest rise"


def choice_sentence(choice: dict[str, Any]) -> str:
    """What the held-out images choose (:func:`.selection.held_out_choice`) and its test score."""
    return (
        f"Chosen on held-out training images (lowest mean held-out Δ Few deficit among settings "
        f"with {MIN_PAIRS_FOR_T}+ pairs): **{choice['setting']}** ({choice['held_out']:+.2f}); "
        f"on the test split its kNN Δ Few deficit is {pm(choice['test_mean'], choice['test_sd'])} "
        f"over {choice['pairs']} pairs (t = {num(choice['t'], '+.1f')})."
        + (
            " It raises the held-out Few deficit too: no setting narrows it on held-out images."
            if choice["held_out"] >= 0
            else ""
        )
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


def _deficit_sentence(cells: Sequence[dict[str, Any]], regime: str) -> str | None:
    base = find_cell(cells, group="primary", regime=regime, method="simclr", gh=False, probe="knn")
    if not base:
        return None
    return (
        f"- Long-tailed SimCLR's kNN Few deficit against the balanced reference: "
        f"{pm(base['deficit_few_mean'], base['deficit_few_sd'])} points over {base['runs']} "
        f"runs (Many: {pm(base['deficit_many_mean'], base['deficit_many_sd'])})."
    )


def _goal_sentences(goal: Sequence[dict[str, Any]]) -> list[str]:
    """How many method cells meet the goal, the largest kNN reduction, and whether the pairs
    rule a halving out; none before a kNN method cell has ``MIN_PAIRS_FOR_T`` pairs."""
    methods = [r for r in goal if not r["diagnostic"] and r["pairs"] >= MIN_PAIRS_FOR_T]
    knn = [r for r in methods if r["probe"] == "knn"]
    if not knn:
        return []
    best = min(knn, key=lambda r: r["change"])
    label = _best_label(best, "the kNN Few deficit")

    def ruled_out(rows: Sequence[dict[str, Any]]) -> str:
        return f"{sum(bool(r['halving_ruled_out']) for r in rows)} of {len(rows)}"

    still_open = [
        f"{r['name']} ({percent(r['closed'])} closed)" for r in knn if not r["halving_ruled_out"]
    ]
    return [
        f"- Goal met by {sum(r['met'] for r in methods)} of {len(methods)} paired cells of "
        f"methods with {MIN_PAIRS_FOR_T}+ pairs (all probes; the label-reading diagnostics "
        f"apart). {label[0].upper()}{label[1:]}: {best['name']}, "
        f"{goal_change(best)}; "
        f"the best of {len(knn)} kNN cells, so its t is not corrected for the choice.",
        "- Is the miss a lack of seeds? The pairs rule out a halving of the Few deficit "
        "(one-sided paired test at 5%, the noise of both deficits counted) in "
        f"{ruled_out(knn)} kNN method cells of {MIN_PAIRS_FOR_T}+ pairs"
        + (f" (not in: {', '.join(still_open)})" if still_open else "")
        + f" and in {ruled_out(methods)} cells over all probes.",
    ]


def _labels_sentence(goal: Sequence[dict[str, Any]]) -> str | None:
    labels = [r for r in goal if r["diagnostic"] and "targets=labels" in r["name"]]
    if not labels:
        return None
    by_probe = "; ".join(
        f"{r['probe']} {goal_change(r)}, Many {r['many_change']:+.2f}, Few - Many "
        f"{r['gap_change']:+.2f}"
        for r in labels
    )
    return (
        "- With the true classes as GH's surrogate labels (no Sinkhorn; a diagnostic upper "
        f"bound of any allocation, and a supervised signal), the deficits change by: {by_probe}."
    )


def _prior_recovery_sentence(prior_records: Sequence[dict[str, Any]]) -> str | None:
    estimated = [r for r in prior_records if r["estimates"]]
    epochs = ratio_epochs(estimated)
    if not epochs:
        return None
    epoch = epochs[0]  # the earliest: the end of the warm-up, where GH's prior starts
    names = list(dict.fromkeys(n for r in estimated for n in r["estimates"]))
    ratios = {n: tracking_ratio(estimated, epoch, n) for n in names}
    told_k = [v for n, v in ratios.items() if "not told K" not in n] or [math.nan]
    truth = tracking_ratio(estimated, epoch, None)
    best = min(ratios, key=lambda n: abs(ratios[n] - truth))
    return (
        f"- Can the features show the imbalance? At epoch {epoch}, the estimators told "
        f"K = 10 find {min(told_k):.2f}-{max(told_k):.2f} times as many effective groups on "
        f"long-tailed as on balanced features, where the true priors' ratio is {truth:.2f} "
        f"(1 = blind to the imbalance). The closest, {best}, reaches {ratios[best]:.2f}: "
        f"{(1 - ratios[best]) / (1 - truth):.0%} of the way from blind (1) to the truth."
    )


def _oracle_sentence(
    goal: Sequence[dict[str, Any]], prior_records: Sequence[dict[str, Any]]
) -> str | None:
    """Does a correct prior help? The oracle prior's kNN change and allocation (NMI of anchor
    and label) beside the estimated prior's at the same K = 10; None without both."""
    names = {"oracle": "SimCLR+GH (prior=oracle,K=10)", "estimated": "SimCLR+GH (K=10)"}
    knn = {r["name"]: r for r in goal if r["probe"] == "knn"}
    nmi = {
        key: [
            r["assignments"]["nmi_assigned_anchor"]
            for r in prior_records
            if r.get("assignments") and checkpoint_kind(r).startswith(f"{name} @")
        ]
        for key, name in names.items()
    }
    if not all(name in knn for name in names.values()) or not all(nmi.values()):
        return None
    oracle, estimated = knn[names["oracle"]], knn[names["estimated"]]
    return (
        f"- Does a correct prior help? With the true class prior (oracle, K = 10), GH changes "
        f"the kNN Few deficit by {goal_change(oracle)}; with the paper's estimated prior at "
        f"K = 10, by {goal_change(estimated)}. Its allocation agrees with the labels no "
        f"better: NMI of anchor and label {np.mean(nmi['oracle']):.2f} against "
        f"{np.mean(nmi['estimated']):.2f} ({len(nmi['oracle'])} and {len(nmi['estimated'])} "
        "runs)."
    )


def _search_gh_sentence(
    diffs: Sequence[dict[str, Any]], regimes: Sequence[plan_mod.Regime], regime: str
) -> str | None:
    in_search = [r for r in regime_goal_rows(diffs, regimes, regime) if r["probe"] == "knn"]
    if not in_search:
        return None
    return (
        "- SimCLR+GH in the search regimes, kNN Few deficit: "
        + "; ".join(f"{r['name']} {goal_change(r)}" for r in in_search)
        + "."
    )


def _choice_summary(rows_by_probe: dict[str, list[dict[str, Any]]], regime: str) -> str | None:
    choice = held_out_choice(*held_out_pairs(rows_by_probe, regime))
    return f"- Tuning GH without the test split. {choice_sentence(choice)}" if choice else None


def _geometry_sentence(geo_rows: Sequence[dict[str, Any]], regime: str) -> str | None:
    simclr = [
        r
        for r in geo_rows
        if r["group"] == "primary" and r["regime"] == regime and r["method"] == "simclr"
    ]
    pairs = geometry_pairs(simclr)
    if not pairs:
        return None
    ref, lt, gh = (
        float(np.mean([b["ref_cos_few_few"] for b, _ in pairs])),
        float(np.mean([b["cos_few_few"] for b, _ in pairs])),
        float(np.mean([g["cos_few_few"] for _, g in pairs])),
    )
    return (
        f"- Class-mean geometry: the Few classes' means sit closer together after long-tailed "
        f"SimCLR (mean cosine {lt:.3f}) than the same classes' after balanced pretraining "
        f"({ref:.3f}); +GH leaves them at {gh:.3f} ({len(pairs)} pairs)."
    )


def allocation_sentences(
    cells: Sequence[dict[str, Any]],
    diffs: Sequence[dict[str, Any]],
    rows_by_probe: dict[str, list[dict[str, Any]]],
    same_setting: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """The allocation study (issue 27) in a few sentences: its baselines' deficit, the setting
    the held-out images choose and what the test split says of it, the goal per method with
    that setting, the corrected oracle and the labels-as-targets diagnostic (with its deficit
    against balanced runs of the same targets, from ``same_setting``: :func:`.analysis.
    same_setting_cells`); none before the study has pairs."""
    regime = plan_mod.ALLOCATION.name
    base = find_cell(
        cells, group="allocation", regime=regime, method="simclr", gh=False, variant="", probe="knn"
    )
    goal = [r for r in allocation_goal_rows(diffs) if r["probe"] == "knn"]
    if base is None or not goal:
        return []
    out = [
        f"- Allocations beyond the paper (regime `{regime}`, bf16, own references): long-tailed "
        f"SimCLR's kNN Few deficit there is {pm(base['deficit_few_mean'], base['deficit_few_sd'])} "
        f"({base['runs']} runs, t = {num(deficit_t(base), '+.1f')})."
    ]
    choice = held_out_choice(*held_out_pairs(rows_by_probe, regime, ("allocation",)))
    if choice:
        out.append("- " + choice_sentence(choice))
    methods = [r for r in goal if not r["diagnostic"] and r["pairs"] >= MIN_PAIRS_FOR_T]
    if methods:
        best = min(methods, key=lambda r: r["change"])
        out.append(
            f"- Goal met by {sum(r['met'] for r in methods)} of {len(methods)} kNN cells of the "
            f"allocation study with {MIN_PAIRS_FOR_T}+ pairs; {_best_label(best, 'it')}: "
            f"{best['name']}, {goal_change(best)}; halving ruled out in "
            f"{sum(bool(r['halving_ruled_out']) for r in methods)} of them."
        )
    for r in goal:
        if r["diagnostic"] and "targets=labels" in r["name"]:
            same = same_targets_deficit(same_setting, r)
            out.append(
                f"- True classes as GH's targets in this regime (a diagnostic, no allocation): "
                f"{r['name']}, {goal_change(r)}; Many {r['many_change']:+.2f}, so the Few - Many "
                f"gap closes by {percent(r['gap_closed'])}." + (f" {same}" if same else "")
            )
        elif r["diagnostic"]:
            out.append(f"- Corrected oracle prior (a diagnostic): {r['name']}, {goal_change(r)}.")
    return out
