"""Write docs/results.md, docs/results.json and docs/figures/ from the finished runs' records.

Everything numeric in the report is computed from the committed run records (:mod:`.records`)
by :mod:`.analysis`, :mod:`.stats`, :mod:`.goal` and :mod:`.selection`; nothing is typed by
hand. This module loads the records and writes the files; :mod:`.sections` words each section,
with the tables of :mod:`.tables`, the sentences of :mod:`.summary` and :mod:`.shortfall` (why
the allocation study misses its goal) and the figures of :mod:`.figures`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.quality import plan as plan_mod
from benchmarks.quality import sections
from benchmarks.quality.analysis import (
    PROBES,
    STAT_KEYS,
    VALIDATION_PROBE,
    aggregate,
    geometry_summaries,
    paired_differences,
    run_summaries,
    same_setting_cells,
)
from benchmarks.quality.figures import make_figures
from benchmarks.quality.goal import goal_rows
from benchmarks.quality.plan import RunSpec
from benchmarks.quality.prior_records import load_prior_checks
from benchmarks.quality.records import load_records
from benchmarks.quality.sections import Study

__all__ = ["results_records", "write_report"]


def write_report(
    plan: list[RunSpec],
    store: Path,
    docs: Path,
    quick: bool = False,
    gpu_store: Path | None = None,
) -> dict[str, Any]:
    """Generate the report from the records in ``store`` of every finished run of ``plan`` (and
    of the GPU plan in ``gpu_store``, when given)."""
    study = _study(plan, store, quick, gpu_store)
    made = make_figures(study.runs, study.rows_by_probe, docs / "figures", study.regime.name)
    docs.mkdir(parents=True, exist_ok=True)
    records = results_records(study.cells, "fashion_mnist-lt")
    (docs / "results.json").write_text(json.dumps(records, indent=1) + "\n")
    parts = [
        sections.header(study),
        sections.summary_section(study),
        sections.replication_section(study.cells, docs),
        sections.protocol_section(study),
        sections.regime_search_section(study),
        sections.regime_gh_section(study.diffs, study.regimes, study.regime.name),
        sections.main_table_section(study),
        sections.goal_section(study),
        sections.sensitivity_section(study),
        sections.allocation_section(study),
        sections.recipe_section(study),
        sections.prior_section(study),
        [] if quick else sections.prior_check_section(_outside_allocation(study.prior_records)),
        sections.geometry_section(study),
        [] if quick else sections.gpu_section(study.cells, study.diffs),
        sections.figures_section(made),
        sections.commands_section(study),
        sections.machine_section(study.runs),
        sections.differences_section(study.regime),
    ]
    (docs / "results.md").write_text("\n".join(line for part in parts for line in part))
    return {"runs": len(study.runs), "cells": len(study.cells), "figures": made}


def _study(plan: list[RunSpec], store: Path, quick: bool, gpu_store: Path | None) -> Study:
    """Load the records and compute everything the sections show."""
    runs = load_records(plan, store)
    if gpu_store is not None:
        runs |= load_records(plan_mod.build_plan(gpu=True), gpu_store)
    rows_by_probe = {p: run_summaries(runs, p) for p in (*PROBES, VALIDATION_PROBE)}
    rows = [r for p in PROBES for r in rows_by_probe[p]]
    regime = plan_mod.QUICK_REGIME if quick else plan_mod.PRIMARY
    diffs = paired_differences(rows)
    return Study(
        plan=plan,
        store=store,
        quick=quick,
        runs=runs,
        rows_by_probe=rows_by_probe,
        cells=aggregate(rows),
        diffs=diffs,
        geo_rows=geometry_summaries(runs),
        goal=goal_rows(diffs, regime.name),
        prior_records=[] if quick else load_prior_checks(runs),
        same_setting=same_setting_cells(runs, plan_mod.ALLOCATION.name),
        regime=regime,
        regimes=(
            [plan_mod.QUICK_REGIME, plan_mod.QUICK_SEARCH]
            if quick
            else [plan_mod.PRIMARY, *plan_mod.REGIMES]
        ),
    )


def results_records(cells: Sequence[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    """docs/results.json: one record per (cell, probe) with the stable schema of issue 7."""
    records = []
    for c in cells:
        rec: dict[str, Any] = {
            "dataset": dataset,
            "imbalance_ratio": c["imbalance_ratio"],
            "method": c["method"],
            "gh": bool(c["gh"]),
            "seeds": c["seeds"],
            "primary": c["group"] == "primary",
            "probe": c["probe"],
            "group": c["group"],
            "regime": c["regime"],
            "recipe": plan_mod.recipe_of(c["regime"]),
            "variant": c["variant"],
            "runs": c["runs"],
            "class_orders": c["class_orders"],
        }
        for key in STAT_KEYS:
            for part in ("mean", "sd"):
                v = c[f"{key}_{part}"]
                rec[f"{key}_{part}"] = None if v is None or math.isnan(v) else round(v, 4)
        records.append(rec)
    return records


def _outside_allocation(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prior-check records of the runs before the allocation study (it has its own section)."""
    return [r for r in records if r["run"].split("__")[1] != plan_mod.ALLOCATION.name]
