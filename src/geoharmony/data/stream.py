"""Training batches: two augmented views plus the images' dataset indices.

Every epoch's order and every step's augmentation are drawn from seeds derived from
``(seed, epoch, step)``, so nothing about the data stream needs checkpointing and a resumed run
sees exactly the batches an uninterrupted one would. Under data parallelism each rank takes its
slice of the *global* batch and augments it with the global batch's parameters: ``R`` ranks with
batch ``b`` see what one process with batch ``R * b`` sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms import v2

from geoharmony.data.augment import (
    BatchedSimCLRAugment,
    ImageHook,
    IndexedTwoViewTransform,
    TwoViewTransform,
    ViewHook,
    imagenet_two_view_transform,
)
from geoharmony.data.datasets import IndexedFileDataset, IndexedImageArray
from geoharmony.data.splits import FileList, ImageArray, ImageSplit, Preparation

if TYPE_CHECKING:
    from geoharmony.data.build import RunData

__all__ = [
    "BatchPlan",
    "FileTrainStream",
    "InMemoryTrainStream",
    "LabelledBatches",
    "TrainBatch",
    "TrainStream",
    "batch_split_problem",
    "derived_seed",
    "labelled_batches",
    "train_stream",
]

TrainBatch = tuple[Tensor, Tensor, Tensor]  # view1 [b,C,S,S], view2 [b,C,S,S], indices [b]


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: no correlated streams)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def epoch_order(num_samples: int, seed: int, epoch: int) -> Tensor:
    """``[N]`` seeded permutation of the samples for ``epoch``."""
    generator = torch.Generator().manual_seed(derived_seed(seed, epoch, 0xDA7A))
    return torch.randperm(num_samples, generator=generator)


def batch_split_problem(global_batch: int, world_size: int) -> str | None:
    """Why ``global_batch`` cannot be split over ``world_size`` processes (None: it can)."""
    if global_batch % world_size == 0:
        return None
    return (
        f"optim.batch_size={global_batch} (the global batch) does not split evenly over "
        f"{world_size} processes; use a multiple of {world_size}"
    )


@dataclass(frozen=True)
class BatchPlan:
    """How every epoch is cut into steps: ``global_batch`` images per step over all ranks (the
    last partial batch is dropped), orders and augmentations seeded by ``seed``, and this
    process's slice (``rank`` of ``world_size``) on ``device``."""

    global_batch: int
    seed: int
    device: torch.device
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        problem = batch_split_problem(self.global_batch, self.world_size)
        if problem:
            raise ValueError(problem)

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    def steps_per_epoch(self, num_samples: int) -> int:
        return num_samples // self.global_batch


class TrainStream(Protocol):
    """What the trainer iterates: ``steps_per_epoch`` batches per epoch."""

    num_samples: int
    steps_per_epoch: int

    def batches(self, epoch: int) -> Iterator[TrainBatch]: ...


class InMemoryTrainStream:
    """Small images held as a uint8 tensor on the training device, augmented a batch at a time.

    Args:
        dataset: the pretraining images; indices are positions in it.
        augment: the two-view recipe.
        plan: batch size, seed and this process's slice (the images are copied to its device
            once).
        view_hook: optional per-sample uint8 transform of each view, applied last (BCL).
    """

    def __init__(
        self,
        dataset: IndexedImageArray,
        augment: BatchedSimCLRAugment,
        plan: BatchPlan,
        view_hook: ViewHook | None = None,
    ) -> None:
        if plan.global_batch > len(dataset):
            raise ValueError(f"batch size {plan.global_batch} exceeds the {len(dataset)} images")
        self.images = dataset.images.to(plan.device)
        self.augment = augment.to(plan.device)
        self.num_samples = len(dataset)
        self.global_batch, self.local_batch = plan.global_batch, plan.local_batch
        self.steps_per_epoch = plan.steps_per_epoch(self.num_samples)
        self.seed, self.device, self.rank = plan.seed, plan.device, plan.rank
        self.view_hook = view_hook

    def batches(self, epoch: int) -> Iterator[TrainBatch]:
        order = epoch_order(self.num_samples, self.seed, epoch)
        offset = self.rank * self.local_batch
        for step in range(self.steps_per_epoch):
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

    def __iter__(self) -> Iterator[int]:
        s = self.stream
        order = epoch_order(s.num_samples, s.seed, self.epoch)
        for step in range(s.steps_per_epoch):
            start = step * s.global_batch + s.rank * s.local_batch
            yield from order[start : start + s.local_batch].tolist()

    def __len__(self) -> int:
        return self.stream.steps_per_epoch * self.stream.local_batch


