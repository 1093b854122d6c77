"""Behaviour check for restructures: every smoke preset in fp32, compared with a recorded run.

A refactor must not change what a run computes. This script pretrains and evaluates the ten
smoke presets (five methods, each with and without GH) plus one paired +GH run (``--init-from``
the SimCLR run's end of warm-up, which exercises the prior priming), all in fp32 on one thread,
and writes every ``metrics.json`` value that is not a timing or the config into
``benchmarks/results/behaviour_smoke.json``.

    python benchmarks/behaviour_check.py record       # before the change
    python benchmarks/behaviour_check.py check        # after it: exit 1 on any difference

fp32 results are bit-identical only on one CPU type (oneDNN picks kernels by CPU), so ``check``
compares only against a record made on the same kind of machine and says so otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import cpu_model
from geoharmony.eval.probes import upgrade_metrics
from geoharmony.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "benchmarks" / "results" / "behaviour_smoke.json"
PRESETS = [f"{method}{suffix}" for method in METHODS for suffix in ("", "_gh")]
FP32 = ["train.precision=fp32", "train.threads=1", "train.progress=false"]
# Keys whose values are wall-clock times or inputs rather than results.
_IGNORED = {"seconds", "images_per_s", "train_seconds", "eval_seconds", "config", "precision"}


def _cpu() -> str:
    model = cpu_model()
    return model if model != "unknown" else platform.processor() or platform.machine()


def _pretrain(name: str, out: Path, *extra: str) -> dict[str, Any]:
    preset = REPO / "configs" / "smoke" / f"{name.removesuffix('_paired')}.yaml"
    command = [sys.executable, "-m", "geoharmony", "pretrain", "--config", str(preset)]
    command += ["--output", str(out), *extra, *FP32]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((out / "metrics.json").read_text())


def _results(metrics: Any) -> Any:
    """``metrics`` without timings and the config (recursively)."""
    if isinstance(metrics, dict):
        return {k: _results(v) for k, v in metrics.items() if k not in _IGNORED}
    if isinstance(metrics, list):
        return [_results(v) for v in metrics]
    return metrics


def run_all(workdir: Path, workers: int) -> dict[str, Any]:
    """Every preset's results (the paired run after its baseline)."""

    def one(name: str) -> tuple[str, Any]:
        results = {name: _results(_pretrain(name, workdir / name))}
        if name == "simclr":
            start = workdir / "simclr" / "checkpoints" / "epoch_00001.ckpt"
            paired = _pretrain(
                "simclr_gh_paired", workdir / "simclr_gh_paired", "--init-from", str(start)
            )
            results["simclr_gh_paired"] = _results(paired)
        return name, results

    out: dict[str, Any] = {}
    with ThreadPoolExecutor(workers) as pool:
        for _, results in pool.map(one, PRESETS):
            out.update(results)
    return dict(sorted(out.items()))


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two result trees differ (exact comparison)."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [f"{path}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for key in sorted(set(a) & set(b)):
            diffs += differences(a[key], b[key], f"{path}.{key}")
        return diffs
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "check"))
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "behaviour_check")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    results = run_all(args.workdir, args.workers)
    if args.action == "record":
        RECORD.write_text(
            json.dumps({"commit": commit, "cpu": _cpu(), "results": results}, indent=1) + "\n"
        )
        print(f"recorded {len(results)} runs at {commit} on {_cpu()} -> {RECORD}")
        return 0
    recorded = json.loads(RECORD.read_text())
    if recorded["cpu"] != _cpu():
        print(f"the record was made on {recorded['cpu']}, this is {_cpu()}: not comparable")
        return 2
    # A record made before probes were listed uniformly is read in today's layout.
    before = {name: upgrade_metrics(r) for name, r in recorded["results"].items()}
    diffs = differences(before, results)
    for line in diffs[:50]:
        print(line)
    print(
        f"{len(results)} runs at {commit} against the record of {recorded['commit']}: "
        + ("identical" if not diffs else f"{len(diffs)} differences")
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
