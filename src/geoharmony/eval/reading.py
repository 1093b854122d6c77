"""A short written reading of a deficit comparison: which group lost most, what GH changed, and
how that compares with the seed noise the quality study measured.

The noise comes from one small file shipped inside the package, ``geoharmony/eval/
study_noise.json``, which ``python -m benchmarks.quality report`` writes from the study's run
records. It holds, per method and probe of the study's primary regime, the Few deficit of one run
without and with GH (mean, sd, runs) and GH's paired change (mean, sd, pairs), and the regime's
settings (data source, imbalance ratio, image count, width, epochs, precision, GH options) that
tell whether a user's runs are comparable. This module reads that file only (or one of the same
layout that the caller names), and never makes up a noise level the file lacks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from geoharmony.eval.compare import ResultFileError, run_label
from geoharmony.eval.probes import probe_label

__all__ = [
    "SETTING_PATHS",
    "STUDY_FILE",
    "gh_pairs",
    "load_study",
    "setting_value",
    "write_reading",
]

# The packaged study-noise file (a Traversable: read the same installed or from a checkout).
STUDY_FILE = resources.files("geoharmony.eval") / "study_noise.json"
# Where each regime setting the file states sits in a run's metrics.json. The report writes the
# study's value of each; a run whose value differs compares with the study only roughly.
SETTING_PATHS: dict[str, tuple[str, ...]] = {
    "imbalance ratio": ("imbalance_ratio",),
    "pretraining images": ("data", "num_pretrain_images"),
    "width": ("config", "model", "width"),
    "epochs": ("config", "optim", "epochs"),
    "precision": ("precision",),
    # GH beyond the paper: a run with another allocation is not the study's +GH cell
    "allocation": ("config", "gh", "allocation"),
    "prior": ("config", "gh", "prior"),
    "target weighting": ("config", "gh", "target_weighting"),
}


def load_study(path: str | Path | None = None) -> dict[str, Any] | None:
    """The study's noise (the layout of :data:`STUDY_FILE`) from ``path``, or from the packaged
    file where ``path`` is None; None when the packaged file is absent (a given ``path`` must
    exist). A ``results.json`` list of an older report is read for its primary cells."""
    if path is None:
        if not STUDY_FILE.is_file():
            return None
        name, text = "the packaged study_noise.json", STUDY_FILE.read_text()
    else:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no study results at {file}")
        name, text = str(file), file.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultFileError(f"{name} is not valid JSON: {err}") from err
    if isinstance(data, list):
        return _from_records(data)
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        kind = type(data).__name__
        raise ResultFileError(f"{name}: expected the study's noise (a methods mapping), got {kind}")
    return data


def _from_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The noise layout from an older report's ``results.json`` records: the Few deficit of the
    primary group's cells; that file has neither paired changes nor the regime's settings."""
    primary = [r for r in records if r.get("group") == "primary" and not r.get("variant")]
    regime = primary[0].get("regime") if primary else None
    methods: dict[str, Any] = {}
    for c in primary:
        if c.get("regime") == regime:
            arm = "gh" if c.get("gh") else "baseline"
            cell = {"mean": c["deficit_few_mean"], "sd": c["deficit_few_sd"], "runs": c["runs"]}
            methods.setdefault(c["method"], {}).setdefault(c["probe"], {})[arm] = cell
    dataset = str(primary[0].get("dataset", "")) if primary else ""
    source = dataset.removesuffix("-lt") or None
    regime_info: dict[str, Any] = {"name": regime, "dataset": dataset, "data_source": source}
    return {"regime": regime_info, "methods": methods}


