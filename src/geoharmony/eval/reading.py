"""A short written reading of a deficit comparison: which group lost most, what GH changed, and
how that compares with the noise the quality study measured (``docs/results.json``).

The study's records are aggregates over seeds and class orders (``benchmarks/quality``); this
module only reads the cells of its primary regime and never makes up a noise level it lacks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geoharmony.eval.compare import ResultFileError, run_label

__all__ = ["STUDY_FILE", "STUDY_REGIME", "gh_pairs", "load_study", "write_reading"]

# The repository's study results, found from this file (src/geoharmony/eval/ -> repository).
STUDY_FILE = Path(__file__).resolve().parents[3] / "docs" / "results.json"
# The study's primary regime: the configs/fmnist_lt preset as shipped, every run in fp32
# (benchmarks/quality/plan.py, PRIMARY); a run with other settings is compared only roughly.
STUDY_REGIME = "r100_e80"
# Its settings, each as the metrics.json path that holds it and its value in the study.
_STUDY_SETTINGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "imbalance ratio": (("imbalance_ratio",), 100.0),
    "pretraining images": (("data", "num_pretrain_images"), 2478),
    "width": (("config", "model", "width"), 0.25),
    "epochs": (("config", "optim", "epochs"), 80),
    "precision": (("precision",), "fp32"),
    # GH beyond the paper: a run with another allocation is not the study's +GH cell
    "allocation": (("config", "gh", "allocation"), "balanced"),
    "prior": (("config", "gh", "prior"), "bank"),
    "queue": (("config", "gh", "queue_batches"), 0),
    "affinity": (("config", "gh", "affinity"), 0.0),
    "target weighting": (("config", "gh", "target_weighting"), "none"),
}
_PROBE_NAMES = {"knn": "kNN", "linear": "linear"}


def load_study(path: str | Path | None = None) -> list[dict[str, Any]] | None:
    """The study's aggregated records (a JSON list) from ``path``, or from :data:`STUDY_FILE`
    where ``path`` is None; None when that default file does not exist (a given ``path`` must)."""
    file = Path(path) if path is not None else STUDY_FILE
    if not file.is_file():
        if path is not None:
            raise FileNotFoundError(f"no study results at {file}")
        return None
    try:
        records = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ResultFileError(f"{file} is not valid JSON: {err}") from err
    if not isinstance(records, list):
        kind = type(records).__name__
        raise ResultFileError(f"{file}: expected a list of study records, got a {kind}")
    return records


def gh_pairs(results: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(gh, baseline)`` indices: each +GH run with the first run of its method without GH."""
    pairs = []
    for i, r in enumerate(results):
        if r.get("gh"):
            base = [
                j
                for j, b in enumerate(results)
                if not b.get("gh") and b.get("method") == r.get("method")
            ]
            if base:
                pairs.append((i, base[0]))
    return pairs


def write_reading(
    results: Sequence[Mapping[str, Any]],
    deficits: Mapping[str, Sequence[Mapping[str, Any]]],
    study: Sequence[Mapping[str, Any]] | None,
) -> str:
    """Markdown bullets reading the deficit tables, probe by probe: which group of each run
    without GH lost most, what GH changed against that baseline (each +GH run is paired with
    the first run of its method without GH), and the study's mean ± sd of the same cells.

    Args:
        results: the compared runs' ``metrics.json`` dicts.
        deficits: probe -> :func:`geoharmony.eval.deficit.run_deficits` of each run, in order.
        study: :func:`load_study`'s records, or None (the noise is then said to be unknown).
    """
    unknown = _why_noise_unknown(results, study)
    usable = None if unknown else study
    lines = []
    for probe, ds in deficits.items():
        name = _PROBE_NAMES.get(probe, probe)
        for r, d in zip(results, ds, strict=True):
            if not r.get("gh"):
                lines.append(
                    f"{run_label(r)}, {name}: "
                    + _lost_most(d, _study_cell(usable, r, False, probe))
                )
        for i, j in gh_pairs(results):
            r = results[i]
            base, gh = (_study_cell(usable, r, g, probe) for g in (False, True))
            lines.append(f"{run_label(r)}, {name}: " + _gh_change(ds[i], ds[j], base, gh))
    if unknown:
        lines.append(unknown)
    elif differs := _settings_differ(results):
        lines.append(
            f"The study's numbers come from its regime {STUDY_REGIME}, the fmnist_lt preset in "
            f"fp32; these runs differ ({differs}), so they compare with them only roughly."
        )
    return "\n".join(f"- {line}" for line in lines)


