"""Training-step cost of SimCLR+GH on the CPU-scale preset under each precision, side by side,
and what ``train.precision=auto`` picks on this machine.

bfloat16 autocast pays off only where the hardware computes it: on a CPU without AVX-512 oneDNN
emulates it. ``auto`` (the CPU-scale presets' setting) asks oneDNN whether bf16 is native.

    python benchmarks/precision_cost.py [--steps 4] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from _common import record
from geoharmony.configure import load_config
from geoharmony.data.build import build_run_data
from geoharmony.data.datasets import IndexedImageArray
from geoharmony.engine.runtime import resolve_precision
from geoharmony.methods import DataInfo, build_method
from method_cost import step_seconds

SETTINGS = (  # (label, autocast dtype, channels_last)
    ("fp32", None, False),
    ("fp32+channels_last", None, True),
    ("bf16+channels_last", torch.bfloat16, True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/fmnist_lt/simclr_gh.yaml")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="1: as the quality study runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["gh.warmup_epochs=0"])
    data = build_run_data(cfg.data)
    dataset = IndexedImageArray(data.train, data.pretrain_indices)
    info = DataInfo(len(dataset), data.in_channels, data.num_classes)
    seconds = {}
    for label, dtype, channels_last in SETTINGS:
        method = build_method(cfg, info)
        if channels_last:
            method = method.to(memory_format=torch.channels_last)
        seconds[label] = step_seconds(method, cfg, dataset, 1.0, args.steps, dtype, channels_last)
        print(f"{label:<20} {seconds[label]:7.2f} s/step", flush=True)
    auto = resolve_precision("auto", torch.device("cpu"))
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"train.precision=auto -> {auto} (oneDNN native bf16: {native})")
    results = {
        "config": args.config,
        "batch_size": cfg.optim.batch_size,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_native_bf16": bool(native),
        "auto_resolves_to": auto,
        "seconds_per_step": seconds,
        "relative_to_fp32_channels_last": {
            k: v / seconds["fp32+channels_last"] for k, v in seconds.items()
        },
    }
    print(f"recorded in {record('precision_cost', results)}")


if __name__ == "__main__":
    main()
