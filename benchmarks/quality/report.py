"""Write docs/results.md, docs/results.json, docs/figures/ and the package's study-noise file from
the finished runs' records.

docs/results.md has two parts, split by one marker line (:data:`MARKER`):

- Above it, a reading written by hand: what the numbers mean, dated, naming the records it read.
  ``report`` never writes that part. It reads it back from the existing file and writes it out
  again verbatim, byte for byte (a stub where there is no file, or no marker in it).
- Below it, everything generated: the records read, a handful of computed summary bullets
  (:mod:`.summary`), the tables (:mod:`.tables`, :mod:`.recipe`) and goal rows (:mod:`.goal`),
  each under a one-line caption (:mod:`.sections`), and the figures (:mod:`.figures`). Every
  number there comes from the records through :mod:`.analysis`, :mod:`.stats`, :mod:`.goal` and
  :mod:`.selection`; nothing is typed by hand.

One file rather than a hand-written page that links to a generated one: a reader opens one page
and finds the reading above the tables it cites, and a regeneration shows in ``git diff`` as
changed numbers under an unchanged reading, which is the cue to check that the reading still
holds.

The study-noise file (``src/geoharmony/eval/study_noise.json``, shipped as package data) is what
``geoharmony compare --reference`` reads to put a user's runs beside the study's seed noise
(:mod:`geoharmony.eval.reading`): per method and probe of the primary regime, the Few deficit of
one run without and with GH, GH's paired change, and the regime's settings. The full report into
the repository's own docs/ writes it there; any other report (``--quick``, another ``--docs``)
writes it beside its results.md, so that a smoke or test report never changes what the package
ships.
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
    SIZED_KNN_PROBE,
    STAT_KEYS,
    VALIDATION_PROBE,
    aggregate,
    find_cell,
    geometry_summaries,
    paired_differences,
    run_summaries,
    same_setting_cells,
)
from benchmarks.quality.figures import make_figures
from benchmarks.quality.formatting import shown
from benchmarks.quality.goal import goal_rows
from benchmarks.quality.plan import RunSpec
from benchmarks.quality.prior_records import load_prior_checks
from benchmarks.quality.records import REPO, load_records
from benchmarks.quality.sections import Study

from geoharmony.config import Config, to_dict
from geoharmony.eval.probes import PRETRAINING_PROBES as COMPARE_PROBES
from geoharmony.eval.reading import SETTING_PATHS, setting_value
from geoharmony.methods import display_name

__all__ = [
    "MARKER",
    "NOISE_FILE",
    "kept_reading",
    "noise_path",
    "results_records",
    "study_noise",
    "write_report",
]

MARKER = (
    "<!-- Above this line: the hand-written reading, kept verbatim by `python -m "
    "benchmarks.quality report`. Below it: generated from the run records (edits are lost). -->"
)
# The hand-written part of a report that has none yet.
STUB = (
    "# Quality results\n\n_No reading written yet: write it above the marker line below; "
    "`report` keeps it._\n\n"
)
NOISE_FILE = REPO / "src" / "geoharmony" / "eval" / "study_noise.json"


def write_report(
    plan: list[RunSpec],
    store: Path,
    docs: Path,
    quick: bool = False,
    gpu_store: Path | None = None,
    noise_file: Path | None = None,
) -> dict[str, Any]:
    """Generate the report from the records in ``store`` of every finished run of ``plan`` (and
    of the GPU plan in ``gpu_store``, when given), keeping results.md's hand-written reading;
    the study-noise file goes to ``noise_file`` (default: :func:`noise_path`)."""
    study = _study(plan, store, quick, gpu_store)
    made = make_figures(study.runs, study.rows_by_probe, docs / "figures", study.regime.name)
    docs.mkdir(parents=True, exist_ok=True)
    records = results_records(study.cells, "fashion_mnist-lt")
    (docs / "results.json").write_text(json.dumps(records, indent=1) + "\n")
    reading = kept_reading(docs / "results.md")
    generated = "\n".join(line for part in _parts(study, docs, made) for line in part)
    page = (STUB if reading is None else reading) + MARKER + "\n\n" + generated
    (docs / "results.md").write_bytes(page.encode("utf-8"))
    noise = noise_file or noise_path(docs, quick)
    noise.write_text(json.dumps(study_noise(study), indent=1) + "\n")
    return {
        "runs": len(study.runs),
        "cells": len(study.cells),
        "figures": made,
        "reading": "stub (no marker found)" if reading is None else "kept",
        "noise": shown(noise),
    }


def _parts(study: Study, docs: Path, made: list[str]) -> list[list[str]]:
    """The generated sections, in the order of the page."""
    return [
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
        sections.glyph_section(study),
        sections.prior_section(study),
        [] if study.quick else sections.prior_check_section(_outside_allocation(study)),
        sections.geometry_section(study),
        [] if study.quick else sections.gpu_section(study.cells, study.diffs),
        sections.figures_section(made),
        sections.commands_section(study),
        sections.machine_section(study.runs),
    ]


def kept_reading(path: Path) -> str | None:
    """The hand-written part of the results.md at ``path``: every byte before the marker line;
    None without the file or without a marker line in it."""
    if not path.is_file():
        return None
    # Bytes decoded as they are: read_text would turn a CRLF into LF.
    lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.rstrip("\r\n") == MARKER), None)
    return None if at is None else "".join(lines[:at])


def noise_path(docs: Path, quick: bool) -> Path:
    """Where a report into ``docs`` writes its study-noise file: the package's own for the full
    report into the repository's docs/, beside results.md for any other."""
    if not quick and docs.resolve() == (REPO / "docs").resolve():
        return NOISE_FILE
    return docs / "study_noise.json"


