"""The quality report's markdown tables, each from the aggregated cells, paired differences,
run records or prior-check records it shows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from benchmarks.quality import plan as plan_mod
from benchmarks.quality.analysis import (
    PROBES,
    SAME_SETTING_KEYS,
    cell_key,
    find_cell,
    geometry_pairs,
)
from benchmarks.quality.formatting import (
    cell_name,
    critical_t_list,
    md_head,
    md_row,
    mean_sd_cell,
    num,
    percent,
    pm,
)
from benchmarks.quality.plan import RunSpec
from benchmarks.quality.prior_records import (
    checkpoint_kind,
    effective_ratio,
    estimates_of,
    prior_tracking,
    ratio_epochs,
    tracking_ratio,
)
from benchmarks.quality.selection import tested
from benchmarks.quality.stats import MIN_PAIRS_FOR_T, deficit_t, mean_sd, paired_t

from geoharmony.methods import display_name

__all__ = [
    "REPLICATION_PROBES",
    "assignment_table",
    "baseline_deficit_table",
    "geometry_table",
    "goal_table",
    "neighbourhood_table",
    "paired_table",
    "paper_table",
    "prior_table",
    "prior_tracking_table",
    "recovery_table",
    "regime_table",
    "replication_table",
    "same_setting_table",
    "selection_table",
    "timing_table",
]

# Improvement is "better is positive": accuracies up, Std and deficits down.
_LOWER_IS_BETTER = {
    "std",
    "deficit_many",
    "deficit_medium",
    "deficit_few",
    "deficit_few_minus_many",
}
_ROWS = (
    ("Many", "many"),
    ("Med", "medium"),
    ("Few", "few"),
    ("Std", "std"),
    ("Avg", "avg"),
    ("Deficit Many", "deficit_many"),
    ("Deficit Med", "deficit_medium"),
    ("Deficit Few", "deficit_few"),
    ("Few - Many deficit", "deficit_few_minus_many"),
)
# Pair counts whose critical |t| the paired tables' note lists.
_PAIRS_LISTED = (4, 6, 8, 10)


def paper_table(
    cells: Sequence[dict[str, Any]], probe: str, regime: str, group: str = "primary"
) -> str:
    """The paper's layout: every method, its +GH and the improvement, per statistic."""
    methods = [m for m in plan_mod.METHODS if find_cell(cells, group=group, probe=probe, method=m)]
    if not methods:
        return "_no finished runs yet_\n"
    head = ["", *[x for m in methods for x in (display_name(m), "+GH", "Improv.")]]
    lines = md_head(head)
    for label, key in _ROWS:
        row = [label]
        for m in methods:
            want = dict(group=group, regime=regime, probe=probe, method=m)
            base = find_cell(cells, **want, gh=False)
            gh = find_cell(cells, **want, gh=True)
            row.append(pm(base[f"{key}_mean"], base[f"{key}_sd"]) if base else "-")
            row.append(pm(gh[f"{key}_mean"], gh[f"{key}_sd"]) if gh else "-")
            if base and gh:
                d = gh[f"{key}_mean"] - base[f"{key}_mean"]
                row.append(num(-d if key in _LOWER_IS_BETTER else d, "+.2f"))
            else:
                row.append("-")
        lines.append(md_row(row))
    runs = ", ".join(
        f"{display_name(c['method'])}{'+GH' if c['gh'] else ''}: {c['runs']}"
        for c in cells
        if c["group"] == group and c["probe"] == probe
    )
    return "\n".join(lines) + f"\n\nRuns per column (class orders x seeds): {runs}.\n"