def setting_value(metrics: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` in a run's ``metrics.json`` (None where absent); an options block
    (``{"name": ..., ...}``) stands for its name."""
    value: Any = metrics
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, Mapping):
        value = value.get("name")
    return value


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
    study: Mapping[str, Any] | None,
) -> str:
    """Markdown bullets reading the deficit tables, probe by probe: which group of each run
    without GH lost most, what GH changed against that baseline (each +GH run is paired with
    the first run of its method without GH), and the study's mean ± sd of the same cells.

    Args:
        results: the compared runs' ``metrics.json`` dicts.
        deficits: probe -> :func:`geoharmony.eval.deficit.run_deficits` of each run, in order.
        study: :func:`load_study`'s noise, or None (the noise is then said to be unknown).
    """
    unknown = _why_noise_unknown(results, study)
    usable = None if unknown else study
    lines = []
    for probe, ds in deficits.items():
        name = probe_label(probe)
        for r, d in zip(results, ds, strict=True):
            if not r.get("gh"):
                cell = _study_cell(usable, r, probe).get("baseline")
                lines.append(f"{run_label(r)}, {name}: " + _lost_most(d, cell, _regime(usable)))
        for i, j in gh_pairs(results):
            r = results[i]
            cell = _study_cell(usable, r, probe)
            said = _gh_change(ds[i], ds[j], *(cell.get(k) for k in ("baseline", "gh", "change")))
            lines.append(f"{run_label(r)}, {name}: " + said)
    if unknown:
        lines.append(unknown)
    elif study is not None and (differs := _settings_differ(results, study)):
        lines.append(
            f"The study's numbers come from its regime {_regime(study)} "
            f"({study['regime'].get('description', 'its own settings')}); these runs differ "
            f"({differs}), so they compare with them only roughly."
        )
    return "\n".join(f"- {line}" for line in lines)


def _regime(study: Mapping[str, Any] | None) -> str:
    """The study regime's name (``the study's regime`` where the file does not say)."""
    return str(((study or {}).get("regime") or {}).get("name") or "the study's regime")


def _lost_most(
    d: Mapping[str, Any], study: Mapping[str, Any] | None, regime: str = "the study's regime"
) -> str:
    """Which group lost most in one run's deficits ``d``, with the study's Few deficit
    (``study``: its ``mean``, ``sd`` and ``runs`` in ``regime``)."""
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
        text += f" The study's Few deficit here: {_mean_sd(study, regime)}."
    return text


def _gh_change(
    d: Mapping[str, Any],
    base: Mapping[str, Any],
    study_base: Mapping[str, Any] | None,
    study_gh: Mapping[str, Any] | None,
    study_change: Mapping[str, Any] | None = None,
) -> str:
    """What GH changed (deficits ``d`` against its baseline's ``base``), and where that change
    falls against the noise of one run in the study (its Few deficit without and with GH, and
    the spread of one paired change where the study has it)."""
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
    sd = study_base["sd"]
    mean_change = study_gh["mean"] - study_base["mean"]
    verdict = (
        f"smaller than one run's sd there ({sd:.2f}): within the noise of one seed, so this "
        "pair alone shows nothing"
        if abs(change) < sd
        else f"larger than one run's sd there ({sd:.2f}), but one pair is one draw of that noise"
    )
    in_study = (
        f" The study's Few deficit with GH: {_mean_sd(study_gh)}, a mean change of "
        f"{mean_change:+.2f}; this pair's change is {verdict}."
    )
    return text + in_study + _paired_noise(study_change)


def _paired_noise(change: Mapping[str, Any] | None) -> str:
    """The sd of one paired change in the study (GH minus its own baseline, same seed and class
    order), where the file has it: the spread a single pair's change is drawn from."""
    if not change or change.get("sd") is None or change.get("pairs", 0) < 2:
        return ""
    return f" In the study one pair's change has sd {change['sd']:.2f} ({change['pairs']} pairs)."


def _mean_sd(cell: Mapping[str, Any], regime: str | None = None) -> str:
    """``4.83 ± 2.25``, and with ``regime`` the runs and regime it comes from."""
    text = f"{cell['mean']:.2f} ± {cell['sd']:.2f}"
    if regime is not None:
        text += f" (mean ± sd over {cell['runs']} runs: seeds and class orders, {regime})"
    return text


def _why_noise_unknown(
    results: Sequence[Mapping[str, Any]], study: Mapping[str, Any] | None
) -> str | None:
    """Why the study cannot give these runs a noise level; None where it can."""
    if study is None:
        return (
            "The noise of these numbers is unknown here (no study results: the package's "
            "study_noise.json is absent); one seed is one draw, so read a difference of a point "
            "or two as unproven."
        )
    regime = study.get("regime") or {}
    source = regime.get("data_source")  # None: the file does not say, so nothing to check
    sources = {str(r.get("data", {}).get("source", "")).split(":")[0] for r in results}
    if source is not None and sources != {source}:
        return (
            f"The study measured seed noise on {regime.get('dataset') or 'its own data'} only; "
            "for this data set it is unknown, so read one seed's difference as a single draw."
        )
    return None


def _study_cell(
    study: Mapping[str, Any] | None, run: Mapping[str, Any], probe: str
) -> Mapping[str, Any]:
    """The study's noise for ``run``'s method and ``probe`` (``baseline``, ``gh``, ``change``);
    empty without one."""
    methods = (study or {}).get("methods", {})
    entry = methods.get(str(run.get("method")), {}).get(probe, {})
    # A spread without an sd (one run) is no noise level: left out, as if absent.
    return {k: v for k, v in entry.items() if isinstance(v, Mapping) and v.get("sd") is not None}


def _settings_differ(
    results: Sequence[Mapping[str, Any]], study: Mapping[str, Any] | None = None
) -> str:
    """``"epochs 50, precision bf16"``: the runs' settings that differ from the study's (the
    packaged file's where ``study`` is None); empty where the study states none."""
    if study is None:
        study = load_study()
    expected = ((study or {}).get("regime") or {}).get("settings") or {}
    seen: dict[str, set[str]] = {}
    for r in results:
        for key, want in expected.items():
            if key not in SETTING_PATHS:  # a setting this version cannot read from a run
                continue
            value = setting_value(r, SETTING_PATHS[key])
            if value is not None and value != want:
                seen.setdefault(key, set()).add(
                    f"{value:g}" if isinstance(value, float) else str(value)
                )
    return ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in seen.items())
