"""Comparison tables and plots across runs, laid out like the paper's tables."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "load_results",
    "plot_per_class",
    "run_label",
    "table_csv",
    "table_markdown",
    "table_rows",
]

_ROWS = (("Many", "many"), ("Med", "medium"), ("Few", "few"), ("Std", "std"), ("Avg", "avg"))


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read ``metrics.json`` of each run directory (or each given JSON file)."""
    results = []
    for raw in paths:
        path = Path(raw)
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no metrics.json in {path} (has the run finished?)")
        try:
            result = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{file} is not valid JSON: {err}") from err
        result.setdefault("_path", str(path))
        results.append(result)
    return results


def run_label(result: dict[str, Any]) -> str:
    """Column name: method name, with ``+GH`` when GH was enabled."""
    from geoharmony.methods import display_name  # the registry knows the display names

    label = display_name(str(result.get("method", "?")))
    return f"{label}+GH" if result.get("gh") else label


def table_rows(
    results: Sequence[dict[str, Any]], source: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (Many/Med/Few/Std/Avg); ``source="knn"`` reads the kNN block."""
    header = ["", *(run_label(r) for r in results)]
    rows = []
    for title, key in _ROWS:
        cells = []
        for r in results:
            block = r.get(source, {}) if source else r
            value = block.get(key)
            cells.append("-" if value is None else f"{float(value):.2f}")
        rows.append([title, *cells])
    return header, rows


def table_markdown(results: Sequence[dict[str, Any]], source: str | None = None) -> str:
    header, rows = table_rows(results, source)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def table_csv(results: Sequence[dict[str, Any]], source: str | None = None) -> str:
    header, rows = table_rows(results, source)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def plot_per_class(results: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Per-class accuracy against the class's pretraining image count (log x), one series a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        counts = np.asarray(r["class_counts"], dtype=float)
        acc = np.asarray([np.nan if a is None else a for a in r["per_class"]], dtype=float)
        order = np.argsort(-counts, kind="stable")
        ax.plot(counts[order], acc[order], marker="o", ms=3, lw=1, label=run_label(r))
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("pretraining images of the class (log scale, head on the left)")
    ax.set_ylabel("linear-probe accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
