"""What GH costs inside a whole run: a paired +GH run against its SimCLR baseline, as the quality
study makes them, timed side by side.

Once (untimed): SimCLR on a preset (default the CPU-scale Fashion-MNIST-LT one) to the end of a
short GH warm-up. Then, ``--pairs`` times: the baseline continued from that checkpoint for
``--epochs`` epochs, and the +GH run continued from the same checkpoint (its prior primed from
the model, as a paired run starts), both skipping the final evaluation. The two run at the same
time, one thread each and each pinned to its own core (swapped from pair to pair), as the
quality study runs them: both see the same machine speed, which drifts on these shared machines
by more than GH costs, so a ratio of runs made one after the other would mostly measure that
drift. For each pair it reports the +GH run's training throughput relative to the baseline's
(images per second over the epochs, from ``log.jsonl``) and its whole command's wall time
relative to the baseline's (priming and start-up included).

    python benchmarks/gh_run_cost.py [--pairs 4 --epochs 6 --warmup 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import record

REPO = Path(__file__).resolve().parents[1]


def _command(config: str, out: Path, overrides: list[str], *flags: str) -> list[str]:
    command = [sys.executable, "-m", "geoharmony", "pretrain", "--config", config]
    return [*command, "--output", str(out), "--no-eval", *flags, *overrides]


def _run_together(commands: dict[str, list[str]], cpus: dict[str, int]) -> dict[str, float]:
    """Start every command at once (each pinned to its CPU); their wall seconds by name."""
    started = time.perf_counter()
    procs = {}
    for name, command in commands.items():
        cpu = cpus[name]
        procs[name] = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu}),
        )
    walls = {}
    for name, proc in procs.items():
        _, err = proc.communicate()
        walls[name] = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(commands[name])} failed:\n{err[-3000:]}")
    return walls


def _epoch_throughput(run: Path) -> float:
    """Images per second over every epoch the run trained (``log.jsonl``)."""
    images = seconds = 0.0
    for line in (run / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("kind") == "epoch" and "seconds" in entry and "images_per_s" in entry:
            seconds += entry["seconds"]
            images += entry["seconds"] * entry["images_per_s"]
    if seconds == 0:
        raise RuntimeError(f"{run / 'log.jsonl'}: no epoch records")
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/fmnist_lt/simclr.yaml")
    parser.add_argument("--gh-config", default="configs/fmnist_lt/simclr_gh.yaml")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="GH warm-up (untimed baseline)")
    parser.add_argument("--record", default="gh_run_cost", help="results file name")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args()
    common = [
        *args.overrides,
        f"optim.epochs={args.warmup + args.epochs}",
        f"gh.warmup_epochs={args.warmup}",
        "train.progress=false",
        "eval.monitor_every=0",
        f"train.checkpoint_every={args.warmup}",
        "train.threads=1",
    ]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("gh_run_cost needs two cores: the pair runs side by side")
    work = Path(tempfile.mkdtemp(prefix="gh_run_cost_"))
    try:
        base = work / "warmup"
        warmup = _command(args.config, base, common, "--stop-after", str(args.warmup))
        _run_together({"warmup": warmup}, {"warmup": cores[0]})
        start = base / "checkpoints" / f"epoch_{args.warmup:05d}.ckpt"
        arms = {"simclr": args.config, "simclr+gh": args.gh_config}
        rows = []
        for pair in range(args.pairs):
            outs = {arm: work / f"{arm}_{pair}" for arm in arms}
            commands = {
                arm: _command(config, outs[arm], common, "--init-from", str(start))
                for arm, config in arms.items()
            }
            swap = pair % 2
            cpus = {arm: cores[(i + swap) % 2] for i, arm in enumerate(arms)}
            walls = _run_together(commands, cpus)
            row = {
                arm: {"wall_s": walls[arm], "images_per_s": _epoch_throughput(outs[arm])}
                for arm in arms
            }
            for out in outs.values():
                shutil.rmtree(out)
            rows.append(row)
            throughput = row["simclr+gh"]["images_per_s"] / row["simclr"]["images_per_s"]
            wall = row["simclr+gh"]["wall_s"] / row["simclr"]["wall_s"]
            print(f"pair {pair + 1}: +GH throughput {throughput:.3f} x, wall {wall:.3f} x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    throughputs = [r["simclr+gh"]["images_per_s"] / r["simclr"]["images_per_s"] for r in rows]
    walls = [r["simclr+gh"]["wall_s"] / r["simclr"]["wall_s"] for r in rows]
    summary = {
        "throughput_ratio_median": statistics.median(throughputs),
        "throughput_ratio_range": [min(throughputs), max(throughputs)],
        "wall_ratio_median": statistics.median(walls),
        "wall_ratio_range": [min(walls), max(walls)],
    }
    print(
        f"+GH trains at {summary['throughput_ratio_median']:.3f} of SimCLR's throughput "
        f"(range {min(throughputs):.3f}-{max(throughputs):.3f}); whole command "
        f"{summary['wall_ratio_median']:.3f} x its wall time"
    )
    results = {
        "config": args.config,
        "gh_config": args.gh_config,
        "overrides": args.overrides,
        "epochs": args.epochs,
        "warmup": args.warmup,
        "pairs": rows,
        **summary,
    }
    print(f"recorded in {record(args.record, results)}")


if __name__ == "__main__":
    main()