def paired_table(diffs: Sequence[dict[str, Any]], group: str) -> str:
    """Mean ± sd of the paired differences of every +GH cell of ``group``, with their t."""
    rows = [d for d in diffs if d["group"] == group]
    if not rows:
        return "_no finished pairs yet_\n"
    keys = ("deficit_few", "deficit_many", "deficit_few_minus_many", "std", "avg")
    lines = md_head(["method / variant", "probe", "pairs", *[f"Δ {k}" for k in keys], "t (Δ few)"])
    order = {p: i for i, p in enumerate(PROBES)}
    for d in sorted(rows, key=lambda d: (d["method"], d["variant"], order[d["probe"]])):
        name = cell_name(d["method"], True, d["variant"])
        vals = [pm(d[f"{k}_mean"], d[f"{k}_sd"]) for k in keys]
        t = paired_t(d["deficit_few_mean"], d["deficit_few_sd"], d["pairs"])
        lines.append(md_row([name, d["probe"], str(d["pairs"]), *vals, num(t, "+.1f")]))
    return (
        "\n".join(lines)
        + f"\n\nt = mean / (sd / sqrt(pairs)), from {MIN_PAIRS_FOR_T} pairs on; two-sided 5% "
        f"critical |t|: {critical_t_list(_PAIRS_LISTED, 'pairs')} (before any correction for "
        "the many cells compared).\n"
    )


def goal_table(rows: Sequence[dict[str, Any]], gap_goal: bool = False) -> str:
    """The goal's verdict per paired cell (:func:`.goal.goal_rows`); ``gap_goal`` adds the
    share of the Few - Many gap closed, which that goal judges."""
    if not rows:
        return "_no paired cells yet_\n"
    gap_head = ["share of Few - Many gap closed"] if gap_goal else []
    lines = md_head(
        [
            "+GH run",
            "probe",
            "pairs",
            "baseline Few deficit",
            "Δ Few deficit",
            "share closed",
            "share closed, 95% bound",
            "halving ruled out",
            "t",
            *gap_head,
            "Δ Std",
            "Δ Avg",
            "goal met",
        ]
    )
    for r in rows:
        gap = [percent(r["gap_closed"])] if gap_goal else []
        cols = [
            r["name"] + (" [diagnostic]" if r["diagnostic"] else ""),
            r["probe"],
            str(r["pairs"]),
            num(r["deficit"]),
            num(r["change"], "+.2f"),
            percent(r["closed"]),
            percent(r["closed_bound"]),
            {True: "yes", False: "no", None: "-"}[r["halving_ruled_out"]],
            num(r["t"], "+.1f"),
            *gap,
            num(r["std"], "+.2f"),
            num(r["avg"], "+.2f"),
            "yes" if r["met"] else "no",
        ]
        lines.append(md_row(cols))
    return "\n".join(lines) + "\n"


def regime_table(
    cells: Sequence[dict[str, Any]],
    regimes: Sequence[plan_mod.Regime],
    primary: str,
    planned: dict[str, int] | None = None,
) -> str:
    """Each regime's SimCLR deficits per probe; ``planned`` (regime -> runs) marks a regime
    whose runs are not all finished ("1 of 4")."""
    keys = ("deficit_many", "deficit_medium", "deficit_few", "deficit_few_minus_many")
    head = ["regime", "images", "probe", "runs", "Deficit Many", "Deficit Med", "Deficit Few"]
    lines = md_head([*head, "Few - Many", "t (Few)", "Avg"])
    found = False
    for regime in regimes:
        group = "primary" if regime.name == primary else "regime"
        counts = regime.counts()
        desc = (
            f"{regime.name}: rho {regime.imbalance_ratio:g}, {counts[0]} -> "
            f"{counts[-1]}, {regime.epochs} ep, width {regime.width:g}"
        )
        listed = False
        for probe in PROBES:
            want = dict(group=group, regime=regime.name, method="simclr", gh=False, variant="")
            c = find_cell(cells, **want, probe=probe)
            if c is None:
                continue
            found = listed = True
            row = [desc, str(sum(counts)), probe]
            row.append(_runs_of(c["runs"], (planned or {}).get(regime.name)))
            row += [pm(c[f"{k}_mean"], c[f"{k}_sd"]) for k in keys]
            row += [num(deficit_t(c), "+.1f"), pm(c["avg_mean"], c["avg_sd"])]
            lines.append(md_row(row))
        if not listed:  # declared but without a finished run and reference: say so
            lines.append(f"| {desc} | {sum(counts)} | - | 0 |" + " not run yet |" * 6)
    return ("\n".join(lines) + "\n") if found else "_no finished runs yet_\n"


def _runs_of(runs: int, planned: int | None) -> str:
    """``4``, or ``1 of 4 planned`` while a regime's runs are unfinished."""
    return f"{runs} of {planned} planned" if planned and runs < planned else str(runs)


