"""How the quality report writes numbers, names, paths and markdown table lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from benchmarks.quality.records import REPO
from benchmarks.quality.stats import critical_t, mean_sd

from geoharmony.methods import display_name

__all__ = [
    "cell_name",
    "critical_t_list",
    "md_head",
    "md_row",
    "mean_sd_cell",
    "num",
    "percent",
    "pm",
    "relative_paths",
    "shown",
    "tally",
]


def cell_name(method: str, gh: bool, variant: str) -> str:
    """``SimCLR+GH (K=10)`` style label of a cell."""
    return display_name(method) + ("+GH" if gh else "") + (f" ({variant})" if variant else "")


def pm(mean: float, sd: float, fmt: str = ".2f") -> str:
    """``mean ± sd``; the bare mean without an sd, ``-`` without a mean."""
    if mean is None or math.isnan(mean):
        return "-"
    if sd is None or math.isnan(sd):
        return format(mean, fmt)
    return f"{mean:{fmt}} ± {sd:{fmt}}"


def num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def percent(share: float) -> str:
    """A share as a whole percentage, ``-`` when undefined."""
    return "-" if math.isnan(share) else f"{round(100 * share)}%"  # an int: no "-0%"


def mean_sd_cell(values: Sequence[float | None]) -> str:
    """``mean ± sd`` of the values that exist (None and NaN dropped), ``-`` if none do."""
    return pm(*mean_sd(v for v in values if v is not None))


def critical_t_list(sizes: Sequence[int], unit: str) -> str:
    """``3.18 with 4 pairs, 2.57 with 6``: the two-sided critical |t| (:func:`.stats.critical_t`)
    of a sample of each size, at its ``size - 1`` degrees of freedom."""
    said = [f"{critical_t(n - 1):.2f} with {n}" for n in sizes]
    return ", ".join([f"{said[0]} {unit}", *said[1:]])


def md_row(cells: Sequence[str]) -> str:
    """One markdown table line."""
    return "| " + " | ".join(cells) + " |"


def md_head(head: Sequence[str]) -> list[str]:
    """A markdown table's header line and its separator."""
    return [md_row(head), "|" + "---|" * len(head)]


def tally(values: Sequence[str], sep: str = ", ") -> str:
    """``fp32 (12 runs), bf16 (3 runs)``: each distinct value with its count, most runs first."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sep.join(f"{k} ({n} runs)" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (reports are read there)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def relative_paths(args: Sequence[str]) -> list[str]:
    """A recorded command with the repository's absolute prefix dropped from its paths."""
    prefix = f"{REPO}/"
    return [a[len(prefix) :] if a.startswith(prefix) else a for a in args]
