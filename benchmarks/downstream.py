"""Downstream benchmark: long-tailed fine-tuning after SimCLR vs SimCLR+GH pretraining.

On Fashion-MNIST-LT (imbalance 100), for each seed:

1. pretrain SimCLR (``configs/downstream/fmnist_lt_simclr.yaml``), pausing at the end of the GH
   warm-up to keep that checkpoint, then finishing;
2. pretrain SimCLR+GH (``configs/downstream/fmnist_lt_simclr_gh.yaml``) from that checkpoint
   (paired runs: the first phase is shared, so a difference is GH's alone);
3. fine-tune both on the labelled long-tailed set with ``geoharmony finetune``: linear with the
   logit-adjusted loss (tau 1), linear with cross-entropy, and full fine-tuning with the
   logit-adjusted loss; each is tested on the balanced test set.

It then writes a generated section (mean +- sd over seeds of Many/Med/Few/Std/Avg, and the
paired GH - baseline difference) into ``docs/results_downstream.md`` and every number into
``WORK/summary.json``. Finished steps are skipped on a rerun.

    python benchmarks/downstream.py            # the benchmark (see the doc section for its time)
    python benchmarks/downstream.py --quick    # a few-minute check of the whole pipeline
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from geoharmony.cli import main as geoharmony
from geoharmony.configure import load_config
from geoharmony.engine.checkpoint import checkpoint_path
from geoharmony.eval.probes import upgrade_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "SimCLR": REPO / "configs" / "downstream" / "fmnist_lt_simclr.yaml",
    "SimCLR+GH": REPO / "configs" / "downstream" / "fmnist_lt_simclr_gh.yaml",
}
# Quick mode: the same pipeline at smoke scale (numbers are not meaningful).
QUICK_OVERRIDES = [
    "data.n_max=300",
    "optim.epochs=4",
    "optim.warmup_epochs=1",
    "gh.warmup_epochs=2",
    "gh.ramp_epochs=1",
    "train.checkpoint_every=2",
]
# name -> (mode, loss, title)
SETTINGS = {
    "linear_la": ("linear", "la", "Linear (frozen backbone), logit-adjusted loss, tau 1"),
    "linear_ce": ("linear", "ce", "Linear (frozen backbone), cross-entropy"),
    "full_la": ("full", "la", "Full fine-tuning, logit-adjusted loss, tau 1"),
}
ROWS = (("Many", "many"), ("Med", "medium"), ("Few", "few"), ("Std", "std"), ("Avg", "avg"))


class Timings:
    """Wall seconds of every step, kept in ``WORK/timings.json`` across (resumed) invocations.

    ``stages``: ``{stage: {step: seconds}}`` (rerunning a step replaces its time);
    ``conditions``: torch threads and the machine's 1/5/15-minute load average when each
    invocation that ran a step started (the machine may be shared).
    """

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.stages: dict[str, dict[str, float]] = data.get("stages", {})
        self.conditions: list[str] = data.get("conditions", [])
        load = "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
        self._condition = f"{threads} torch thread(s), load average {load}"
        self._noted = False

    def record(self, stage: str, step: str, seconds: float) -> None:
        if not self._noted:
            self.conditions.append(self._condition)
            self._noted = True
        self.stages.setdefault(stage, {})[step] = seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"stages": self.stages, "conditions": self.conditions}
        self.path.write_text(json.dumps(data, indent=2) + "\n")

    def totals(self) -> dict[str, tuple[int, float]]:
        """``{stage: (steps, seconds)}``."""
        return {k: (len(v), sum(v.values())) for k, v in self.stages.items()}


def run(argv: list[str]) -> float:
    """Run one geoharmony command in this process; return its wall time."""
    print("$ geoharmony " + shlex.join(argv), flush=True)
    started = time.perf_counter()
    code = geoharmony(argv)
    if code != 0:
        raise SystemExit(f"geoharmony {argv[0]} failed with exit code {code}")
    return time.perf_counter() - started


def pretrain(work: Path, seed: int, overrides: list[str], timings: Timings) -> None:
    """The paired SimCLR and SimCLR+GH runs of one seed."""
    cfg = load_config(CONFIGS["SimCLR"], overrides)
    epochs, warmup = cfg.optim.epochs, cfg.gh.warmup_epochs
    ov = [*overrides, f"train.seed={seed}"]
    base, gh = work / f"simclr_s{seed}", work / f"simclr_gh_s{seed}"
    warm = base / "warmup.ckpt"
    if not checkpoint_path(base / "checkpoints", epochs).is_file():
        common = ["pretrain", "--config", str(CONFIGS["SimCLR"]), "--output", str(base)]
        if not warm.is_file():
            t = run([*common, "--stop-after", str(warmup), "--no-eval", *ov])
            shutil.copyfile(checkpoint_path(base / "checkpoints", warmup), warm)
            timings.record("pretrain SimCLR", f"s{seed} to warm-up end", t)
        t = run([*common, "--no-eval", *ov])
        timings.record("pretrain SimCLR", f"s{seed} rest", t)
    if not checkpoint_path(gh / "checkpoints", epochs).is_file():
        argv = ["pretrain", "--config", str(CONFIGS["SimCLR+GH"]), "--output", str(gh)]
        t = run([*argv, "--init-from", str(warm), "--no-eval", *ov])
        timings.record("pretrain SimCLR+GH (from the warm-up end)", f"s{seed}", t)


def finetune(
    run_dir: Path, name: str, full_epochs: int, overrides: list[str], timings: Timings
) -> dict[str, Any]:
    mode, loss, _ = SETTINGS[name]
    out = run_dir / f"ft_{name}"
    if not (out / "metrics.json").is_file():
        extra = ["--epochs", str(full_epochs)] if mode == "full" else []
        argv = ["finetune", "--checkpoint", str(run_dir), "--output", str(out)]
        argv += ["--mode", mode, "--loss", loss, "--no-progress", *extra, *overrides]
        timings.record(f"finetune {name}", run_dir.name, run(argv))
    # The fine-tuned classifier's block next to the run's keys (seed, ...), old files included.
    result = upgrade_metrics(json.loads((out / "metrics.json").read_text()))
    return {**result, **result["probes"]["finetune"]}


def mean_sd(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def fmt(values: list[float], signed: bool = False) -> str:
    mean, sd = mean_sd(values)
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if math.isnan(sd) else f"{text} ± {sd:.2f}"


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    base, gh = results["SimCLR"], results["SimCLR+GH"]
    lines = ["| | SimCLR | SimCLR+GH | GH − SimCLR (paired) |", "|---|---|---|---|"]
    for title, key in ROWS:
        b = [float(r[key]) for r in base]
        g = [float(r[key]) for r in gh]
        diff = [y - x for x, y in zip(b, g, strict=True)]
        lines.append(f"| {title} | {fmt(b)} | {fmt(g)} | {fmt(diff, signed=True)} |")
    return "\n".join(lines)


def section(
    mode: str,
    command: str,
    seeds: list[int],
    overrides: list[str],
    results: dict[str, dict[str, list[dict[str, Any]]]],
    timings: Timings,
    full_epochs: int,
) -> str:
    cfg = load_config(CONFIGS["SimCLR"], overrides)
    totals = timings.totals()
    total = sum(seconds for _, seconds in totals.values())
    sample = results[next(iter(results))]["SimCLR"][0]
    counts = sample["class_counts"]
    linear_epochs = next(
        (
            r["finetune"]["epochs"]
            for per in results.values()
            for r in per["SimCLR"]
            if r["mode"] == "linear"
        ),
        "-",
    )
    lines = [
        f"<!-- BEGIN downstream-{mode}: generated by benchmarks/downstream.py; do not edit -->",
        f"## Long-tailed fine-tuning after SimCLR vs SimCLR+GH pretraining ({mode})",
        "",
        f"Generated {datetime.date.today().isoformat()} by `{command}`: "
        f"{total / 60:.1f} min of wall time over its steps on {os.cpu_count()} CPU cores "
        f"({'; '.join(timings.conditions)} at the start, 1/5/15 min; other work shared "
        "the machine).",
        "",
        f"- Data: {sample['dataset']}, {sum(counts)} labelled training images "
        f"(per class {counts}); balanced test set of {sample['finetune']['test_images']} images; "
        f"groups by the `{sample['group_rule']}` rule on the training counts.",
        f"- Pretraining: {cfg.model.backbone} width {cfg.model.width:g}, {cfg.optim.epochs} "
        f"epochs, batch {cfg.optim.batch_size}, {cfg.optim.schedule} schedule, "
        f"{cfg.gh.num_anchors} GH anchors. SimCLR+GH continues each seed's SimCLR checkpoint at "
        f"epoch {cfg.gh.warmup_epochs} (end of the GH warm-up; weight ramp "
        f"{cfg.gh.ramp_epochs} epoch(s)), so the two differ only by GH.",
        f"- Fine-tuning (`geoharmony finetune`): linear = frozen backbone, Adam on cached "
        f"features, {linear_epochs} epochs; full = SGD, {full_epochs} epochs, random resized "
        "crop (0.35-1) + flip. Predictions use the raw logits.",
        f"- Seeds {seeds} (pretraining and fine-tuning); mean ± sd over seeds (sd with n-1); "
        "the last column is the mean ± sd of the per-seed paired difference.",
    ]
    if overrides:
        lines.append(f"- Config overrides: `{' '.join(overrides)}`.")
    for name, per_method in results.items():
        lines += ["", f"### {SETTINGS[name][2]}", "", table(per_method)]
    lines += ["", "Wall time:", "", "| step | runs | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {n} | {v:.0f} |" for k, (n, v) in totals.items()]
    lines.append(f"<!-- END downstream-{mode} -->")
    return "\n".join(lines)


def write_section(doc: Path, mode: str, text: str) -> None:
    begin, end = f"<!-- BEGIN downstream-{mode}:", f"<!-- END downstream-{mode} -->"
    old = doc.read_text() if doc.is_file() else "# Downstream results\n"
    if begin in old and end in old:
        start = old.index(begin)
        stop = old.index(end) + len(end)
        new = old[:start] + text + old[stop:]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-scale check of the pipeline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, help="run directory (default runs/downstream[_quick])")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "results_downstream.md")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--full-epochs", type=int, help="full fine-tuning epochs (15; quick 1)")
    parser.add_argument("--threads", type=int, help="torch threads (train.threads)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "standard"
    work = args.work or REPO / "runs" / f"downstream{'_quick' if args.quick else ''}"
    full_epochs = args.full_epochs or (1 if args.quick else 15)
    overrides = list(QUICK_OVERRIDES if args.quick else [])
    runtime = [f"train.threads={args.threads}"] if args.threads else []
    shown = sys.argv[1:] if argv is None else argv
    command = f"python benchmarks/downstream.py {shlex.join(shown)}".rstrip()

    timings = Timings(work / "timings.json", args.threads or torch.get_num_threads())
    for seed in args.seeds:
        pretrain(work, seed, [*overrides, *runtime], timings)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in args.settings:
        results[name] = {label: [] for label in CONFIGS}
        for seed in args.seeds:
            for label, prefix in (("SimCLR", "simclr"), ("SimCLR+GH", "simclr_gh")):
                run_dir = work / f"{prefix}_s{seed}"
                result = finetune(run_dir, name, full_epochs, runtime, timings)
                results[name][label].append(result)
    summary = {
        name: {
            label: [{k: r[k] for k in ("seed", "many", "medium", "few", "std", "avg")} for r in rs]
            for label, rs in per.items()
        }
        for name, per in results.items()
    }
    work.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "results": summary, "timings": timings.stages}
    (work / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    text = section(mode, command, args.seeds, overrides, results, timings, full_epochs)
    write_section(args.doc, mode, text)
    print(text)
    print(f"\nwrote {args.doc} and {work / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
