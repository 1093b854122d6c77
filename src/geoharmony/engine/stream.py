"""Training batches: two augmented views plus the images' dataset indices.

Every epoch's order and every step's augmentation are drawn from seeds derived from
``(seed, epoch, step)``, so nothing about the data stream needs checkpointing and a resumed run
sees exactly the batches an uninterrupted one would. Under data parallelism each rank takes its
slice of the *global* batch and augments it with the global batch's parameters: ``R`` ranks with
batch ``b`` see what one process with batch ``R * b`` sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from geoharmony.data.augment import (
    BatchedSimCLRAugment,
    IndexedTwoViewTransform,
    TwoViewTransform,
    ViewHook,
)
from geoharmony.data.datasets import IndexedFileDataset, IndexedImageArray

__all__ = [
    "FileTrainStream",
    "InMemoryTrainStream",
    "TrainBatch",
    "TrainStream",
    "derived_seed",
]

TrainBatch = tuple[Tensor, Tensor, Tensor]  # view1 [b,C,S,S], view2 [b,C,S,S], indices [b]


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: no correlated streams)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def epoch_order(num_samples: int, seed: int, epoch: int) -> Tensor:
    """``[N]`` seeded permutation of the samples for ``epoch``."""
    generator = torch.Generator().manual_seed(derived_seed(seed, epoch, 0xDA7A))
    return torch.randperm(num_samples, generator=generator)


class TrainStream(Protocol):
    """What the trainer iterates: ``steps_per_epoch`` batches per epoch."""

    num_samples: int
    steps_per_epoch: int

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[TrainBatch]: ...


class InMemoryTrainStream:
    """Small images held as a uint8 tensor on the training device, augmented a batch at a time.

    Args:
        dataset: the pretraining images; indices are positions in it.
        augment: the two-view recipe.
        global_batch: images per step over all ranks (the last partial batch is dropped).
        seed: run seed.
        device: training device (the images are copied there once).
        rank, world_size: this process's slice of each global batch.
        view_hook: optional per-sample uint8 transform of each view, applied last (BCL).
    """

    def __init__(
        self,
        dataset: IndexedImageArray,
        augment: BatchedSimCLRAugment,
        global_batch: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        view_hook: ViewHook | None = None,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} ranks")
        if global_batch > len(dataset):
            raise ValueError(f"batch size {global_batch} exceeds the {len(dataset)} images")
        self.images = dataset.images.to(device)
        self.augment = augment.to(device)
        self.num_samples = len(dataset)
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = self.num_samples // global_batch
        self.seed, self.device, self.rank = seed, device, rank
        self.view_hook = view_hook

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[TrainBatch]:
        order = epoch_order(self.num_samples, self.seed, epoch)
        offset = self.rank * self.local_batch
        for step in range(start_step, self.steps_per_epoch):
            start = step * self.global_batch + offset
            indices = order[start : start + self.local_batch].to(self.device)
            generator = torch.Generator(self.device)
            generator.manual_seed(derived_seed(self.seed, epoch, step + 1))
            view1, view2 = self.augment.two_views(
                self.images[indices],
                generator,
                global_batch=self.global_batch,
                offset=offset,
                hook=self.view_hook,
                indices=indices,
            )
            yield view1, view2, indices


class _GlobalSliceSampler(Sampler[int]):
    """This rank's slice of every global batch of a seeded epoch order."""

    def __init__(self, stream: FileTrainStream) -> None:
        self.stream = stream
        self.epoch = 0
        self.start_step = 0

    def __iter__(self) -> Iterator[int]:
        s = self.stream
        order = epoch_order(s.num_samples, s.seed, self.epoch)
        for step in range(self.start_step, s.steps_per_epoch):
            start = step * s.global_batch + s.rank * s.local_batch
            yield from order[start : start + s.local_batch].tolist()

    def __len__(self) -> int:
        return (self.stream.steps_per_epoch - self.start_step) * self.stream.local_batch


class FileTrainStream:
    """Large images decoded and augmented per image in data-loader worker processes.

    Augmentation randomness comes from the workers' torch seeds, which the loader derives from
    a per-epoch generator: reproducible for a fixed ``num_workers``.
    """

    def __init__(
        self,
        dataset: IndexedFileDataset,
        transform: TwoViewTransform | IndexedTwoViewTransform,
        global_batch: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 2,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} ranks")
        dataset.transform = transform
        self.dataset = dataset
        self.num_samples = len(dataset)
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = self.num_samples // global_batch
        self.seed, self.device, self.rank = seed, device, rank
        self.sampler = _GlobalSliceSampler(self)
        self.num_workers = num_workers

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[TrainBatch]:
        self.sampler.epoch, self.sampler.start_step = epoch, start_step
        loader = DataLoader(
            self.dataset,
            batch_size=self.local_batch,
            sampler=self.sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=torch.Generator().manual_seed(derived_seed(self.seed, epoch, start_step)),
            persistent_workers=False,
        )
        for (view1, view2), _, indices in loader:
            yield (
                view1.to(self.device, non_blocking=True),
                view2.to(self.device, non_blocking=True),
                indices.to(self.device, non_blocking=True),
            )
