"""``write_report`` end to end on synthetic run folders of the quick plan (and a GPU pair), through
the committed run records that the report reads."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import (  # noqa: E402
    figures,
    plan,
    records,
    report,
    sections,
    selection,
    summary,
    tables,
)
from benchmarks.quality.analysis import VALIDATION_PROBE, run_summaries  # noqa: E402
from benchmarks.quality.plan import RunSpec  # noqa: E402


def _counts(spec: RunSpec) -> list[int]:
    if spec.balanced:
        return [40] * 10
    counts = plan.QUICK_REGIME.counts()
    return counts[::-1] if spec.class_order == "reversed" else counts


def _write_run(root: Path, spec: RunSpec) -> None:
    counts = _counts(spec)
    tail = sorted(range(10), key=lambda c: counts[c])[:3]
    gap = 0.0 if spec.balanced else (2.0 if spec.gh else 4.0) + spec.seed
    acc = [80.0 - (gap if c in tail else 0.0) + 0.1 * c for c in range(10)]
    run = root / spec.run_id
    run.mkdir(parents=True)
    metrics = {
        "per_class": acc,
        "knn": {"per_class": [a - 5 for a in acc]},
        "class_counts": counts,
        "group_rule": "thirds",
        "dataset": "fashion_mnist-lt",
        "config": {"gh": {"num_anchors": 10, "prior": "bank"}},
        "prior": {"effective_number_estimated": 9.0, "effective_number_true": 5.2, "kl": 0.3}
        if spec.gh
        else None,
        "geometry": {
            "class_mean_cosines": [[1.0 if i == j else 0.1 for j in range(10)] for i in range(10)],
            "etf_deviation": 0.5,
            "effective_rank": 20.0,
        },
        "history": [{"epoch": 1, "seconds": 2.0, "prior_max_share": 0.2}],
        "train_seconds": 10.0,
        "eval_seconds": 1.0,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "fewshot.json").write_text(json.dumps({"shots": {}}))
    (run / "timing.json").write_text(json.dumps({"pretrain": [11.0], "probes": [2.0]}))
    (run / "command.txt").write_text(f"python -m geoharmony.cli pretrain --output {run}\n")


def test_report_from_synthetic_runs(tmp_path: Path) -> None:
    specs = plan.build_plan(quick=True)
    for spec in specs:
        _write_run(tmp_path / "runs", spec)
    gpu = [
        s
        for s in plan.build_plan(gpu=True)
        if s.seed == 0 and s.class_order in ("default", "balanced")
    ]
    for spec in gpu:
        _write_run(tmp_path / "gpu", spec)
    store, gpu_store = tmp_path / "records", tmp_path / "gpu_records"
    assert len(records.sync_records(specs, tmp_path / "runs", store)) == len(specs)
    records.sync_records(plan.build_plan(gpu=True), tmp_path / "gpu", gpu_store)
    # The report needs the records only: the run folders may be gone.
    shutil.rmtree(tmp_path / "runs")
    shutil.rmtree(tmp_path / "gpu")
    docs = tmp_path / "docs"
    out = report.write_report(specs, store, docs, quick=True)
    assert out["runs"] == len(specs)
    assert out["figures"] == ["deficit_vs_frequency.png", "class_mean_cosines.png"]
    text = (docs / "results.md").read_text()
    for section in (
        "## Summary",
        "## Main table",
        "### The goal",
        "## Sensitivity",
        "## Class-mean geometry",
        "## Commands",
    ):
        assert section in text
    # kNN Few deficit of the baseline: 4 points on seed 0 in both orders; GH halves it.
    assert "Few deficit against the balanced reference: 4.00 ± 0.00 points over 2 runs" in text
    # The regime search lists the (quick) primary regime and the searched one, each with its runs.
    search = text.split("## Regime search")[1].split("\n## ")[0]
    for regime in (plan.QUICK_REGIME, plan.QUICK_SEARCH):
        rows = [r for r in search.splitlines() if r.startswith(f"| {regime.name}: ")]
        assert [r.split(" | ")[2] for r in rows] == ["knn", "linear"], regime.name
    results = json.loads((docs / "results.json").read_text())
    assert {r["probe"] for r in results} == {"knn", "linear"}
    assert "## Replication" not in text
    # The same records give the same report, byte for byte (no clock in it).
    report.write_report(specs, store, tmp_path / "again", quick=True)
    assert (tmp_path / "again" / "results.md").read_text() == text
    # An archived report (runs lost, aggregates kept) is set beside the recomputed cells.
    archived = [
        r | {"runs": 7, "deficit_few_mean": 9.87}
        for r in results
        if r["method"] == "simclr" and not r["gh"] and r["group"] == "primary"
    ]
    (docs / "archive" / "old").mkdir(parents=True)
    (docs / "archive" / "old" / "results.json").write_text(json.dumps(archived))
    # The full (non-quick) report adds the GPU section from its own store; outside the
    # repository's docs/ its study-noise file goes beside results.md, not into the package.
    out = report.write_report(specs, store, docs, gpu_store=gpu_store)
    assert out["noise"] == str(docs / "study_noise.json")
    text = (docs / "results.md").read_text()
    replication = text.split("## Replication of archived reports")[1].split("\n## ")[0]
    rows = [line for line in replication.splitlines() if line.startswith("| SimCLR |")]
    assert [row.split(" | ")[1:5] for row in rows] == [
        ["knn", "7", "2", "9.87 ± 0.00"],
        ["linear", "7", "2", "9.87 ± 0.00"],
    ]
    assert "4.00 ± 0.00" in rows[0].split(" | ")[5]  # the records' own kNN Few deficit
    assert "## GPU scale" in text and "not run yet" not in text.split("## GPU scale")[1]
    assert "{" not in text, "an f-string placeholder leaked into the report"


def test_timing_table_counts_only_a_paired_runs_own_epochs() -> None:
    specs = plan.build_plan(quick=True)
    gh = next(s for s in specs if s.init_from)
    base = next(s for s in specs if s.run_id == gh.init_from)
    assert gh.pair_epoch == 2
    # The paired run's history holds its baseline's two epochs (2 s each), then its own (3 s).
    history = [{"epoch": e, "seconds": 2.0 if e <= 2 else 3.0} for e in range(1, 5)]
    runs = {
        spec.run_id: {
            "spec": spec,
            "metrics": {"history": history, "eval_seconds": 1.0},
            "timing": {},
        }
        for spec in (base, gh)
    }
    table = tables.timing_table(runs).splitlines()[2:]
    rows = {cells[3]: cells[5] for cells in (line.split(" | ") for line in table)}
    assert rows == {"baseline": "10", "+GH (paired, 2nd half only)": "6"}


def test_machines_tallies_runs_and_says_whether_pairs_share_a_machine() -> None:
    specs = plan.build_plan(quick=True)
    gh = next(s for s in specs if s.init_from)
    base = next(s for s in specs if s.run_id == gh.init_from)
    other = plan.RunSpec(**{**vars(gh), "run_id": gh.run_id + "_copy"})
    runs = {s.run_id: {"spec": s, "machine": "CPU A"} for s in (base, gh, other)}
    assert sections._machines(runs) == (
        "CPU A (3 runs); every +GH run was made on its baseline's machine (2 pairs)"
    )
    runs[gh.run_id]["machine"] = "CPU B"
    assert sections._machines(runs).endswith(
        "; 1 of 2 +GH runs ran on another machine than their baselines"
    )


def _selection_runs() -> dict[str, dict]:
    """SimCLR baselines (Few gap 4 on both splits) and +GH settings whose held-out and test
    Few gaps differ, over the sensitivity design plus one pair outside it."""
    counts = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]

    def entry(spec: RunSpec, val_gap: float, test_gap: float, order_counts: list[int]) -> dict:
        tail = {c for c in range(10) if order_counts[c] <= 27}
        acc = [80.0 - (test_gap if c in tail else 0.0) for c in range(10)]
        val = [70.0 - (val_gap if c in tail else 0.0) for c in range(10)]
        metrics = {"per_class": acc, "knn": {"per_class": acc}, "class_counts": order_counts}
        fewshot = {"shots": {}, "validation": {"knn": {"per_class": val}}}
        return {"spec": spec, "metrics": metrics, "fewshot": fewshot, "timing": {}}

    def spec(run_id: str, **kw: object) -> RunSpec:
        base = dict(run_id=run_id, group="primary", regime="r", method="simclr", gh=False)
        base |= dict(seed=0, class_order="default", config="c.yaml", overrides=())
        base |= dict(imbalance_ratio=100.0, reference="ref0")
        return RunSpec(**(base | kw))  # type: ignore[arg-type]

    runs: dict[str, dict] = {}
    for seed in (0, 1):
        ref = spec(f"ref{seed}", group="reference", seed=seed, class_order="balanced")
        runs[ref.run_id] = entry(ref, 0.0, 0.0, [248] * 10)
    # (variant, group, val gap, test gap, seeds); baselines have gap 4 on both splits.
    settings = (
        ("", "primary", 3.5, 3.0, (0, 1)),
        ("w=2", "sensitivity", 2.0, 3.0, (0, 1)),
        ("K=30", "sensitivity", 0.0, 4.0, (0,)),  # 2 pairs: too few to be chosen
        ("targets=labels,K=10", "sensitivity", 0.0, 0.0, (0, 1)),  # reads labels: never chosen
    )
    orders = {"default": counts, "reversed": counts[::-1], "random1": counts[3:] + counts[:3]}
    for order, order_counts in orders.items():
        for seed in (0, 1):
            common = dict(seed=seed, class_order=order, reference=f"ref{seed}")
            base = spec(f"b_{order}_{seed}", **common)
            runs[base.run_id] = entry(base, 4.0, 4.0, order_counts)
            for variant, group, val_gap, test_gap, seeds in settings:
                if seed not in seeds or (order == "random1" and variant):
                    continue
                if order == "random1":  # outside the design: a huge held-out gain, ignored
                    val_gap = -20.0
                gh = spec(
                    f"g{variant}_{order}_{seed}",
                    gh=True,
                    group=group,
                    variant=variant,
                    init_from=base.run_id,
                    **common,
                )
                runs[gh.run_id] = entry(gh, val_gap, test_gap, order_counts)
    return runs


def test_selection_chooses_on_held_out_images_only() -> None:
    runs = _selection_runs()
    rows = {p: run_summaries(runs, p) for p in ("knn", VALIDATION_PROBE)}
    text = "\n".join(sections.selection_section(rows, "r"))
    table = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
        for line in text.splitlines()
        if line.startswith("| ") and "pairs" not in line
    }
    assert set(table) == {"preset (paper-faithful)", "w=2", "K=30"}
    assert table["preset (paper-faithful)"][:2] == ["4", "-0.50 ± 0.00"]
    assert table["K=30"][:2] == ["2", "-4.00 ± 0.00"]
    # w = 2 wins on held-out images (-2 against the preset's -0.5; K = 30 has 2 pairs only) and
    # is then reported with its *test* change (-1), not the held-out one.
    assert (
        "**w=2** (-2.00); on the test split its kNN Δ Few deficit is -1.00 ± 0.00 over 4 pairs"
        in text
    )
    assert "over all 10 pairs" in text


def test_goal_change_says_when_too_few_pairs_to_judge_the_noise() -> None:
    row = {"change": -0.23, "closed": 0.03, "closed_bound": float("nan"), "t": float("nan")}
    one = summary.goal_change({**row, "pairs": 1})
    assert one == "-0.23 (3% of the deficit, too few pairs to judge the noise, 1 pair)"
    within_noise = summary.goal_change({**row, "pairs": 4, "t": -0.5})
    assert within_noise == "-0.23 (of a baseline deficit within noise, t = -0.5, 4 pairs)"
    bounded = summary.goal_change({**row, "pairs": 4, "t": -0.5, "closed_bound": 0.4})
    assert bounded == "-0.23 (3% of the deficit, t = -0.5, 4 pairs)"


def test_held_out_choice_gives_the_chosen_settings_test_numbers() -> None:
    runs = _selection_runs()
    rows = {p: run_summaries(runs, p) for p in ("knn", VALIDATION_PROBE)}
    choice = selection.held_out_choice(*selection.held_out_pairs(rows, "r"))
    assert choice is not None
    assert (choice["setting"], choice["held_out"], choice["pairs"]) == ("w=2", -2.0, 4)
    assert (choice["test_mean"], choice["test_sd"]) == (-1.0, 0.0)
    assert math.isnan(choice["t"])  # no spread over the pairs: no t
    said = summary.choice_sentence(choice)
    assert "**w=2** (-2.00); on the test split its kNN Δ Few deficit is -1.00 ± 0.00" in said
    assert "**w=2** (+0.30)" in summary.choice_sentence({**choice, "held_out": 0.3})


def test_figures_are_drawn_only_with_data_and_leave_pyplot_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    assert figures.make_figures({}, {}, tmp_path / "figures", "r") == []
    assert list((tmp_path / "figures").iterdir()) == []
    # Per-class deficits only (no run records with a class-mean geometry): one figure.
    rows = {"knn": run_summaries(_selection_runs(), "knn")}
    assert figures.make_figures({}, rows, tmp_path / "figures", "r") == ["deficit_vs_frequency.png"]
    assert (tmp_path / "figures" / "deficit_vs_frequency.png").read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == []


def test_allocation_section_from_synthetic_runs(tmp_path: Path) -> None:
    """The allocation study's section: baseline deficits, paired changes, the goal, and the
    prior's long-tailed / balanced ratio, on synthetic runs of its search."""
    regime = plan.ALLOCATION.name
    wanted = ("allocation=balanced", "allocation=relaxed", "targets=labels,K=10")
    specs = [
        s
        for s in plan.build_plan()
        if s.regime == regime
        and s.method == "simclr"
        and s.seed in plan.SENSITIVITY_SEEDS
        and (not s.gh or s.variant in wanted)
    ]
    assert {s.group for s in specs} == {"reference", "allocation"}
    for spec in specs:
        _write_run(tmp_path / "runs", spec)
    for spec in specs:  # balanced +GH runs: a prior twice as spread as the long-tailed runs'
        if spec.balanced and spec.gh:
            path = tmp_path / "runs" / spec.run_id / "metrics.json"
            metrics = json.loads(path.read_text())
            metrics["prior"] |= {"effective_number_estimated": 18.0, "effective_number_true": 10.0}
            path.write_text(json.dumps(metrics))
    store = tmp_path / "records"
    records.sync_records(specs, tmp_path / "runs", store)
    report.write_report(specs, store, tmp_path / "docs")
    text = (tmp_path / "docs" / "results.md").read_text()
    section = text.split("## Surrogate-label allocations beyond the paper")[1].split("\n## ")[0]
    # Baselines lose 4 + seed points on their 3 tail classes (see _write_run): Few deficit
    # 4.50 ± 0.58, Avg 75.45 - 0.3 (4 + seed) = 74.10 ± 0.15 sqrt(4/3) = 0.17 over 4 runs.
    baselines = [r for r in section.splitlines() if r.startswith("| SimCLR | knn |")]
    assert baselines == [
        "| SimCLR | knn | 4 | 4.50 ± 0.58 | 0.00 ± 0.00 | 4.50 ± 0.58 | 74.10 ± 0.17 | +15.6 |"
    ]
    # +GH runs lose 2 + seed: every pair closes exactly 2 points.
    paired = [r for r in section.splitlines() if "(allocation=relaxed) | knn | 4 |" in r]
    assert paired and paired[0].split(" | ")[3] == "-2.00 ± 0.00"
    # Long-tailed prior 9 effective anchors, balanced 18: ratio 0.50; the truth 5.2 / 10.
    ratios = [r for r in section.splitlines() if r.startswith("| allocation=relaxed | 4 / 2 |")]
    assert ratios and ratios[0].endswith("| 0.50 |")
    # Against the balanced run of the same setting (flat accuracies, like the reference): the
    # +GH runs' own loss of 2 + seed on the tail, beside the baselines' 4 + seed.
    # 2.5 of the baselines' 4.5 points remain (56%).
    same = [r for r in section.splitlines() if r.startswith("| allocation=relaxed | knn | 4 |")]
    assert same == [
        "| allocation=relaxed | knn | 4 | 2.50 ± 0.58 | 0.00 ± 0.00 | 2.50 ± 0.58 "
        "| 4.50 ± 0.58 | 0.00 ± 0.00 | 4.50 ± 0.58 | 56% |"
    ]
    # The labels diagnostic against its own balanced runs: the same 56% of the deficit left.
    labels = [r for r in section.splitlines() if r.startswith("| targets=labels,K=10 | knn |")]
    assert labels and labels[0].endswith("| 4.50 ± 0.58 | 0.00 ± 0.00 | 4.50 ± 0.58 | 56% |")
    # The labels row carries no prior of its own into the tracking table.
    assert "| targets=labels,K=10 | 4 / 2 |" not in section
    assert "long-tailed / balanced: 0.52." in section
    # The summary counts the study: its baselines' deficit, the goal, the range of changes.
    summary_text = text.split("## Summary (computed)")[1].split("\n## ")[0]
    assert (
        "- Allocations (regime `r100_e80_bf16`): long-tailed SimCLR's kNN Few deficit 4.50 ± 0.58 "
        "(4 runs, t = +15.6); goal met by 0 of 2 settings with 3+ pairs, whose kNN Δ Few deficit "
        "runs from -2.00 to -2.00 (2 lower it)." in summary_text
    )


