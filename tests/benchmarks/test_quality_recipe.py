"""Issue 37's study on synthetic rows: the recipe regime's plan, the runner's refusal of the
retired recipe, and the schedule ablation's split (paper-style = schedule + GH, per triple)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import analysis, plan, recipe, runner  # noqa: E402
from benchmarks.quality.plan import RunSpec  # noqa: E402


def _row(variant: str, gh: bool, order: str, seed: int, few: float, many: float) -> dict:
    stats = {k: 0.0 for k in analysis.STAT_KEYS}
    stats.update(few=few, many=many, avg=(few + many) / 2, deficit_few=10 - few)
    stats.update(deficit_many=10 - many, deficit_few_minus_many=many - few)
    return dict(
        group="recipe", method="simclr", variant=variant, gh=gh, class_order=order, seed=seed,
        probe="knn", **stats,
    )  # fmt: skip


def test_schedule_split_adds_up_and_pairs_by_seed_and_order() -> None:
    single = plan.SINGLE_COSINE[0]
    rows = []
    for seed, order, (s, b, g) in ((0, "default", (1, 3, 4)), (1, "reversed", (2, 2, 7))):
        rows += [
            _row(single, False, order, seed, few=s, many=5.0),
            _row("", False, order, seed, few=b, many=6.0),
            _row("", True, order, seed, few=g, many=6.5),
        ]
    rows.append(_row(single, False, "default", 5, few=0.0, many=0.0))  # no triple: left out
    (split,) = recipe.schedule_split(rows)
    assert split["triples"] == 2
    assert split["paper_style_few_mean"] == pytest.approx(((4 - 1) + (7 - 2)) / 2)
    assert split["schedule_few_mean"] == pytest.approx(((3 - 1) + (2 - 2)) / 2)
    assert split["gh_few_mean"] == pytest.approx(((4 - 3) + (7 - 2)) / 2)
    for key in recipe.SPLIT_KEYS:
        assert split[f"paper_style_{key}_mean"] == pytest.approx(
            split[f"schedule_{key}_mean"] + split[f"gh_{key}_mean"]
        )
    assert split["schedule_many_mean"] == pytest.approx(1.0)
    assert "| knn | GH: +GH − baseline, both two-stage | 2 |" in recipe.schedule_table([split])


def test_recipe_plan_pairs_every_method_and_ablates_simclr_s_schedule() -> None:
    specs = [s for s in plan.build_plan() if s.regime == plan.RECIPE.name]
    assert {s.recipe for s in specs} == {"paper"}
    singles = [s for s in specs if s.variant == plan.SINGLE_COSINE[0]]
    assert len(singles) == len(plan.RECIPE_PAIRS) and not any(s.gh for s in singles)
    assert all("optim.schedule=warmup_cosine" in s.overrides for s in singles)
    for method in plan.METHODS:
        pairs = [s for s in specs if s.method == method and s.gh]
        assert len(pairs) == len(plan.CORE_PRIMARY if method == "simclr" else plan.RECIPE_PAIRS)
        assert all(s.init_from and s.pair_epoch == plan.RECIPE.warmup_epochs for s in pairs)
    assert plan.recipe_of(plan.ALLOCATION.name) == "joint_bn_no_warmup"
    assert plan.recipe_of(plan.RECIPE.name) == "paper"


def test_the_runner_does_not_rerun_a_retired_recipe(tmp_path: Path) -> None:
    old = next(s for s in plan.build_plan() if s.recipe != "paper")
    assert isinstance(old, RunSpec)
    outcome = runner.run_plan([old], tmp_path / "runs", tmp_path / "store", workers=1)
    assert outcome["skipped"] == [old.run_id] and not outcome["ran"]


def test_recipe_table_puts_the_old_recipe_beside_the_paper_s() -> None:
    def cell(group: str, regime: str, gh: bool, variant: str, few: float, **extra) -> dict:
        stats = {f"{k}_{p}": 0.0 for k in analysis.STAT_KEYS for p in ("mean", "sd")}
        stats["deficit_few_mean"] = few
        return dict(
            group=group, regime=regime, method="simclr", gh=gh, variant=variant, probe="knn",
            **stats, **extra,
        )  # fmt: skip

    old, new = plan.ALLOCATION.name, plan.RECIPE.name
    cells = [
        cell("allocation", old, False, "", 5.68, runs=4),
        cell("recipe", new, False, "", 3.1, runs=4),
    ]
    diffs = [cell("allocation", old, True, "allocation=balanced", 0.42, pairs=4)]
    lines = recipe.recipe_table(cells, diffs).splitlines()
    assert lines[2].startswith("| simclr | knn | joint_bn_no_warmup | 4 | 5.68 ± 0.00 |")
    assert "| 4 | 0.42 ± 0.00 |" in lines[2]
    assert lines[3].startswith("| simclr | knn | paper | 4 | 3.10 ± 0.00 |")
    assert lines[3].endswith("| 0 | - | - | - |")  # no pairs of the paper recipe yet
