"""Analysis maths of benchmarks/quality on synthetic metrics: deficits, grouping by the run's
pretraining counts, mean/sd aggregation, paired differences, the results.json schema."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import (  # noqa: E402
    analysis,
    goal,
    plan,
    report,
    sections,
    summary,
    tables,
)
from benchmarks.quality.plan import RunSpec  # noqa: E402

COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]


def test_deficit_groups_follow_the_runs_counts_not_class_ids() -> None:
    # Reversed order: class 9 is the head, class 0 the tail. Thirds on 10 classes: 4/3/3.
    counts = COUNTS[::-1]
    ref = [80.0] * 10
    run = [80.0 - c for c in range(10)]  # deficit of class c is c points
    d = analysis.deficits(run, ref, counts)
    # Many = classes 9, 8, 7, 6 (deficits 9, 8, 7, 6); Medium = 5, 4, 3; Few = 2, 1, 0.
    assert d["deficit_many"] == pytest.approx(7.5)
    assert d["deficit_medium"] == pytest.approx(4.0)
    assert d["deficit_few"] == pytest.approx(1.0)
    assert d["deficit_few_minus_many"] == pytest.approx(-6.5)
    assert d["deficit_avg"] == pytest.approx(4.5)


def test_group_summary_std_is_population_sd_of_groups() -> None:
    acc = [90, 90, 90, 90, 70, 70, 70, 40, 40, 40]
    g = analysis.group_summary(acc, COUNTS)
    assert (g["many"], g["medium"], g["few"]) == (90.0, 70.0, 40.0)
    assert g["std"] == pytest.approx(np.std([90.0, 70.0, 40.0]))
    assert g["avg"] == pytest.approx(69.0)


def test_per_class_reads_every_probe() -> None:
    metrics = {"per_class": [1.0, 2.0], "knn": {"per_class": [3.0, 4.0]}}
    fewshot = {"shots": {"10": [{"per_class": [0.0, 10.0]}, {"per_class": [2.0, 20.0]}]}}
    assert analysis.per_class(metrics, fewshot, "linear") == [1.0, 2.0]
    assert analysis.per_class(metrics, fewshot, "knn") == [3.0, 4.0]
    assert analysis.per_class(metrics, fewshot, "fewshot10") == [1.0, 15.0]
    assert analysis.per_class(metrics, fewshot, "fewshot100") is None
    assert analysis.per_class(metrics, None, "fewshot10") is None
    assert analysis.per_class(metrics, fewshot, analysis.VALIDATION_PROBE) is None
    held_out = fewshot | {"validation": {"knn": {"per_class": [5.0, 6.0]}}}
    assert analysis.per_class(metrics, held_out, analysis.VALIDATION_PROBE) == [5.0, 6.0]
    with pytest.raises(ValueError, match="probe"):
        analysis.per_class(metrics, fewshot, "nope")


def _spec(
    run_id: str, gh: bool = False, order: str = "default", seed: int = 0, **kw: object
) -> RunSpec:
    base = {
        "run_id": run_id,
        "group": "primary",
        "regime": "r",
        "method": "simclr",
        "gh": gh,
        "seed": seed,
        "class_order": order,
        "config": "c.yaml",
        "overrides": (),
        "imbalance_ratio": 100.0,
        "reference": f"ref{seed}",
    }
    base.update(kw)
    return RunSpec(**base)  # type: ignore[arg-type]


def _metrics(acc: list[float], counts: list[int]) -> dict[str, object]:
    return {
        "per_class": acc,
        "knn": {"per_class": acc},
        "class_counts": counts,
        "group_rule": "thirds",
    }


def _synthetic_runs() -> dict[str, dict[str, object]]:
    """Two seeds x two orders; the baseline's tail deficit is 4 (seed 0) / 6 (seed 1) points,
    GH halves it."""
    runs: dict[str, dict[str, object]] = {}
    for seed in (0, 1):
        ref = _spec(
            f"ref{seed}",
            seed=seed,
            group="reference",
            class_order="balanced",
            reference=None,
            imbalance_ratio=1.0,
        )
        runs[ref.run_id] = {
            "spec": ref,
            "metrics": _metrics([80.0] * 10, [248] * 10),
            "fewshot": None,
            "timing": {},
        }
        for order, counts in (("default", COUNTS), ("reversed", COUNTS[::-1])):
            tail = {c for c in range(10) if counts[c] <= 27}  # the 3 Few classes
            gap = 4.0 + 2.0 * seed
            for gh in (False, True):
                acc = [80.0 - (gap / (2 if gh else 1) if c in tail else 0.0) for c in range(10)]
                base_id = f"b_{order}_{seed}"
                spec = _spec(
                    f"{'g' if gh else 'b'}_{order}_{seed}",
                    gh=gh,
                    order=order,
                    seed=seed,
                    init_from=base_id if gh else None,
                )
                runs[spec.run_id] = {
                    "spec": spec,
                    "metrics": _metrics(acc, counts),
                    "fewshot": None,
                    "timing": {},
                }
    return runs


def test_aggregate_and_paired_differences() -> None:
    rows = analysis.run_summaries(_synthetic_runs(), "knn")
    assert len(rows) == 8
    cells = {(c["gh"], c["probe"]): c for c in analysis.aggregate(rows)}
    base = cells[(False, "knn")]
    assert base["runs"] == 4 and base["seeds"] == 2
    assert base["class_orders"] == ["default", "reversed"]
    assert base["deficit_few_mean"] == pytest.approx(5.0)
    assert base["deficit_few_sd"] == pytest.approx(np.std([4, 4, 6, 6], ddof=1))
    assert base["deficit_many_mean"] == pytest.approx(0.0)
    assert cells[(True, "knn")]["deficit_few_mean"] == pytest.approx(2.5)
    (diff,) = analysis.paired_differences(rows)
    assert diff["pairs"] == 4
    assert diff["deficit_few_mean"] == pytest.approx(-2.5)
    assert diff["deficit_few_sd"] == pytest.approx(np.std([-2, -2, -3, -3], ddof=1))
    assert diff["few_mean"] == pytest.approx(2.5)


def test_results_json_schema(tmp_path: Path) -> None:
    rows = analysis.run_summaries(_synthetic_runs(), "knn")
    records = report.results_records(analysis.aggregate(rows), "fashion_mnist-lt")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, list) and len(loaded) == 2
    for rec in loaded:
        assert rec["dataset"] == "fashion_mnist-lt" and rec["imbalance_ratio"] == 100.0
        assert rec["method"] == "simclr" and isinstance(rec["gh"], bool)
        assert rec["seeds"] == 2 and rec["primary"] is True
        for key in (
            "many",
            "medium",
            "few",
            "std",
            "avg",
            "deficit_many",
            "deficit_medium",
            "deficit_few",
        ):
            assert isinstance(rec[f"{key}_mean"], float)
            assert isinstance(rec[f"{key}_sd"], float)


@pytest.mark.parametrize(("quick", "gpu"), [(False, False), (True, False), (False, True)])
def test_every_plan_is_consistent_and_its_configs_load(quick: bool, gpu: bool) -> None:
    from geoharmony.configure import load_config

    runs = plan.build_plan(quick, gpu)
    ids = {s.run_id for s in runs}
    assert len(ids) == len(runs), "run ids are unique"
    position = {s.run_id: i for i, s in enumerate(runs)}
    for s in runs:
        if s.init_from is not None:
            assert position[s.init_from] < position[s.run_id] and s.gh
        if not s.balanced:
            assert s.reference in ids
        # Every override names a real key with a valid value (a typo would fail only mid-study).
        # Runs of the retired recipe stand as recorded: some name options retired since.
        if s.recipe == "paper":
            load_config(ROOT / s.config, list(s.overrides))
    if gpu:
        assert {s.group for s in runs} == {"reference", "gpu"}
        assert all("train.device=cuda" in s.overrides for s in runs)


def test_gpu_section_reports_gpu_runs_only() -> None:
    runs = _synthetic_runs()
    for entry in runs.values():
        spec = entry["spec"]
        assert isinstance(spec, RunSpec)
        if not spec.balanced:
            entry["spec"] = dataclasses.replace(spec, group="gpu", regime=plan.GPU_REGIME.name)
    rows = analysis.run_summaries(runs, "knn")
    text = "\n".join(
        sections.gpu_section(analysis.aggregate(rows), analysis.paired_differences(rows))
    )
    assert "| Deficit Few | 5.00 ± 1.15 | 2.50 ± 0.58 | +2.50 |" in text
    assert "not run yet" in "\n".join(sections.gpu_section([], []))


def test_plan_pairs_references_and_counts() -> None:
    runs = plan.build_plan()
    ids = {s.run_id for s in runs}
    assert len(ids) == len(runs), "run ids are unique"
    position = {s.run_id: i for i, s in enumerate(runs)}
    for s in runs:
        if s.init_from is not None:
            assert s.init_from in ids and position[s.init_from] < position[s.run_id]
            assert s.gh and s.pair_epoch is not None
        if not s.balanced:
            assert s.reference in ids
    # The balanced reference has (nearly) the long-tailed run's image count.
    assert sum(plan.PRIMARY.counts()) == 2478 and plan.PRIMARY.balanced_n_max() == 248
    methods = {s.method for s in runs if s.group == "primary"}
    assert methods == set(plan.METHODS)
    # The search regimes marked with_gh pair SimCLR+GH with their SimCLR runs at the warm-up.
    regime_gh = [s for s in runs if s.group == "regime" and s.gh]
    assert {s.regime for s in regime_gh} == {r.name for r in plan.REGIMES if r.with_gh} != set()
    for s in regime_gh:
        assert s.init_from == s.run_id.replace("simclr_gh", "simclr") and s.pair_epoch == 60
    picked = plan.select(runs, ["primary__r100_e80__simclr_gh__default__s0"])
    assert [s.run_id for s in picked] == [
        "primary__r100_e80__simclr__default__s0",
        "primary__r100_e80__simclr_gh__default__s0",
    ]
    # The order of the patterns is the priority; a +GH run still follows its baseline.
    picked = plan.select(
        runs,
        [
            "primary__r100_e80__focal_gh__default__s1",
            "ref__r100_e80__s0",
            "primary__*simclr_gh__default__s0",
        ],
    )
    assert [s.run_id for s in picked] == [
        "primary__r100_e80__focal__default__s1",
        "primary__r100_e80__focal_gh__default__s1",
        "ref__r100_e80__s0",
        "primary__r100_e80__simclr__default__s0",
        "primary__r100_e80__simclr_gh__default__s0",
    ]


def test_the_core_is_closed_and_gives_every_primary_cell_5_seeds_and_4_orders() -> None:
    runs = plan.build_plan()
    core = [s for s in runs if plan.in_core(s)]
    ids = {s.run_id for s in core}
    for s in core:  # everything a core run needs is in the core
        assert s.init_from is None or s.init_from in ids
        assert s.balanced or s.reference in ids
    for method in plan.METHODS:
        for gh in (False, True):
            cell = [s for s in core if s.group == "primary" and s.method == method and s.gh == gh]
            assert {s.seed for s in cell} == set(plan.SEEDS)
            assert {s.class_order for s in cell} == set(plan.ORDERS)
            assert len(cell) == len(plan.CORE_PRIMARY)
    # Every sensitivity run, and the regime search at seed 0 only.
    assert {s.run_id for s in runs if s.group == "sensitivity"} <= ids
    assert {s.seed for s in core if s.group == "regime"} == {0}
    # The fp32 study's core is under half its plan (the allocation study is all core).
    fp32 = [s for s in runs if s.regime in {r.name for r in (plan.PRIMARY, *plan.REGIMES)}]
    assert len([s for s in fp32 if plan.in_core(s)]) < len(fp32) / 2
    # The allocation study (issue 27): in the core, every +GH run's variant names its
    # allocation, except the labels-as-targets diagnostics, which have no allocation at all.
    allocation = [s for s in runs if s.group == "allocation"]
    assert allocation and {s.run_id for s in allocation} <= ids
    for s in allocation:
        if s.gh and not s.variant.startswith("targets=labels"):
            assert s.variant.startswith("allocation="), s.run_id
    assert {s.regime for s in allocation} == {plan.ALLOCATION.name}


PRIMARY = plan.PRIMARY.name


def _prior_record(
    run: str, epoch: int, eff: float, assignments: bool, true_eff: float = 5.0
) -> dict[str, object]:
    estimate = {"effective_number": eff, "kl": 0.3, "largest_share": 0.2, "nmi": 0.4}
    return {
        "run": run,
        "epoch": epoch,
        "true_effective_classes": true_eff,
        "estimates": {"anchor logits: bank": estimate},
        "assignments": {
            "prior": "oracle",
            "anchors": 10,
            "prior_effective_anchors": 5.0,
            "assignment_entropy": 0.3,
            "nmi_assigned_anchor": 0.5,
            "anchors_per_class": {"many": 4.0, "medium": 2.0, "few": 1.5},
            "few_on_many_owned_anchors": 0.1,
        }
        if assignments
        else None,
    }


def test_prior_check_section_groups_checkpoints_by_kind() -> None:
    records = [
        _prior_record(f"primary__{PRIMARY}__simclr__default__s0", 40, 9.0, False),
        _prior_record(f"primary__{PRIMARY}__simclr__reversed__s0", 40, 8.0, False),
        _prior_record(
            f"sensitivity__{PRIMARY}__simclr_gh_priororacle_K10__default__s0", 80, 6.0, True
        ),
        _prior_record(f"ref__{PRIMARY}__s0", 80, 10.0, False),
        # an assignments-only check (no estimators) of a search regime's +GH run
        _prior_record("regime__r100_e120__simclr_gh__default__s0", 120, 7.0, True)
        | {"estimates": {}},
    ]
    assert "not run yet" in "\n".join(sections.prior_check_section([]))
    text = "\n".join(sections.prior_check_section(records))
    header = "| estimator (K = 10 groups) | SimCLR @40 | SimCLR+GH (prior=oracle,K=10) @80 |"
    assert header + " balanced ref. @80 |" in text
    assert (
        "| anchor logits: bank | 8.50 ± 0.71 / 0.40 ± 0.00 | 6.00 / 0.40 | 10.00 / 0.40 |" in text
    )
    assert "| SimCLR+GH (prior=oracle,K=10) @80 | 1 | oracle, K=10 | 5.00 | 0.30 | 0.50 |" in text
    # Outside the primary regime a kind carries its regime: not pooled with the primary's.
    assert "| SimCLR+GH [r100_e120] @120 | 1 | oracle, K=10 |" in text


def test_recovery_table_compares_long_tailed_and_balanced_at_the_same_epoch() -> None:
    records = [
        _prior_record(f"primary__{PRIMARY}__simclr__default__s0", 40, 9.0, False),
        _prior_record(f"primary__{PRIMARY}__simclr__reversed__s0", 40, 8.0, False),
        _prior_record(f"ref__{PRIMARY}__s0", 40, 10.0, False, true_eff=10.0),
        _prior_record(f"ref__{PRIMARY}__s0", 80, 10.0, False, true_eff=10.0),
    ]
    lines = tables.recovery_table(records).splitlines()
    # Only epoch 40 has both kinds; the estimator finds 8.5 / 10, the truth is 5 / 10.
    assert lines[0].endswith("| balanced ref. @80 | SimCLR / ref. @40 |")
    assert lines[2].startswith("| anchor logits: bank |") and lines[2].endswith("| 0.85 |")
    assert lines[3] == "| true class prior |  |  |  | 0.50 |"


def test_goal_table_says_when_gh_halves_the_few_deficit() -> None:
    rows = analysis.run_summaries(_synthetic_runs(), "knn")
    table = tables.goal_table(goal.goal_rows(analysis.paired_differences(rows), "r"))
    # Baseline Few deficit 5 (4 and 6 by seed); GH halves it in every pair: t = -8.7. Exactly
    # half in every pair leaves no noise in the share: the bound is 50%, and a halving is not
    # ruled out (it happened).
    assert "| SimCLR+GH | knn | 4 | 5.00 | -2.50 | 50% | 50% | no | -8.7 |" in table
    assert table.rstrip().endswith("| yes |")


def _geometry(close: set[int], cos: float, etf: float) -> dict[str, object]:
    """Class-mean cosines 0.5 between all classes except ``cos`` between the ``close`` ones."""
    matrix = [
        [1.0 if i == j else (cos if i in close and j in close else 0.5) for j in range(10)]
        for i in range(10)
    ]
    return {"class_mean_cosines": matrix, "etf_deviation": etf, "effective_rank": 30.0}


def test_geometry_is_grouped_by_the_runs_counts_for_run_and_reference() -> None:
    ref = _spec("ref0", group="reference", class_order="balanced", reference=None)
    base = _spec("b", order="reversed")
    gh = _spec("g", gh=True, order="reversed", init_from="b")
    counts = COUNTS[::-1]  # the Few classes are 0, 1, 2
    runs: dict[str, dict[str, object]] = {
        "ref0": {"spec": ref, "metrics": {"geometry": _geometry(set(), 0.5, 1.0)}},
        "b": {
            "spec": base,
            "metrics": {**_metrics([0.0] * 10, counts), "geometry": _geometry({0, 1, 2}, 0.9, 1.4)},
        },
        "g": {
            "spec": gh,
            "metrics": {**_metrics([0.0] * 10, counts), "geometry": _geometry({0, 1, 2}, 0.8, 1.3)},
        },
    }
    rows = {r["run_id"]: r for r in analysis.geometry_summaries(runs)}
    assert set(rows) == {"b", "g"}
    assert rows["b"]["cos_few_few"] == pytest.approx(0.9)
    assert rows["b"]["cos_many_few"] == pytest.approx(0.5)
    assert rows["b"]["ref_cos_few_few"] == pytest.approx(0.5)
    assert rows["b"]["etf_deviation"] == 1.4 and rows["b"]["ref_etf_deviation"] == 1.0
    table = tables.geometry_table(list(rows.values()), "r").splitlines()
    ref_row, gh_row = table[2], table[-1]
    assert ref_row.startswith("| balanced ref.") and "| 0.500 |" in ref_row
    # The paired change of the Few-Few cosine: 0.8 - 0.9.
    assert gh_row.startswith("| SimCLR+GH |") and gh_row.endswith("| -0.100 |")


def test_goal_shares_are_of_the_paired_baselines_own_deficit() -> None:
    # A sensitivity variant paired with the seed-1 baselines only (deficit 6, where the whole
    # baseline cell's is 5) takes their Few deficit from 6 to 4: a third closed, not 2 / 5.
    runs = _synthetic_runs()
    for order, counts in (("default", COUNTS), ("reversed", COUNTS[::-1])):
        acc = [80.0 - (4.0 if counts[c] <= 27 else 0.0) for c in range(10)]
        spec = _spec(
            f"w2_{order}_1",
            gh=True,
            order=order,
            seed=1,
            group="sensitivity",
            variant="w=2",
            init_from=f"b_{order}_1",
        )
        runs[spec.run_id] = {"spec": spec, "metrics": _metrics(acc, counts), "fewshot": None}
    diffs = analysis.paired_differences(analysis.run_summaries(runs, "knn"))
    row = next(r for r in goal.goal_rows(diffs, "r") if r["name"] == "SimCLR+GH (w=2)")
    assert row["deficit"] == 6.0 and row["change"] == -2.0
    assert row["closed"] == pytest.approx(1 / 3)
    assert math.isnan(row["closed_bound"]) and row["halving_ruled_out"] is None  # 2 pairs


def test_summary_keeps_label_reading_diagnostics_apart_from_methods() -> None:
    def row(name: str, change: float, diagnostic: bool, met: bool = False) -> dict[str, object]:
        return {
            "name": name,
            "diagnostic": diagnostic,
            "probe": "knn",
            "pairs": 4,
            "deficit": 5.0,
            "change": change,
            "many_change": -1.0,
            "gap_change": change + 1.0,
            "closed": -change / 5.0,
            "closed_bound": -change / 5.0 + 0.1,
            "halving_ruled_out": not diagnostic,
            "t": -3.0,
            "std": -0.1,
            "avg": 0.1,
            "met": met,
        }

    goal = [
        row("SimCLR+GH", -0.5, False),
        row("SimCLR+GH (prior=oracle,K=10)", -1.0, True),
        row("SimCLR+GH (targets=labels,K=10)", -3.0, True, met=True),
    ]
    text = "\n".join(summary.summary([], goal, {}, "r"))
    # The diagnostics neither count towards the goal nor win "largest reduction".
    assert "Goal met by 0 of 1 paired cells of methods with 3+ pairs" in text
    assert "The largest reduction of the kNN Few deficit: SimCLR+GH, -0.50 (10% of the" in text
    assert "the best of 1 kNN cells" in text
    assert "True classes as GH's targets (diagnostic)" in text
    # Only the method counts for the power line (the diagnostics' halving is not ruled out).
    assert (
        "Halving of the Few deficit ruled out (one-sided paired test at 5%) in 1 of 1 kNN "
        "method cells of 3+ pairs and in 1 of 1 cells over all probes" in text
    )
    assert "knn -3.00 (60% of the deficit, t = -3.0, 4 pairs), Many -1.00, Few - Many -2.00" in text
    # Where every method raises the deficit, the best cell is not called a reduction.
    rises = "\n".join(summary.summary([], [row("SimCLR+GH", 0.4, False)], {}, "r"))
    assert "No cell reduces the kNN Few deficit; the smallest rise: SimCLR+GH, +0.40" in rises
    table = tables.goal_table(goal)
    assert "| SimCLR+GH (targets=labels,K=10) [diagnostic] | knn |" in table


def test_regime_search_names_the_regime_whose_few_deficit_stands_out_most() -> None:
    primary = plan.Regime("p", 100, 1000, 80, 40)
    longer = plan.Regime("long", 100, 1000, 120, 60)
    unrun = plan.Regime("unrun", 1000, 1000, 120, 60)

    def cell(group: str, regime: str, mean: float, sd: float, runs: int) -> dict[str, object]:
        keys = dict(group=group, regime=regime, method="simclr", gh=False, variant="")
        others = ("deficit_many", "deficit_medium", "deficit_few_minus_many", "avg")
        stats = {f"{k}_{s}": 0.0 for k in others for s in ("mean", "sd")}
        few = {"deficit_few_mean": mean, "deficit_few_sd": sd}
        return {**keys, **stats, **few, "probe": "knn", "runs": runs}

    # t = 4 / (2 / sqrt(9)) = 6 in the primary regime (9 runs); 3 / (1 / sqrt(4)) = 6 in the
    # longer one, whose deficit stands out more (mean / sd 3 against 2): t alone grows with runs.
    cells = [cell("primary", "p", 4.0, 2.0, 9), cell("regime", "long", 3.0, 1.0, 4)]
    regimes = [primary, longer, unrun]
    sentence = summary.regime_search_sentence(cells, regimes, "p")
    assert sentence == (
        "- Regime search (SimCLR, kNN Few deficit): clearest in `long` 3.00 ± 1.00 "
        "(mean / sd 3.0, t = +6.0, 4 runs); then `p` 4.00 ± 2.00 (mean / sd 2.0, t = +6.0, "
        "9 runs)."
    )
    # One regime alone is no search; two runs give no t.
    assert summary.regime_search_sentence(cells[:1], regimes, "p") is None
    assert summary.regime_search_sentence([cells[0], {**cells[1], "runs": 2}], regimes, "p") is None
    table = tables.regime_table(cells, regimes, "p").splitlines()
    assert table[0].split(" | ")[8] == "t (Few)"
    assert table[2].split(" | ")[8] == "+6.0" and table[3].split(" | ")[8] == "+6.0"
    assert table[4].count("not run yet") == len(table[0].split(" | ")) - 4
    # An unfinished regime says how many of its planned runs it holds.
    table = tables.regime_table(cells, regimes, "p", {"p": 9, "long": 8}).splitlines()
    assert [row.split(" | ")[3] for row in table[2:4]] == ["9", "4 of 8 planned"]


def test_planned_regime_runs_count_the_core_simclr_baselines() -> None:
    full = plan.build_plan()
    planned = sections._planned_regime_runs(full, quick=False)
    # The core: 7 primary SimCLR runs (CORE_PRIMARY), each search regime's orders at its seeds.
    assert planned[plan.PRIMARY.name] == len(plan.CORE_PRIMARY)
    for regime in plan.REGIMES:
        assert planned[regime.name] == len(plan.ORDERS) * len(plan.CORE_REGIME_SEEDS)