def _check(order: str, few_purity: float, gh: bool = True) -> dict:
    """A prior-check record of the allocation regime: a final +GH checkpoint (with its
    allocation checks) or a SimCLR baseline's at epoch 40, its neighbourhoods by class order."""
    method = "simclr_gh_allocationrelaxed" if gh else "simclr"
    purity = {"backbone": {"few": few_purity, "many": 0.9, "medium": 0.6}}
    density = {"backbone": {"few": few_purity / 2, "many": 0.5, "medium": 0.5}}
    return {
        "run": f"allocation__{plan.ALLOCATION.name}__{method}__{order}__s0",
        "epoch": 80 if gh else 40,
        "assignments": {"nmi_assigned_anchor": 0.4} if gh else None,
        "neighbour_purity": purity,
        "local_density": density,
    }


def test_neighbourhood_table_counts_purity_and_density_by_class_order() -> None:
    """The allocation section's neighbourhood table: the final +GH checkpoints pooled, the
    baselines' checkpoints by kind, each class order its own row (mean ± sd over records)."""
    checks = [
        *(_check(order, purity) for order, purity in (("default", 0.6), ("reversed", 0.3))),
        _check("default", 0.4),  # a second +GH checkpoint in the default order
        _check("default", 0.5, gh=False),
    ]
    rows = tables.neighbourhood_table(checks).splitlines()
    assert rows[0] == (
        "| checkpoints | class order | n | own-class neighbours, Few | own-class, Many "
        "| density rank Few, backbone | density rank Many, backbone |"
    )
    assert rows[2:] == [
        "| +GH final checkpoints | default | 2 | 0.50 ± 0.14 | 0.90 ± 0.00 | 0.25 ± 0.07 "
        "| 0.50 ± 0.00 |",
        "| +GH final checkpoints | reversed | 1 | 0.30 | 0.90 | 0.15 | 0.50 |",
        "| SimCLR [r100_e80_bf16] @40 | default | 1 | 0.50 | 0.90 | 0.25 | 0.50 |",
    ]
    assert "no neighbourhood checks" in tables.neighbourhood_table([])


