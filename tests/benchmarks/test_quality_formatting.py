"""How the quality report writes numbers, names, paths and table lines (its formatting module)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import formatting  # noqa: E402
from benchmarks.quality.records import REPO  # noqa: E402


def test_numbers_and_their_missing_values() -> None:
    assert formatting.pm(1.234, 0.5) == "1.23 ± 0.50"
    assert formatting.pm(1.234, math.nan) == "1.23"
    assert formatting.pm(math.nan, 0.5) == "-"
    assert formatting.pm(0.12345, 0.01, ".3f") == "0.123 ± 0.010"
    assert formatting.num(None) == "-" and formatting.num(math.nan) == "-"
    assert formatting.num(2.0, "+.1f") == "+2.0"
    assert formatting.percent(0.504) == "50%" and formatting.percent(-0.001) == "0%"
    assert formatting.percent(math.nan) == "-"
    assert formatting.mean_sd_cell([1.0, None, 3.0]) == "2.00 ± 1.41"
    assert formatting.mean_sd_cell([None]) == "-"


def test_names_tallies_and_table_lines() -> None:
    assert formatting.cell_name("simclr", True, "K=10") == "SimCLR+GH (K=10)"
    assert formatting.cell_name("bcl", False, "") == "BCL"
    assert formatting.cell_name("new", False, "") == "new"
    assert formatting.tally(["fp32", "bf16", "fp32"]) == "fp32 (2 runs), bf16 (1 runs)"
    assert formatting.md_head(["a", "b"]) == ["| a | b |", "|---|---|"]
    assert formatting.md_row(["x", ""]) == "| x |  |"


def test_paths_are_shown_relative_to_the_repository() -> None:
    inside = REPO / "benchmarks" / "results"
    assert formatting.shown(inside) == "benchmarks/results"
    assert formatting.shown(Path("/elsewhere/x")) == "/elsewhere/x"
    args = ["--output", f"{REPO}/runs/a", "/elsewhere/b"]
    assert formatting.relative_paths(args) == ["--output", "runs/a", "/elsewhere/b"]