def selection_table(held: dict[str, list[dict[str, Any]]], test: dict[str, dict[str, Any]]) -> str:
    """Held-out and test Δ of every candidate setting (:func:`.selection.held_out_pairs`)."""
    keys = ("deficit_few", "avg")
    head = ["SimCLR+GH setting", "pairs", *[f"held-out Δ {k}" for k in keys]]
    lines = md_head([*head, *[f"test Δ {k}" for k in keys]])
    for variant in sorted(held, key=lambda v: (v != "", v)):
        members = held[variant]
        on_test = tested(members, test)
        vals = [pm(*mean_sd(p[k] for p in members)) for k in keys]
        vals += [pm(*mean_sd(p[k] for p in on_test)) for k in keys]
        name = variant or "preset (paper-faithful)"
        lines.append(md_row([name, str(len(members)), *vals]))
    return "\n".join(lines)


def prior_table(runs: dict[str, dict[str, Any]]) -> str:
    """Final estimated prior of every +GH run against the true class prior, per kind of run."""
    rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for entry in runs.values():
        spec: RunSpec = entry["spec"]
        prior = entry["metrics"].get("prior")
        if not spec.gh or prior is None:
            continue
        hist = entry["metrics"].get("history", [])
        share = hist[-1].get("prior_max_share") if hist else None
        k = entry["metrics"]["config"]["gh"]["num_anchors"]
        name = entry["metrics"]["config"]["gh"]["prior"]
        if isinstance(name, dict):  # configs since 2026-12-07: the gh.prior section
            name = name["name"]
        label = f"{name}, K={k}" + (f" [{spec.variant}]" if spec.variant else "")
        label += " (balanced data)" if spec.balanced else ""
        rows.setdefault((spec.regime, spec.method, label), []).append({**prior, "share": share})
    if not rows:
        return "_no finished +GH runs yet_\n"
    head = ["regime", "method", "prior (K)", "runs", "effective anchors"]
    lines = md_head([*head, "true effective classes", "largest share", "KL(true || est.)"])
    keys = ("effective_number_estimated", "effective_number_true", "share", "kl")
    for (regime, method, label), items in sorted(rows.items()):
        cols = [mean_sd_cell([i.get(key) for i in items]) for key in keys]
        lines.append(md_row([regime, display_name(method), label, str(len(items)), *cols]))
    return "\n".join(lines) + "\n"


_GEOMETRY_TITLES = {
    "cos_many_many": "cos Many-Many",
    "cos_many_few": "cos Many-Few",
    "cos_few_few": "cos Few-Few",
    "etf_deviation": "ETF deviation",
    "effective_rank": "effective rank",
}


def geometry_table(geo_rows: Sequence[dict[str, Any]], regime: str) -> str:
    """Class-mean geometry per cell of ``regime`` (mean ± sd over runs), the balanced reference
    grouped as the SimCLR baselines, and each +GH cell's paired change of the Few-Few cosine."""
    rows = [
        r for r in geo_rows if r["regime"] == regime and r["group"] in ("primary", "sensitivity")
    ]
    if not rows:
        return "_no finished runs yet_\n"
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault(cell_key(r), []).append(r)
    few_few_change = {
        g["run_id"]: g["cos_few_few"] - b["cos_few_few"] for b, g in geometry_pairs(rows)
    }
    lines = md_head(["runs", "n", *_GEOMETRY_TITLES.values(), "Δ cos Few-Few (paired)"])
    refs = cells.get(("primary", regime, "simclr", False, ""), [])
    if refs:
        vals = [pm(*mean_sd(r[f"ref_{k}"] for r in refs), ".3f") for k in _GEOMETRY_TITLES]
        lines.append(
            "| balanced ref. (grouped as SimCLR) | " + f"{len(refs)} | " + " | ".join(vals) + " | |"
        )
    for (_, _, method, gh, variant), members in sorted(
        cells.items(), key=lambda kv: (kv[0][2], kv[0][0] != "primary", kv[0][4], kv[0][3])
    ):
        vals = [pm(*mean_sd(r[k] for r in members), ".3f") for k in _GEOMETRY_TITLES]
        paired = [few_few_change[r["run_id"]] for r in members if r["run_id"] in few_few_change]
        delta = pm(*mean_sd(paired), ".3f") if paired else ""
        lines.append(md_row([cell_name(method, gh, variant), str(len(members)), *vals, delta]))
    return "\n".join(lines) + "\n"