def _synthetic_store(tmp_path: Path) -> tuple[list[RunSpec], Path]:
    """The quick plan's synthetic runs (:func:`_write_run`) recorded in ``tmp_path/records``."""
    specs = plan.build_plan(quick=True)
    for spec in specs:
        _write_run(tmp_path / "runs", spec)
    store = tmp_path / "records"
    records.sync_records(specs, tmp_path / "runs", store)
    return specs, store


def test_the_hand_written_reading_survives_a_regeneration_byte_for_byte(tmp_path: Path) -> None:
    specs, store = _synthetic_store(tmp_path)
    docs = tmp_path / "docs"
    first = report.write_report(specs, store, docs, quick=True)
    assert first["reading"].startswith("stub")
    generated = (docs / "results.md").read_text().split(report.MARKER, 1)[1]
    # A reading with what a careless rewrite would change: trailing blanks, a CRLF line, a
    # heading, an HTML comment, no blank line before the marker, non-ASCII text.
    reading = (
        "# My reading  \n\nDated 2026-12-07.\r\n## Not a generated section\n"
        "<!-- a note -->\n- GH: Δ Few deficit -0.58, 12% ± nothing\t\n"
    )
    (docs / "results.md").write_bytes((reading + report.MARKER + "\nstale tables\n").encode())
    second = report.write_report(specs, store, docs, quick=True)
    assert second["reading"] == "kept"
    text = (docs / "results.md").read_bytes().decode()
    assert text == reading + report.MARKER + generated  # the reading as it was, tables anew
    assert "stale tables" not in text
    # And again: a regeneration changes nothing.
    report.write_report(specs, store, docs, quick=True)
    assert (docs / "results.md").read_bytes().decode() == text
    assert report.kept_reading(docs / "results.md") == reading


