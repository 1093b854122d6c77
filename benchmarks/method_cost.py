"""Training-step cost of every method (with and without GH) relative to SimCLR, on the CPU-scale
Fashion-MNIST-LT preset, including each method's own augmentation, measured back to back.

BCL is timed with memorisation scores in place (its RandAugment active); DnC in each of its
stages (base = SimCLR, experts, distillation).

    python benchmarks/method_cost.py [--steps 6] [--config configs/fmnist_lt/simclr.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import record
from geoharmony.config import Config
from geoharmony.configure import load_config
from geoharmony.data.augment import BatchedSimCLRAugment
from geoharmony.data.build import build_run_data
from geoharmony.data.datasets import IndexedImageArray
from geoharmony.data.normalization import NORM_STATS
from geoharmony.data.stream import BatchPlan, InMemoryTrainStream
from geoharmony.methods import METHODS, DataInfo, Method, TrainContext, build_method


def step_seconds(
    method: Method,
    cfg: Config,
    dataset: IndexedImageArray,
    epoch: float,
    steps: int,
    autocast: torch.dtype | None = torch.bfloat16,
    channels_last: bool = True,
) -> float:
    """Median seconds of one training step (augmentation included) over ``steps`` steps."""
    mean, std = NORM_STATS[cfg.data.source]
    stream = InMemoryTrainStream(
        dataset,
        BatchedSimCLRAugment(int(dataset.images.shape[-1]), mean, std),
        BatchPlan(cfg.optim.batch_size, cfg.train.seed, torch.device("cpu")),
        view_hook=method.view_hook(),
    )
    optimizer = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    method.train()
    times = []
    batches = stream.batches(0)
    for _ in range(steps + 1):
        start = time.perf_counter()
        view1, view2, index = next(batches)
        if channels_last:
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            loss = method(view1, view2, index, epoch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first step pays one-off allocations


def _prepared(name: str, gh: bool, args: argparse.Namespace, data_info: DataInfo):
    """The method and its config, ready to time (BCL with scores in place)."""
    cfg = load_config(
        args.config,
        [
            f"method.name={name}",
            f"gh.enabled={str(gh).lower()}",
            "gh.warmup_epochs=0",
            "train.precision=bf16",
            "train.channels_last=true",
        ],
    )
    method = build_method(cfg, data_info).to(memory_format=torch.channels_last)
    if name == "bcl":
        method.scores.uniform_(generator=torch.Generator().manual_seed(0))  # type: ignore[operator]
        method.scored.fill_(True)  # type: ignore[operator]
    if name == "dnc":
        method.bind(TrainContext(lambda fn: torch.randn(data_info.num_samples, 16)))
    return method, cfg


def _stages(name: str, method: Method):
    """(label, fractional epoch, stage switch to run first) of each stage to time."""
    if name != "dnc":
        return [("", 1.0, None)]
    plan = method.plan  # type: ignore[attr-defined]
    return [
        (" base", 0.0, None),
        (" experts", float(plan.base_end), lambda: method.on_epoch_end(plan.base_end - 1)),
        (" distill", float(plan.expert_end), lambda: method.on_epoch_end(plan.expert_end - 1)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/fmnist_lt/simclr.yaml")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    base = load_config(args.config)
    data = build_run_data(base.data)
    dataset = IndexedImageArray(data.train, data.pretrain_indices)
    info = DataInfo(len(dataset), data.in_channels, data.num_classes)
    seconds: dict[str, float] = {}
    for name in METHODS:
        for gh in (False, True):
            method, cfg = _prepared(name, gh, args, info)
            for label, epoch, switch in _stages(name, method):
                if switch is not None:
                    switch()
                key = f"{name}{'+gh' if gh else ''}{label}"
                seconds[key] = step_seconds(method, cfg, dataset, epoch, args.steps)
                print(f"{key:<22} {seconds[key] * 1e3:8.1f} ms", flush=True)
    ratios = {k: v / seconds["simclr"] for k, v in seconds.items()}
    for key, value in ratios.items():
        print(f"{key:<22} {value:6.2f} x SimCLR")
    results = {"config": args.config, "seconds": seconds, "relative_to_simclr": ratios}
    print(f"recorded in {record('method_cost', results)}")


if __name__ == "__main__":
    main()