def _study(plan: list[RunSpec], store: Path, quick: bool, gpu_store: Path | None) -> Study:
    """Load the records and compute everything the sections show."""
    runs = load_records(plan, store)
    if gpu_store is not None:
        runs |= load_records(plan_mod.build_plan(gpu=True), gpu_store)
    extra = (VALIDATION_PROBE, SIZED_KNN_PROBE)
    rows_by_probe = {p: run_summaries(runs, p) for p in (*PROBES, *extra)}
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
                rec[f"{key}_{part}"] = _rounded(c[f"{key}_{part}"])
        records.append(rec)
    return records


def study_noise(s: Study) -> dict[str, Any]:
    """The study-noise file (the layout :mod:`geoharmony.eval.reading` reads): the records it
    comes from, the primary regime's description and settings, and per method the Few deficit
    noise of each probe that ``compare --reference`` reads."""
    methods = {m: entry for m in plan_mod.METHODS if (entry := _method_noise(s, m))}
    return {
        "written_by": f"python -m benchmarks.quality report{s.flag}",
        "records": f"{shown(s.store)}: group primary, regime {s.regime.name}, newest {s.newest}",
        "regime": _regime_description(s),
        "methods": methods,
    }


def _method_noise(s: Study, method: str) -> dict[str, Any]:
    """Per probe: the Few deficit of one run without GH (``baseline``) and with it (``gh``),
    mean and sd over the primary cell's runs, and GH's paired change (``change``); empty
    without any. A spread needs two runs: one run has no sd, so it is left out."""
    probes: dict[str, Any] = {}
    for probe in COMPARE_PROBES:
        where = dict(group="primary", regime=s.regime.name, method=method, variant="", probe=probe)
        arms = {
            "baseline": _spread(find_cell(s.cells, **where, gh=False), "runs"),
            "gh": _spread(find_cell(s.cells, **where, gh=True), "runs"),
            "change": _spread(find_cell(s.diffs, **where, gh=True), "pairs"),
        }
        if any(arms.values()):
            probes[probe] = {arm: spread for arm, spread in arms.items() if spread}
    return {"display_name": display_name(method), **probes} if probes else {}


def _spread(cell: dict[str, Any] | None, count: str) -> dict[str, Any] | None:
    """``{"mean", "sd", count}`` of a cell's Few deficit; None without a cell or an sd."""
    if cell is None or _rounded(cell["deficit_few_sd"]) is None:
        return None
    mean, sd = _rounded(cell["deficit_few_mean"]), _rounded(cell["deficit_few_sd"])
    return {"mean": mean, "sd": sd, count: cell[count]}


def _regime_description(s: Study) -> dict[str, Any]:
    """The primary regime as its long-tailed runs' metrics.json files hold it: the data source
    and data set, the settings a user's run is compared on (:data:`geoharmony.eval.reading.
    SETTING_PATHS`), and a one-line description of them."""
    metrics = [
        e["metrics"]
        for e in s.runs.values()
        if e["spec"].group == "primary" and e["spec"].regime == s.regime.name
    ]
    sources = {str(m.get("data", {}).get("source", "")).split(":")[0] for m in metrics}
    datasets = {str(m.get("dataset")) for m in metrics if m.get("dataset")}
    settings = _settings(metrics)
    dataset = datasets.pop() if len(datasets) == 1 else "its data set"
    said = ", ".join(f"{name} {_shown_value(v)}" for name, v in settings.items())
    return {
        "name": s.regime.name,
        "data_source": sources.pop() if len(sources) == 1 and "" not in sources else None,
        "dataset": dataset,
        "description": f"{dataset}: {said}" if said else dataset,
        "settings": settings,
    }


def _settings(metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each setting of :data:`~geoharmony.eval.reading.SETTING_PATHS` that every run holding it
    agrees on. A GH option no run holds is newer than the runs, which ran what its default
    (the paper's behaviour) does now."""
    defaults = to_dict(Config())
    out = {}
    for name, path in SETTING_PATHS.items():
        values = [v for m in metrics if (v := setting_value(m, path)) is not None]
        if not values and path[:2] == ("config", "gh"):
            values = [v for v in [setting_value(defaults, path[1:])] if v is not None]
        if len({json.dumps(v) for v in values}) == 1:
            out[name] = values[0]
    return out


def _shown_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _rounded(value: float | None) -> float | None:
    """``value`` to 4 decimals; None for a missing or undefined (NaN) one."""
    return None if value is None or math.isnan(value) else round(value, 4)


def _outside_allocation(s: Study) -> list[dict[str, Any]]:
    """Prior-check records of the runs before the allocation study (it has its own section)."""
    return [r for r in s.prior_records if r["run"].split("__")[1] != plan_mod.ALLOCATION.name]