def test_the_report_writes_the_noise_that_compare_reads(tmp_path: Path) -> None:
    """The study-noise file of a report (beside its results.md outside the repository's docs/)
    holds each primary cell's Few deficit spread and GH's paired change, and the compare
    reading quotes exactly those numbers."""
    from geoharmony.eval import reading

    specs, store = _synthetic_store(tmp_path)
    out = report.write_report(specs, store, tmp_path / "docs", quick=True)
    noise_file = tmp_path / "docs" / "study_noise.json"
    assert out["noise"] == str(noise_file)
    assert report.noise_path(tmp_path / "docs", quick=False) == noise_file
    assert report.noise_path(records.REPO / "docs", quick=False) == report.NOISE_FILE
    assert report.noise_path(records.REPO / "docs", quick=True) != report.NOISE_FILE
    noise = json.loads(noise_file.read_text())
    # Baselines lose 4 + seed points on the tail, +GH runs 2 + seed (seed 0, two class orders).
    assert noise["methods"]["simclr"]["display_name"] == "SimCLR"
    assert noise["methods"]["simclr"]["knn"] == {
        "baseline": {"mean": 4.0, "sd": 0.0, "runs": 2},
        "gh": {"mean": 2.0, "sd": 0.0, "runs": 2},
        "change": {"mean": -2.0, "sd": 0.0, "pairs": 2},
    }
    assert noise["regime"]["name"] == plan.QUICK_REGIME.name
    assert noise["regime"]["settings"]["prior"] == "bank"
    study = reading.load_study(noise_file)
    run = {"method": "simclr", "gh": False, "data": {}}
    d = {"deficit_many": 0.0, "deficit_medium": 0.0, "deficit_few": 3.0}
    text = reading.write_reading([run], {"knn": [{**d, "deficit_few_minus_many": 3.0}]}, study)
    assert (
        f"4.00 ± 0.00 (mean ± sd over 2 runs: seeds and class orders, {plan.QUICK_REGIME.name})"
        in text
    )
