"""Images/s of a SimCLR training step fed by geoharmony's batched on-device augmentation against
the same recipe as a per-image torchvision pipeline in a DataLoader, same model, same machine,
measured back to back (augmentation alone and whole steps).

    python benchmarks/pipeline_throughput.py [--source fashion_mnist|cifar] [--steps 10]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from _common import record
from geoharmony.configure import load_config
from geoharmony.data.augment import BatchedSimCLRAugment, TwoViewTransform
from geoharmony.data.build import build_run_data
from geoharmony.data.datasets import IndexedImageArray
from geoharmony.data.normalization import NORM_STATS
from geoharmony.data.stream import BatchPlan, InMemoryTrainStream
from geoharmony.methods import DataInfo, build_method


def reference_torchvision_two_view(
    size: int, mean: Sequence[float], std: Sequence[float]
) -> TwoViewTransform:
    """The small-image recipe of :class:`BatchedSimCLRAugment` as a per-image torchvision v2
    pipeline (for throughput comparisons). uint8 [C, H, W] -> two float32 [C, size, size]."""
    return TwoViewTransform(
        v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.1, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                v2.RandomGrayscale(p=0.2),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(mean), list(std)),
            ]
        )
    )


class _PerImage(torch.utils.data.Dataset):
    """uint8 images through a per-image two-view transform (the usual torchvision way)."""

    def __init__(self, images: torch.Tensor, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        v1, v2 = self.transform(self.images[i])
        return v1, v2, i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/fmnist_lt/simclr.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (per-image)")
    args = parser.parse_args()
    cfg = load_config(args.config, ["train.precision=bf16", "train.channels_last=true"])
    data = build_run_data(cfg.data)
    dataset = IndexedImageArray(data.train, data.pretrain_indices)
    mean, std = NORM_STATS[cfg.data.source]
    size, batch = int(dataset.images.shape[-1]), cfg.optim.batch_size
    device = torch.device("cpu")
    method = build_method(cfg, DataInfo(len(dataset), data.in_channels, data.num_classes))
    method = method.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9)

    def step(v1: torch.Tensor, v2: torch.Tensor, idx: torch.Tensor) -> None:
        v1 = v1.contiguous(memory_format=torch.channels_last)
        v2 = v2.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = method(v1, v2, idx, 0.0).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    plan = BatchPlan(batch, cfg.train.seed, device)
    stream = InMemoryTrainStream(dataset, BatchedSimCLRAugment(size, mean, std), plan)
    loader = DataLoader(
        _PerImage(dataset.images, reference_torchvision_two_view(size, mean, std)),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def images_per_s(batches, train: bool) -> float:
        count, start = 0, None
        for i, (view1, view2, idx) in enumerate(batches):
            if i == 1:  # the first batch pays start-up costs (workers, allocations)
                start, count = time.perf_counter(), 0
            if train:
                step(view1, view2, torch.as_tensor(idx))
            count += view1.shape[0]
            if i == args.steps:
                break
        assert start is not None, "not enough batches: lower --steps"
        return count / (time.perf_counter() - start)

    def epochs(make):
        epoch = 0
        while True:
            yield from make(epoch)
            epoch += 1

    results = {
        "augment_batched": images_per_s(epochs(stream.batches), train=False),
        "augment_per_image": images_per_s(epochs(lambda e: iter(loader)), train=False),
        "step_batched": images_per_s(epochs(stream.batches), train=True),
        "step_per_image": images_per_s(epochs(lambda e: iter(loader)), train=True),
    }
    results["augment_speedup"] = results["augment_batched"] / results["augment_per_image"]
    results["step_speedup"] = results["step_batched"] / results["step_per_image"]
    for key, value in results.items():
        print(f"{key:<20} {value:10.1f}")
    settings = {"config": args.config, "batch": batch, "workers": args.workers}
    name = f"pipeline_throughput_workers{args.workers}"
    print(f"recorded in {record(name, {'settings': settings, **results})}")


if __name__ == "__main__":
    main()
