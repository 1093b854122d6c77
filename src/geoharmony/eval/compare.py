"""Comparison tables and plots across runs, laid out like the paper's tables."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from geoharmony.eval.metrics import FEW, class_groups, format_group_value
from geoharmony.eval.probes import PROBES, probe_block, probe_title, upgrade_metrics

__all__ = [
    "ResultFileError",
    "deficit_csv",
    "deficit_markdown",
    "deficit_rows",
    "load_results",
    "plot_deficits",
    "plot_per_class",
    "run_label",
    "shared_probes",
    "table_csv",
    "table_markdown",
    "table_rows",
]

_ROWS = (("Many", "many"), ("Med", "medium"), ("Few", "few"), ("Std", "std"), ("Avg", "avg"))
_DEFICIT_ROWS = (
    ("Many", "many"),
    ("Med", "medium"),
    ("Few", "few"),
    ("Few - Many", "few_minus_many"),
    ("Avg", "avg"),
)


class ResultFileError(ValueError):
    """A result file (``metrics.json``, the study's ``results.json``) cannot be read."""


def load_results(
    paths: Sequence[str | Path], display_name: Callable[[str], str] | None = None
) -> list[dict[str, Any]]:
    """Read ``metrics.json`` of each run directory (or each given JSON file), in today's layout
    (:func:`geoharmony.eval.probes.upgrade_metrics`). ``display_name`` (method -> table label,
    e.g. :func:`geoharmony.methods.display_name`) labels each run (``display_name`` in its
    dict, unless the file has one): this layer knows no methods."""
    results = []
    for raw in paths:
        path = Path(raw)
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no metrics.json in {path} (has the run finished?)")
        try:
            result = upgrade_metrics(json.loads(file.read_text()))
        except json.JSONDecodeError as err:
            raise ResultFileError(f"{file} is not valid JSON: {err}") from err
        result.setdefault("_path", str(path))
        if display_name is not None:
            result.setdefault("display_name", display_name(str(result.get("method", "?"))))
        results.append(result)
    return results


def run_label(result: Mapping[str, Any]) -> str:
    """Column name: the run's display name (``SimCLR``), with ``+GH`` when GH was enabled.

    The name is the result's ``display_name`` (see :func:`load_results`); without one, the
    label the packaged study gives the method, else the method's own name."""
    method = str(result.get("method", "?"))
    label = result.get("display_name") or _study_display_names().get(method) or method
    return f"{label}+GH" if result.get("gh") else label


@functools.cache
def _study_display_names() -> dict[str, str]:
    """Method -> display name as the packaged study noise file (``study_noise.json``, written
    by the quality report from the method registry) records them; empty without the file."""
    file = resources.files("geoharmony.eval") / "study_noise.json"
    try:
        methods = json.loads(file.read_text()).get("methods", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {
        m: str(v["display_name"])
        for m, v in methods.items()
        if isinstance(v, dict) and v.get("display_name")
    }


def shared_probes(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The probes every result has a block of, known ones in :data:`PROBES`' order first."""
    names = [set(upgrade_metrics(r).get("probes", {})) for r in results]
    common = set.intersection(*names) if names else set()
    return [p for p in PROBES if p in common] + sorted(common - set(PROBES))


def table_rows(
    results: Sequence[Mapping[str, Any]], probe: str
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (Many/Med/Few/Std/Avg) of one probe, a column a run."""
    header = ["", *(run_label(r) for r in results)]
    blocks = [probe_block(r, probe) or {} for r in results]
    rows = [[title, *(format_group_value(b.get(key)) for b in blocks)] for title, key in _ROWS]
    return header, rows


def table_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """A table per shared probe, each under a ``###`` heading."""
    return "\n\n".join(
        f"### {probe_title(p)}\n\n" + _markdown(*table_rows(results, p))
        for p in shared_probes(results)
    )


def table_csv(results: Sequence[Mapping[str, Any]]) -> str:
    """Every shared probe's table as one CSV, the probe in the first column."""
    body: list[list[str]] = []
    header: list[str] = []
    for probe in shared_probes(results):
        header, rows = table_rows(results, probe)
        body += [[probe, *row] for row in rows]
    return _csv(["probe", *header], body)


def deficit_rows(
    results: Sequence[dict[str, Any]], deficits: Sequence[dict[str, Any]]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (Many/Med/Few/Few - Many/Avg) of one probe's deficits, a column a run.

    ``deficits[i]`` is :func:`geoharmony.eval.deficit.run_deficits` of ``results[i]`` (N runs):
    the header has N + 1 cells, each of the 5 rows a title and N numbers (``-`` for NaN).
    """
    header = ["", *(run_label(r) for r in results)]
    rows = [
        [title, *(format_group_value(d[f"deficit_{key}"]) for d in deficits)]
        for title, key in _DEFICIT_ROWS
    ]
    return header, rows


def deficit_markdown(
    results: Sequence[dict[str, Any]], deficits: dict[str, list[dict[str, Any]]]
) -> str:
    """A deficit table per probe (``deficits``: probe -> one ``run_deficits`` a run)."""
    return "\n\n".join(
        f"#### {probe_title(probe)}\n\n" + _markdown(*deficit_rows(results, ds))
        for probe, ds in deficits.items()
    )


def deficit_csv(
    results: Sequence[dict[str, Any]], deficits: dict[str, list[dict[str, Any]]]
) -> str:
    """The deficit tables as one CSV, the probe in the first column."""
    body = []
    header: list[str] = []
    for probe, ds in deficits.items():
        header, rows = deficit_rows(results, ds)
        body += [[probe, *row] for row in rows]
    return _csv(["probe", *header], body)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _csv(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def plot_per_class(results: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Per-class accuracy of the first shared probe against the class's pretraining image
    count (log x), one series a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe = shared_probes(results)[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        counts = np.asarray(r["class_counts"], dtype=float)
        block = probe_block(r, probe) or {}
        acc = np.asarray([np.nan if a is None else a for a in block["per_class"]], dtype=float)
        order = np.argsort(-counts, kind="stable")
        ax.plot(counts[order], acc[order], marker="o", ms=3, lw=1, label=run_label(r))
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("pretraining images of the class (log scale, head on the left)")
    ax.set_ylabel(f"{probe_title(probe)} accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_deficits(
    results: Sequence[dict[str, Any]], deficits: dict[str, list[dict[str, Any]]], path: str | Path
) -> None:
    """Per-class deficit against the class's pretraining image count (log x, head on the left),
    a panel a probe and a series a run; the Few classes of the first run are shaded."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(5.2 * len(deficits), 4.2))
    axes = fig.subplots(1, len(deficits), squeeze=False, sharey=True)[0]
    for ax, (probe, ds) in zip(axes, deficits.items(), strict=True):
        counts = np.asarray(ds[0]["class_counts"], dtype=float)
        few = counts[class_groups(counts.astype(np.int64), ds[0]["group_rule"]) == FEW]
        if few.size:
            ax.axvspan(few.min() / 1.15, few.max() * 1.15, color="grey", alpha=0.12, lw=0)
            ax.text(few.max() * 1.1, 0.98, "Few", transform=ax.get_xaxis_transform(), va="top")
        for r, d in zip(results, ds, strict=True):
            x = np.asarray(d["class_counts"], dtype=float)
            y = np.asarray(d["per_class_deficit"], dtype=float)
            order = np.argsort(-x, kind="stable")
            label = f"{run_label(r)} (Few {d['deficit_few']:+.1f})"
            ax.plot(x[order], y[order], marker="o", ms=4, lw=1.2, label=label)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1000, not 10^3
        ax.invert_xaxis()
        ax.set_title(probe_title(probe))
        ax.set_xlabel("pretraining images of the class (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("deficit: balanced reference - run (points)")
    fig.suptitle("What the long tail costs each class (above 0: lost accuracy)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
