"""Images/s of pretraining with 1 process x 2 threads against 2 gloo processes x 1 thread on
this machine, same global batch, measured back to back.

    python benchmarks/ddp_throughput.py [--epochs 3] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import record

REPO = Path(__file__).resolve().parents[1]
BASE = [
    "data.n_max=1000",
    "model.width=0.25",
    "optim.batch_size=256",
    "eval.monitor_every=0",
    "train.progress=false",
    "train.precision=bf16",
    "train.channels_last=true",
    "train.checkpoint_every=1000",
]


def _images_per_s(out: Path) -> float:
    """Mean images/s over the epochs after the first (which pays one-off start-up costs)."""
    epochs = [
        json.loads(line)
        for line in (out / "log.jsonl").read_text().splitlines()
        if '"kind": "epoch"' in line
    ]
    rates = [e["images_per_s"] for e in epochs[1:]] or [epochs[0]["images_per_s"]]
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    common = [*BASE, f"optim.epochs={args.epochs}", *args.overrides]
    pretrain = ["-m", "geoharmony", "pretrain", "--config", str(REPO / "configs/smoke.yaml")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        single = Path(tmp) / "one"
        subprocess.run(
            [
                sys.executable,
                *pretrain,
                "--output",
                str(single),
                "--no-eval",
                *common,
                "train.threads=2",
            ],
            check=True,
        )
        results["one_process_two_threads"] = _images_per_s(single)
        double = Path(tmp) / "two"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                *pretrain,
                "--output",
                str(double),
                "--no-eval",
                *common,
                "train.threads=1",
                "train.sync_batchnorm=true",
            ],
            check=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        results["two_processes_one_thread"] = _images_per_s(double)
    results["speedup"] = results["two_processes_one_thread"] / results["one_process_two_threads"]
    for key, value in results.items():
        print(f"{key:<28} {value:10.2f}")
    print(f"recorded in {record('ddp_throughput', {'overrides': common, 'images_per_s': results})}")


if __name__ == "__main__":
    main()
