"""Issue 38's study on synthetic cells: the glyph regime's plan and its tables and goal rows."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import analysis, glyph_study, plan  # noqa: E402


def _cell(
    gh: bool, variant: str, probe: str = "knn", method: str = "simclr", **values: float
) -> dict:
    stats = {f"{k}_{p}": 0.0 for k in analysis.STAT_KEYS for p in ("mean", "sd")}
    stats.update(values)
    return dict(
        group="glyphs", regime=plan.GLYPHS.name, method=method, gh=gh, variant=variant,
        probe=probe, **stats,
    )  # fmt: skip


def test_the_glyph_plan_pairs_every_arm_with_the_regime_check_baselines() -> None:
    runs = [s for s in plan.build_plan() if s.regime == plan.GLYPHS.name]
    ids = {s.run_id for s in runs}
    baselines = [s for s in runs if s.group == "glyphs" and not s.gh and s.method == "simclr"]
    assert {(s.seed, s.class_order) for s in baselines} == set(plan.GLYPH_PAIRS)
    assert all(s.config.startswith("configs/glyphs_lt/") for s in runs)
    assert plan.GLYPHS.counts()[0] == 500 and plan.GLYPHS.counts()[-1] == 5
    for s in runs:
        assert s.init_from is None or s.init_from in ids
        assert s.balanced or s.reference in ids
    paired = [s for s in runs if s.group == "glyphs" and s.gh and s.method == "simclr"]
    assert len(paired) == len(plan.GLYPH_PAIRS) + len(plan.GLYPH_DIAGNOSTIC_PAIRS) * len(
        plan.GLYPH_DIAGNOSTICS
    )
    # step 3: every other method +- GH at the method pairs, each +GH run from its own baseline
    for method in plan.METHODS[1:]:
        mine = [s for s in runs if s.method == method]
        pairs = {(s.seed, s.class_order) for s in mine}
        assert pairs == set(plan.GLYPH_METHOD_PAIRS) and len(mine) == 2 * len(pairs)
        for s in mine:
            assert s.config == f"configs/glyphs_lt/{method}{'_gh' if s.gh else ''}.yaml"
            assert not s.gh or (s.init_from is not None and f"__{method}__" in s.init_from)
    # every diagnostic also continues each balanced reference (its disparity's baseline)
    balanced_gh = {s.variant for s in runs if s.balanced and s.gh}
    assert balanced_gh == {label for label, _ in plan.GLYPH_DIAGNOSTICS}
    # the glyph runs use the options of today's configuration (nested gh.prior.*)
    weighted = dict(plan.GLYPH_DIAGNOSTICS)["targets=labels,weighting=inverse_prior"]
    assert "gh.prior.name=oracle_matched" in weighted


def test_goal_rows_need_the_paper_s_share_of_the_gap_and_avg_not_lower() -> None:
    assert math.isclose(glyph_study.GOAL_GAP_SHARE, 2.04 / 7.30)
    diffs = [
        _cell(True, "", "knn", gap_closed=0.30, avg_mean=0.1, baseline_gap_mean=6.0, pairs=4),
        _cell(True, "", "linear", gap_closed=0.30, avg_mean=-0.1, baseline_gap_mean=3.0, pairs=4),
        _cell(
            True, "", "fewshot100", gap_closed=0.20, avg_mean=0.5, baseline_gap_mean=3.0, pairs=4
        ),
        _cell(True, "targets=labels", "knn", gap_closed=0.9, avg_mean=1.0, pairs=4),
    ]
    rows = {r["probe"]: r for r in glyph_study.goal_rows(diffs)}
    assert rows["knn"]["met"] and not rows["linear"]["met"] and not rows["fewshot100"]["met"]
    assert rows["knn"]["baseline_gap"] == 6.0  # the paper's GH, not the diagnostic


def test_deficit_table_shows_the_baseline_and_each_arm_s_paired_change() -> None:
    cells = [_cell(False, "", deficit_few_mean=6.0, deficit_few_sd=1.0, runs=4)]
    diffs = [
        _cell(True, "", deficit_few_minus_many_mean=-2.0, deficit_few_minus_many_sd=1.0,
              gap_closed=0.25, pairs=4),
        _cell(True, "targets=labels", gap_closed=math.nan, pairs=1),
    ]  # fmt: skip
    lines = glyph_study.deficit_table(cells, diffs).splitlines()
    assert lines[2].startswith("| knn | SimCLR | 4 | 0.00 ± 0.00 | 6.00 ± 1.00 |")
    assert "| +12.0 |" in lines[2]  # t = 6 / (1 / sqrt 4)
    assert lines[3].startswith("| knn | +GH | 4 |") and "| 25% |" in lines[3]
    assert lines[3].endswith("| -4.0 |")  # t of the gap's change, -2 / (1 / 2)
    assert lines[4].startswith("| knn | +GH (targets=labels) | 1 |") and lines[4].endswith("| - |")
    assert glyph_study.deficit_table([], []).startswith("_no finished glyph runs")


def test_deficit_table_gives_every_method_its_baseline_and_gh_rows_in_the_plan_s_order() -> None:
    cells = [_cell(False, "", method=m, runs=4) for m in ("sdclr", "simclr", "focal")]
    diffs = [
        _cell(True, "", method="focal", gap_closed=0.5, pairs=4),
        _cell(True, "targets=labels", method="focal", pairs=4),  # not an arm of Focal's
    ]
    arms = [
        line.split("|")[2].strip() for line in glyph_study.deficit_table(cells, diffs).splitlines()
    ]
    assert arms[2:] == ["SimCLR", "Focal", "+GH", "SDCLR"]


def _run_row(run_id: str, gh: bool, deficit: dict[str, float], **extra: object) -> dict:
    """A run_summaries row of the glyph regime (default class order, every class at 50%) whose
    per-class deficit is ``deficit[script]`` (0 for scripts not named)."""
    scripts = glyph_study.class_scripts(plan.GLYPHS.num_classes)
    return dict(
        run_id=run_id, regime=plan.GLYPHS.name, method="simclr", gh=gh, seed=0, variant="",
        class_counts=plan.GLYPHS.counts(), group_rule="thirds", per_class=[50.0] * len(scripts),
        per_class_deficit=[deficit.get(s, 0.0) for s in scripts], **extra,
    )  # fmt: skip


def test_script_table_splits_each_script_s_deficit_and_gh_change_by_where_its_classes_sit() -> None:
    # default order: the Latin capitals lead (Many), the symbols close the order (Few)
    base = _run_row("base", False, {"symbol": 4.0, "latin": -1.0})
    gh = _run_row("gh", True, {"symbol": 1.0, "latin": -1.5}, init_from="base")
    lines = glyph_study.script_table({"linear": [base, gh]}).splitlines()
    rows = {line.split("|")[2].strip(): line for line in lines if line.startswith("| linear")}
    assert (
        rows["symbol"]
        == "| linear | symbol | 28 | 54.0 (1) | - | 4.0 (1) | - | -3.0 (1) | - | -3.0 (1) |"
    )
    assert rows["latin"].startswith("| linear | latin | 41 | 49.0 (1) | -1.0 (1) |")
    assert "| -0.5 (1) |" in rows["latin"]  # GH's change where Latin is Many
    assert glyph_study.script_table({}).startswith("_no finished glyph runs")


def test_class_scripts_refuse_a_run_with_another_class_count() -> None:
    scripts = glyph_study.class_scripts(plan.GLYPHS.num_classes)
    assert scripts[0] == "latin" and scripts[-1] == "symbol" and len(set(scripts)) == 6
    with pytest.raises(ValueError, match="10 classes"):
        glyph_study.class_scripts(10)