def recovery_table(records: Sequence[dict[str, Any]]) -> str:
    """Effective number / NMI of every estimator, per checkpoint kind (mean ± sd over runs), and
    the SimCLR / balanced-reference ratio of effective numbers per epoch beside the true one."""
    kinds = sorted({checkpoint_kind(r) for r in records}, key=lambda k: ("ref" in k, k))
    estimators = list(dict.fromkeys(name for r in records for name in r["estimates"]))
    ratios = ratio_epochs(records)
    true_eff = mean_sd_cell([r["true_effective_classes"] for r in records if "ref" not in r["run"]])
    lines = md_head(["estimator (K = 10 groups)", *kinds, *[f"SimCLR / ref. @{e}" for e in ratios]])
    for name in estimators:
        row = [name]
        for kind in kinds:
            found = estimates_of(records, kind, name)
            row.append(
                f"{mean_sd_cell([m['effective_number'] for m in found])} / "
                f"{mean_sd_cell([m['nmi'] for m in found])}"
            )
        row += [num(tracking_ratio(records, e, name)) for e in ratios]
        lines.append(md_row(row))
    if ratios:
        truth = [num(tracking_ratio(records, e, None)) for e in ratios]
        lines.append(md_row(["true class prior", *["" for _ in kinds], *truth]))
    runs = ", ".join(f"{k}: {sum(checkpoint_kind(r) == k for r in records)}" for k in kinds)
    return (
        "\n".join(lines)
        + f"\n\nCells: effective number of groups / NMI of the groups with the labels. The true "
        f"class prior of the long-tailed runs has {true_eff} effective classes (10 for the "
        f"balanced reference). Checkpoints per column: {runs}.\n"
    )


