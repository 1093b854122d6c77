"""The quality report's figures (docs/figures/): matplotlib figures made without pyplot, so
drawing them sets no global backend or figure state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["make_figures"]


def make_figures(
    runs: dict[str, dict[str, Any]],
    rows_by_probe: dict[str, list[dict[str, Any]]],
    figures: Path,
    regime: str,
) -> list[str]:
    """Draw every figure that has data into ``figures``; the names of those drawn."""
    figures.mkdir(parents=True, exist_ok=True)
    drawn = {
        "deficit_vs_frequency.png": _deficit_vs_frequency(rows_by_probe, regime),
        "class_mean_cosines.png": _class_mean_cosines(runs, regime),
    }
    made = []
    for name, fig in drawn.items():
        if fig is not None:
            fig.savefig(figures / name, dpi=120)
            made.append(name)
    return made


def _deficit_vs_frequency(
    rows_by_probe: dict[str, list[dict[str, Any]]], regime: str
) -> Figure | None:
    """Per-class deficit against the class's pretraining count, SimCLR and SimCLR+GH of the
    primary group, for the kNN and 10-shot probes; None without rows of either."""
    probes = [p for p in ("knn", "fewshot10") if rows_by_probe.get(p)]
    if not probes:
        return None
    fig = Figure(figsize=(5.5 * len(probes), 4))
    axes = fig.subplots(1, len(probes), squeeze=False)
    for ax, probe in zip(axes[0], probes, strict=True):
        for gh, colour in ((False, "tab:blue"), (True, "tab:orange")):
            pts = [
                (c, d)
                for r in rows_by_probe[probe]
                if r["group"] == "primary"
                and r["method"] == "simclr"
                and r["gh"] == gh
                and r["regime"] == regime
                for c, d in zip(r["class_counts"], r["per_class_deficit"], strict=True)
            ]
            if not pts:
                continue
            x, y = np.asarray(pts).T
            ax.scatter(x, y, s=10, alpha=0.35, color=colour)
            levels = np.unique(x)
            ax.plot(
                levels,
                [y[x == v].mean() for v in levels],
                "-o",
                color=colour,
                ms=4,
                label=f"SimCLR{'+GH' if gh else ''} (mean over runs)",
            )
        ax.set_xscale("log")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("pretraining images of the class")
        ax.set_ylabel("deficit vs balanced reference (points)")
        ax.set_title(probe)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _class_mean_cosines(runs: dict[str, dict[str, Any]], regime: str) -> Figure | None:
    """Class-mean cosines, head to tail, of the first primary SimCLR run of ``regime`` and its
    paired +GH run; None without such a run."""
    base = next(
        (
            e
            for e in runs.values()
            if e["spec"].group == "primary"
            and e["spec"].method == "simclr"
            and not e["spec"].gh
            and e["spec"].regime == regime
        ),
        None,
    )
    if base is None:
        return None
    paired = next(
        (
            e
            for e in runs.values()
            if e["spec"].init_from == base["spec"].run_id and e["spec"].group == "primary"
        ),
        None,
    )
    pair = [("SimCLR", base)] + ([("SimCLR+GH", paired)] if paired else [])
    fig = Figure(figsize=(5 * len(pair), 4.3))
    axes = fig.subplots(1, len(pair), squeeze=False)
    counts = np.asarray(base["metrics"]["class_counts"])
    order = np.argsort(-counts, kind="stable")
    ticks = [str(counts[i]) for i in order]
    for ax, (name, entry) in zip(axes[0], pair, strict=True):
        cos = np.asarray(entry["metrics"]["geometry"]["class_mean_cosines"])[np.ix_(order, order)]
        im = ax.imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"{name} ({entry['spec'].class_order}, seed {entry['spec'].seed})")
        ax.set_xticks(range(len(order)), ticks, rotation=90, fontsize=7)
        ax.set_yticks(range(len(order)), ticks, fontsize=7)
        ax.set_xlabel("class (pretraining count), head -> tail")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="cosine of class means")
    return fig
