"""Issue 37's study: the paper's training recipe against the old one, and the schedule ablation.

Two tables, computed from the run summaries of :mod:`.analysis` (no prose):

- :func:`recipe_table`: per method and probe, the baseline's Few / Many deficits and Few - Many
  gap and GH's paired change of each, in the old recipe's bf16 regime (``plan.ALLOCATION``) beside
  the paper recipe's (``plan.RECIPE``): the same data, epochs and precision.
- :func:`schedule_split` / :func:`schedule_table`: the paper-style difference (+GH on the
  two-stage schedule minus the baseline on the single cosine, as the paper's rows compare them)
  split per (seed, class order) into the schedule's part (baseline two-stage minus baseline
  single cosine) and GH's part (+GH minus its paired baseline, both two-stage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.quality import plan as plan_mod
from benchmarks.quality.analysis import PROBES, find_cell
from benchmarks.quality.formatting import md_head, md_row, pm
from benchmarks.quality.stats import mean_sd, paired_t

__all__ = ["SPLIT_KEYS", "recipe_table", "schedule_split", "schedule_table"]

TABLE_PROBES = ("knn", "linear")
DEFICITS = ("deficit_few", "deficit_many", "deficit_few_minus_many")
SPLIT_KEYS = ("few", "many", "avg", "std", *DEFICITS)
PARTS = ("paper_style", "schedule", "gh")


def recipe_table(cells: Sequence[dict[str, Any]], diffs: Sequence[dict[str, Any]]) -> str:
    """Baseline deficits and GH's paired change, old recipe beside the paper's, per method."""
    regimes = (
        ("allocation", plan_mod.ALLOCATION.name, "allocation=balanced"),
        ("recipe", plan_mod.RECIPE.name, ""),
    )
    head = ["method", "probe", "recipe", "runs"]
    head += ["Few def.", "Many def.", "Few - Many", "pairs", "Δ Few def.", "Δ gap", "t (Δ Few)"]
    lines = md_head(head)
    for method in plan_mod.METHODS:
        for probe in TABLE_PROBES:
            for group, regime, gh_variant in regimes:
                where = dict(group=group, regime=regime, method=method, probe=probe)
                base = find_cell(cells, **where, gh=False, variant="")
                diff = find_cell(diffs, **where, gh=True, variant=gh_variant)
                if base is None and diff is None:
                    continue
                row = [method, probe, plan_mod.recipe_of(regime)]
                row.append(str(base["runs"]) if base else "0")
                row += [pm(base[f"{k}_mean"], base[f"{k}_sd"]) if base else "-" for k in DEFICITS]
                row.append(str(diff["pairs"]) if diff else "0")
                if diff is None:
                    lines.append(md_row([*row, "-", "-", "-"]))
                    continue
                for key in ("deficit_few", "deficit_few_minus_many"):
                    row.append(pm(diff[f"{key}_mean"], diff[f"{key}_sd"]))
                t = paired_t(diff["deficit_few_mean"], diff["deficit_few_sd"], diff["pairs"])
                row.append("-" if math.isnan(t) else f"{t:+.1f}")
                lines.append(md_row(row))
    if len(lines) == 2:
        return "_no finished runs of either recipe yet_\n"
    return "\n".join(lines) + "\n"


def schedule_split(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per probe, the mean / sd over (seed, class order) of each ``SPLIT_KEYS`` difference:
    ``paper_style`` (+GH two-stage minus baseline single cosine), ``schedule`` (baseline
    two-stage minus baseline single cosine) and ``gh`` (+GH minus baseline, both two-stage).
    ``paper_style`` = ``schedule`` + ``gh`` in every triple, so also in the means."""
    single_label = plan_mod.SINGLE_COSINE[0]
    triples: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["group"] != "recipe" or r["method"] != "simclr":
            continue
        arm = "gh" if r["gh"] else "single" if r["variant"] == single_label else "base"
        if arm != "gh" or r["variant"] == "":
            triples.setdefault((r["probe"], r["class_order"], r["seed"]), {})[arm] = r
    out: dict[str, list[dict[str, float]]] = {}
    for (probe, _, _), arms in sorted(triples.items()):
        if len(arms) < 3:
            continue
        single, base, gh = arms["single"], arms["base"], arms["gh"]
        diffs = {}
        for key in SPLIT_KEYS:
            diffs[f"paper_style_{key}"] = gh[key] - single[key]
            diffs[f"schedule_{key}"] = base[key] - single[key]
            diffs[f"gh_{key}"] = gh[key] - base[key]
        out.setdefault(probe, []).append(diffs)
    split = []
    for probe, members in sorted(out.items(), key=lambda kv: PROBES.index(kv[0])):
        rec: dict[str, Any] = {"probe": probe, "triples": len(members)}
        for part in PARTS:
            for key in SPLIT_KEYS:
                name = f"{part}_{key}"
                rec[f"{name}_mean"], rec[f"{name}_sd"] = mean_sd(m[name] for m in members)
        split.append(rec)
    return split


def schedule_table(split: Sequence[dict[str, Any]]) -> str:
    """:func:`schedule_split` as a table: a row per probe and part, a column per statistic."""
    if not split:
        return "_no complete (single cosine, two-stage, +GH) triples yet_\n"
    titles = {
        "paper_style": "+GH two-stage − baseline single cosine (the paper's comparison)",
        "schedule": "schedule: baseline two-stage − baseline single cosine",
        "gh": "GH: +GH − baseline, both two-stage",
    }
    lines = md_head(["probe", "part", "triples", *[f"Δ {k}" for k in SPLIT_KEYS]])
    for rec in split:
        for part in PARTS:
            vals = [pm(rec[f"{part}_{k}_mean"], rec[f"{part}_{k}_sd"]) for k in SPLIT_KEYS]
            lines.append(md_row([rec["probe"], titles[part], str(rec["triples"]), *vals]))
    return "\n".join(lines) + "\n"