def _lost_most(d: Mapping[str, Any], study: Mapping[str, Any] | None) -> str:
    """Which group lost most in one run's deficits ``d``, with the study's Few deficit."""
    named = {"Many": d["deficit_many"], "Medium": d["deficit_medium"], "Few": d["deficit_few"]}
    # A group can be empty (group_rule=thresholds): its deficit is NaN and it is left out.
    groups = {g: v for g, v in named.items() if not math.isnan(v)}
    if not groups:
        return "no group has classes, so there is no deficit to read."
    worst = max(groups, key=lambda g: groups[g])
    others = ", ".join(f"{g} {v:+.2f}" for g, v in groups.items() if g != worst)
    if groups[worst] <= 0:
        text = f"no group lost accuracy against the balanced reference ({others})."
    else:
        text = (
            f"the {worst} classes lost most, {groups[worst]:.2f} points against the balanced "
            f"reference ({others}; Few - Many {d['deficit_few_minus_many']:+.2f})."
        )
    if study is not None:
        text += f" The study's Few deficit here: {_mean_sd(study)}."
    return text


def _gh_change(
    d: Mapping[str, Any],
    base: Mapping[str, Any],
    study_base: Mapping[str, Any] | None,
    study_gh: Mapping[str, Any] | None,
) -> str:
    """What GH changed (deficits ``d`` against its baseline's ``base``), and where that change
    falls against the noise of one run in the study (its cells without and with GH)."""
    before, after = base["deficit_few"], d["deficit_few"]
    change = after - before
    if math.isnan(change):
        return "no Few classes in this run's groups, so GH's change there cannot be read."
    share = ""
    if before > 0:
        share = (
            f", {-change / before:.0%} of it closed"
            if change <= 0
            else f", {change / before:.0%} wider"
        )
    gap = d["deficit_few_minus_many"] - base["deficit_few_minus_many"]
    text = (
        f"GH changed the Few deficit by {change:+.2f} points ({before:.2f} -> {after:.2f}{share}) "
        f"and the Few - Many gap by {gap:+.2f}."
    )
    if study_base is None or study_gh is None:
        return text + " The study has no cell of this method: its noise here is unknown."
    sd = study_base["deficit_few_sd"]
    mean_change = study_gh["deficit_few_mean"] - study_base["deficit_few_mean"]
    verdict = (
        f"smaller than one run's sd there ({sd:.2f}): within the noise of one seed, so this "
        "pair alone shows nothing"
        if abs(change) < sd
        else f"larger than one run's sd there ({sd:.2f}), but one pair is one draw of that noise"
    )
    return text + (
        f" The study's Few deficit with GH: {_mean_sd(study_gh, where=False)}, a mean change of "
        f"{mean_change:+.2f}; this pair's change is {verdict}."
    )


def _mean_sd(cell: Mapping[str, Any], where: bool = True) -> str:
    """``4.83 ± 2.25``, and with ``where`` the runs and regime they come from."""
    text = f"{cell['deficit_few_mean']:.2f} ± {cell['deficit_few_sd']:.2f}"
    if where:
        text += f" (mean ± sd over {cell['runs']} runs: seeds and class orders, {STUDY_REGIME})"
    return text


def _why_noise_unknown(
    results: Sequence[Mapping[str, Any]], study: Sequence[Mapping[str, Any]] | None
) -> str | None:
    """Why the study cannot give these runs a noise level; None where it can."""
    if study is None:
        return (
            "The noise of these numbers is unknown here (no study results: docs/results.json "
            "is absent); one seed is one draw, so read a difference of a point or two as unproven."
        )
    sources = {str(r.get("data", {}).get("source", "")).split(":")[0] for r in results}
    if sources != {"fashion_mnist"}:
        return (
            "The study measured seed noise on Fashion-MNIST-LT only; for this data set it is "
            "unknown, so read one seed's difference as a single draw."
        )
    return None


def _study_cell(
    study: Sequence[Mapping[str, Any]] | None, run: Mapping[str, Any], gh: bool, probe: str
) -> Mapping[str, Any] | None:
    """The study's primary cell of ``run``'s method, with or without GH; None without one."""
    want = {
        "group": "primary",
        "regime": STUDY_REGIME,
        "method": run.get("method"),
        "gh": gh,
        "variant": "",
        "probe": probe,
    }
    return next((c for c in study or () if all(c.get(k) == v for k, v in want.items())), None)


def _settings_differ(results: Sequence[Mapping[str, Any]]) -> str:
    """``"epochs 50, precision bf16"``: the runs' settings that differ from the study's."""
    seen: dict[str, set[str]] = {}
    for r in results:
        for key, (path, expected) in _STUDY_SETTINGS.items():
            value: Any = r
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None and value != expected:
                seen.setdefault(key, set()).add(
                    f"{value:g}" if isinstance(value, float) else str(value)
                )
    return ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in seen.items())