def assignment_table(records: Sequence[dict[str, Any]]) -> str:
    """How +GH runs' Sinkhorn allocation treats classes (mean ± sd over runs)."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("assignments"):
            kinds.setdefault(checkpoint_kind(r), []).append(r["assignments"])
    if not kinds:
        return "_no +GH checkpoints checked yet_\n"
    head = ["run", "n", "prior", "prior eff. anchors", "assignment entropy", "NMI(anchor, label)"]
    lines = md_head(
        [
            *head,
            "anchors per Many class",
            "anchors per Few class",
            "Few images on Many-owned anchors",
        ]
    )
    for kind, items in sorted(kinds.items()):
        cols = [
            mean_sd_cell([i[key] for i in items])
            for key in ("prior_effective_anchors", "assignment_entropy", "nmi_assigned_anchor")
        ]
        cols += [mean_sd_cell([i["anchors_per_class"][g] for i in items]) for g in ("many", "few")]
        cols.append(mean_sd_cell([i["few_on_many_owned_anchors"] for i in items]))
        prior = f"{items[0]['prior']}, K={items[0]['anchors']}"
        lines.append(md_row([kind, str(len(items)), prior, *cols]))
    return "\n".join(lines) + "\n"


REPLICATION_PROBES = ("knn", "fewshot100", "linear")
_CELL_FIELDS = ("group", "regime", "method", "gh", "variant", "probe")


def replication_table(cells: Sequence[dict[str, Any]], archived: Sequence[dict[str, Any]]) -> str:
    """Each cell with runs both in an archived ``results.json`` (``archived``) and in the
    records, side by side (mean ± sd over its runs)."""
    old = {tuple(r[k] for k in _CELL_FIELDS): r for r in archived}
    head = ["cell", "probe", "archived runs", "runs", "archived Few deficit", "Few deficit"]
    lines = md_head([*head, "archived Many deficit", "Many deficit", "archived Avg", "Avg"])
    shown = [c for c in cells if c["probe"] in REPLICATION_PROBES]
    for c in sorted(shown, key=lambda c: (c["group"] != "primary", _cell_key_sort(c))):
        before = old.get(tuple(c[k] for k in _CELL_FIELDS))
        if before is None:
            continue
        row = [cell_name(c["method"], c["gh"], c["variant"]), c["probe"]]
        row += [str(before["runs"]), str(c["runs"])]
        for key in ("deficit_few", "deficit_many", "avg"):
            # results.json writes an undefined sd as null, which pm shows as a bare mean.
            row += [pm(before[f"{key}_mean"], before[f"{key}_sd"])]
            row += [pm(c[f"{key}_mean"], c[f"{key}_sd"])]
        lines.append(md_row(row))
    return "\n".join(lines) + "\n" if len(lines) > 2 else "_no cell in common yet_\n"


def _cell_key_sort(c: dict[str, Any]) -> tuple[Any, ...]:
    method_rank = plan_mod.METHODS.index(c["method"]) if c["method"] in plan_mod.METHODS else 99
    return (c["regime"], method_rank, c["variant"], c["gh"], REPLICATION_PROBES.index(c["probe"]))


def timing_table(runs: dict[str, dict[str, Any]]) -> str:
    """Median train, eval and few-shot seconds per kind of run."""
    cells: dict[tuple[str, str, str, str], list[tuple[float, float, float]]] = {}
    for entry in runs.values():
        spec: RunSpec = entry["spec"]
        m = entry["metrics"]
        # A paired run's history starts with its baseline's epochs; count only its own.
        first_own_epoch = (spec.pair_epoch or 0) + 1 if spec.init_from else 1
        own = [h for h in m.get("history", []) if h.get("epoch", 0) >= first_own_epoch]
        train_seconds = sum(h.get("seconds", 0.0) for h in own) if own else math.nan
        probes = sum(entry["timing"].get("probes", [])) if entry["timing"] else math.nan
        label = (
            "+GH (paired, 2nd half only)"
            if spec.init_from
            else ("balanced ref." if spec.balanced else "baseline")
        )
        cells.setdefault((spec.group, spec.regime, spec.method, label), []).append(
            (train_seconds, m.get("eval_seconds", math.nan), probes)
        )
    # Medians over runs: a run paused by hand (or starved by other jobs) skews a mean.
    head = ["group", "regime", "method", "run", "runs", "train s (median)", "eval s", "few-shot s"]
    lines = md_head(head)
    for key, vals in sorted(cells.items()):
        arr = np.asarray(vals, dtype=np.float64)
        medians = [
            num(float(np.nanmedian(arr[:, i])), ".0f") if not np.isnan(arr[:, i]).all() else "-"
            for i in range(3)
        ]
        lines.append(md_row([*key[:2], display_name(key[2]), key[3], str(len(vals)), *medians]))
    return "\n".join(lines) + "\n"


def baseline_deficit_table(cells: Sequence[dict[str, Any]], group: str, regime: str) -> str:
    """The long-tailed baselines' deficits against the balanced reference, per method and probe
    (mean ± sd over runs): what a +GH run of the cell could close."""
    rows = [
        c
        for c in cells
        if c["group"] == group and c["regime"] == regime and not c["gh"] and not c["variant"]
    ]
    if not rows:
        return "_no finished baselines yet_\n"
    order = {p: i for i, p in enumerate(PROBES)}
    keys = ("deficit_few", "deficit_many", "deficit_few_minus_many", "avg")
    lines = md_head(["method", "probe", "runs", *[k.replace("_", " ") for k in keys], "t (Few)"])
    for c in sorted(rows, key=lambda c: (c["method"], order[c["probe"]])):
        vals = [pm(c[f"{k}_mean"], c[f"{k}_sd"]) for k in keys]
        t = deficit_t(c)
        lines.append(
            md_row([display_name(c["method"]), c["probe"], str(c["runs"]), *vals, num(t, "+.1f")])
        )
    return "\n".join(lines) + "\n"


def same_setting_table(
    rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]], group: str, regime: str
) -> str:
    """Per +GH setting of ``regime`` that also ran on balanced data (``rows``:
    :func:`.analysis.same_setting_cells`): its long-tailed runs' deficits against the balanced
    run of the same setting, beside the plain baselines' deficits against the plain reference
    (the long tail's cost without GH)."""
    if not rows:
        return "_no setting has both long-tailed and balanced +GH runs yet_\n"
    order = {p: i for i, p in enumerate(PROBES)}
    names = [k.replace("_", " ") for k in SAME_SETTING_KEYS]
    head = ["SimCLR+GH setting", "probe", "runs", *names, *(f"baseline {n}" for n in names)]
    lines = md_head([*head, "Few deficit left"])
    for r in sorted(rows, key=lambda r: (r["variant"], order[r["probe"]])):
        base = find_cell(
            cells,
            group=group,
            regime=regime,
            method=r["method"],
            gh=False,
            variant="",
            probe=r["probe"],
        )
        ours = [pm(r[f"{k}_mean"], r[f"{k}_sd"]) for k in SAME_SETTING_KEYS]
        theirs = [
            pm(base[f"{k}_mean"], base[f"{k}_sd"]) if base else "-" for k in SAME_SETTING_KEYS
        ]
        left = _share(r["deficit_few_mean"], base["deficit_few_mean"]) if base else "-"
        lines.append(md_row([r["variant"], r["probe"], str(r["runs"]), *ours, *theirs, left]))
    return (
        "\n".join(lines)
        + "\n\nBaseline: long-tailed SimCLR against the plain balanced reference (same orders "
        + "and seeds). Few deficit left: the setting's Few deficit / the baseline's.\n"
    )


def _share(part: float, whole: float) -> str:
    """``part / whole`` as a percentage; ``-`` unless ``whole`` is positive."""
    return percent(part / whole) if whole > 0 else "-"


def prior_tracking_table(runs: dict[str, dict[str, Any]], regime: str) -> str:
    """Per +GH setting of ``regime``: the final prior's effective number on long-tailed and on
    balanced data, and their ratio (the true class prior's ratio is the target; 1 means the
    estimate is blind to the imbalance)."""
    rows, true_ratio = prior_tracking(runs, regime)
    if not rows:
        return "_no setting has both long-tailed and balanced +GH runs yet_\n"
    lines = md_head(
        [
            "SimCLR+GH setting",
            "runs (LT / balanced)",
            "effective anchors, LT",
            "effective anchors, balanced",
            "ratio LT / balanced",
        ]
    )
    for variant, d in sorted(rows.items()):
        ratio = effective_ratio(d)
        cols = [
            f"{len(d[False])} / {len(d[True])}",
            mean_sd_cell(d[False]),
            mean_sd_cell(d[True]),
            num(ratio),
        ]
        lines.append(md_row([variant, *cols]))
    return (
        "\n".join(lines)
        + "\n\nThe true class prior's effective number, long-tailed / balanced: "
        + f"{num(true_ratio)}.\n"
    )


def neighbourhood_table(records: Sequence[dict[str, Any]]) -> str:
    """Per kind of checkpoint (the final +GH ones pooled) and class order, mean ± sd over its
    prior-check records: the share of a Few / Many pretraining image's 10 nearest pretraining
    images of its own class (backbone features), and its local-density rank by the mean cosine
    to those neighbours (0 sparsest, 0.5 like any image), in each feature space."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("neighbour_purity") or r.get("local_density"):
            kind = "+GH final checkpoints" if r.get("assignments") else checkpoint_kind(r)
            groups.setdefault((kind, r["run"].split("__")[-2]), []).append(r)
    if not groups:
        return "_no neighbourhood checks yet_\n"
    spaces = sorted({s for r in records for s in r.get("local_density") or {}})
    head = ["checkpoints", "class order", "n", "own-class neighbours, Few", "own-class, Many"]
    lines = md_head([*head, *(f"density rank {g}, {s}" for s in spaces for g in ("Few", "Many"))])
    for (kind, order), items in sorted(groups.items()):
        purity = [(i.get("neighbour_purity") or {}).get("backbone") or {} for i in items]
        cols = [mean_sd_cell([p.get(g) for p in purity]) for g in ("few", "many")]
        for space in spaces:
            density = [((i.get("local_density") or {}).get(space) or {}) for i in items]
            cols += [mean_sd_cell([d.get(g) for d in density]) for g in ("few", "many")]
        lines.append(md_row([kind, order, str(len(items)), *cols]))
    return "\n".join(lines) + "\n"
