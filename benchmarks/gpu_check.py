"""Single-GPU throughput of the paper-scale CIFAR-100-LT recipe on synthetic 32x32 images.

Full-width CIFAR ResNet-18, projector 512-512-128, batch 512, bfloat16 autocast, channels_last,
SimCLR with and without GH (K = 100, 300 Sinkhorn iterations): images/s of the training step,
excluding data loading (the batched augmentation runs on the GPU too, and is timed separately).

    python benchmarks/gpu_check.py [--steps 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import record
from geoharmony.configure import load_config
from geoharmony.data.augment import BatchedSimCLRAugment
from geoharmony.data.normalization import NORM_STATS
from geoharmony.methods import DataInfo, build_method

PRESET = str(Path(__file__).resolve().parents[1] / "configs/cifar100_lt/r100/simclr.yaml")


def _time(fn, steps: int, device: torch.device) -> float:
    for _ in range(3):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_seconds(
    gh: bool, v1: torch.Tensor, v2: torch.Tensor, steps: int, device: torch.device
) -> float:
    """Seconds per SimCLR(+GH) training step of the paper-scale CIFAR-100-LT preset."""
    cfg = load_config(PRESET, [f"gh.enabled={str(gh).lower()}", "gh.warmup_epochs=0"])
    method = build_method(cfg, DataInfo(10847, 3, 100)).to(device)
    method = method.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    index = torch.arange(v1.shape[0], device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = method(v1, v2, index, 1.0).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _time(step, steps, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cuda", help="cpu only for a dry run of the script")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py needs a CUDA GPU (or --device cpu for a dry run)")
    torch.backends.cudnn.benchmark = True
    images = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8, device=device)
    augment = BatchedSimCLRAugment(32, *NORM_STATS["cifar100"]).to(device)
    generator = torch.Generator(device).manual_seed(0)
    results: dict[str, float] = {
        "augment_two_views_s": _time(
            lambda: augment.two_views(images, generator), args.steps, device
        ),
    }
    v1, v2 = (
        v.contiguous(memory_format=torch.channels_last)
        for v in augment.two_views(images, generator)
    )
    for name, gh in (("simclr", False), ("simclr_gh", True)):
        seconds = _step_seconds(gh, v1, v2, args.steps, device)
        results[f"step_s_{name}"] = seconds
        results[f"images_per_s_{name}"] = 512 / seconds
    results["gh_overhead"] = results["step_s_simclr_gh"] / results["step_s_simclr"] - 1
    for key, value in results.items():
        print(f"{key:<28} {value:.4g}")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    if device.type == "cuda":
        print(f"recorded in {record('gpu_check', {'gpu': gpu, **results})}")


if __name__ == "__main__":
    main()