class FileTrainStream:
    """Large images decoded and augmented per image in data-loader worker processes.

    Augmentation randomness comes from the workers' torch seeds, which the loader derives from
    a per-epoch generator: reproducible for a fixed ``num_workers``.
    """

    def __init__(
        self,
        dataset: IndexedFileDataset,
        transform: TwoViewTransform | IndexedTwoViewTransform,
        plan: BatchPlan,
        num_workers: int = 2,
    ) -> None:
        dataset.transform = transform
        self.dataset = dataset
        self.num_samples = len(dataset)
        self.global_batch, self.local_batch = plan.global_batch, plan.local_batch
        self.steps_per_epoch = plan.steps_per_epoch(self.num_samples)
        self.seed, self.device, self.rank = plan.seed, plan.device, plan.rank
        self.sampler = _GlobalSliceSampler(self)
        self.num_workers = num_workers

    def batches(self, epoch: int) -> Iterator[TrainBatch]:
        self.sampler.epoch = epoch
        loader = DataLoader(
            self.dataset,
            batch_size=self.local_batch,
            sampler=self.sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=torch.Generator().manual_seed(derived_seed(self.seed, epoch, 0)),
            persistent_workers=False,
        )
        for (view1, view2), _, indices in loader:
            yield (
                view1.to(self.device, non_blocking=True),
                view2.to(self.device, non_blocking=True),
                indices.to(self.device, non_blocking=True),
            )


def train_stream(
    data: RunData,
    plan: BatchPlan,
    view_hook: ViewHook | None = None,
    image_hook: ImageHook | None = None,
) -> TrainStream:
    """The two-view stream over ``data``'s pretraining images: batched on the device for an
    in-memory split (with ``view_hook``), per image in loader workers for files (with
    ``image_hook``)."""
    mean, std = data.stats
    if isinstance(data.train, ImageArray):
        dataset = IndexedImageArray(data.train, data.pretrain_indices)
        augment = BatchedSimCLRAugment(data.image_size, mean, std)
        return InMemoryTrainStream(dataset, augment, plan, view_hook=view_hook)
    assert isinstance(data.train, FileList)
    files = IndexedFileDataset(data.train, data.pretrain_indices)
    transform = imagenet_two_view_transform(data.image_size, mean, std, hook=image_hook)
    return FileTrainStream(files, transform, plan, data.workers)


# ``batches(epoch)`` -> the epoch's ``(images [b, C, S, S], labels [b])`` batches, augmented.
LabelledBatches = Callable[[int], Iterator[tuple[Tensor, Tensor]]]


def labelled_batches(
    split: ImageSplit,
    indices: np.ndarray,
    prep: Preparation,
    plan: BatchPlan,
    crop_scale: tuple[float, float] = (0.35, 1.0),
) -> LabelledBatches:
    """Seeded, shuffled, mildly augmented (random resized crop of ``crop_scale``, flip) labelled
    batches of ``split[indices]`` for supervised training (``plan``: batch size, seed, device;
    one process): batched on the device for an in-memory split, per image in
    ``prep.workers`` loader processes for files. A last batch of one image is dropped
    (BatchNorm cannot train on it)."""
    if isinstance(split, ImageArray):
        return _memory_labelled(split, indices, prep, plan, crop_scale)
    assert isinstance(split, FileList)
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(prep.size, scale=crop_scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(prep.stats[0]), list(prep.stats[1])),
        ]
    )
    dataset = IndexedFileDataset(split, indices, transform)
    batch_size, seed, device = plan.global_batch, plan.seed, plan.device

    def epoch_batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        # The generator fixes the order and each worker's seed, hence every random crop.
        gen = torch.Generator().manual_seed(derived_seed(seed, epoch, 3))
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=len(dataset) % batch_size == 1,
            generator=gen,
            num_workers=prep.workers,
            pin_memory=device.type == "cuda",
        )
        for images, labels, _ in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    return epoch_batches


def _memory_labelled(
    split: ImageArray,
    indices: np.ndarray,
    prep: Preparation,
    plan: BatchPlan,
    crop_scale: tuple[float, float],
) -> LabelledBatches:
    batch_size, seed, device = plan.global_batch, plan.seed, plan.device
    idx = torch.from_numpy(indices)
    images = split.images[idx].to(device)
    labels = split.labels[idx].to(device)
    augment = BatchedSimCLRAugment(
        prep.size, *prep.stats, scale=crop_scale, jitter_p=0.0, gray_p=0.0
    ).to(device)

    def epoch_batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(
            len(labels), generator=torch.Generator().manual_seed(derived_seed(seed, epoch, 1))
        ).to(device)
        gen = torch.Generator(device=device).manual_seed(derived_seed(seed, epoch, 2))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            if len(rows) < 2:  # BatchNorm cannot train on one image
                continue
            yield augment(images[rows], gen), labels[rows]

    return epoch_batches
