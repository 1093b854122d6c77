"""One interface for a split of images (labelled or not), whichever way it is held.

Small-image sources load fully into memory as an :class:`ImageArray`; large-image sources are a
:class:`FileList` decoded per item. Both answer the :class:`ImageSplit` protocol (labels, channels,
native size, evaluation batches), so no layer above ``data/`` asks which kind it has; the two
ways of *training* on them (batched on-device augmentation, per-image augmentation in loader
workers) are chosen once, in :mod:`geoharmony.data.stream`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from geoharmony.data.pixels import normalize_only

__all__ = [
    "DataFormatError",
    "FileList",
    "ImageArray",
    "ImageSplit",
    "Preparation",
    "check_indices",
    "open_rgb",
]

# Side of the crops taken from decoded files when the config gives no ``data.image_size``.
DEFAULT_FILE_SIZE = 224


class DataFormatError(ValueError):
    """Input data is missing, malformed, truncated or inconsistent. The message names the file."""


def check_indices(indices: np.ndarray | torch.Tensor | None, n: int, what: str) -> np.ndarray:
    """``indices`` as int64 ``[k]`` positions into ``n`` items (``[n]``: all of them when None).

    Raises:
        ValueError: not a 1-D integer array, or a position outside ``[0, n)`` (``what`` names
            the items in the message).
    """
    if indices is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(indices)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}) for {what}")
    return idx.astype(np.int64, copy=False)


def open_rgb(path: Path) -> Image.Image:
    """Decode the image file ``path`` fully, as an RGB PIL image.

    Raises:
        DataFormatError: unreadable, truncated or missing file (the message names it).
    """
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces a full decode inside the `with`
    except (OSError, SyntaxError, ValueError) as e:
        # PIL reports unreadable, truncated or missing files as OSError (and, for a few
        # formats, SyntaxError/ValueError).
        raise DataFormatError(f"{path}: cannot read image ({e})") from e


@dataclass(frozen=True)
class Preparation:
    """How a model's images are prepared: side ``size``, per-channel ``stats`` ``(mean, std)``,
    and the loader processes that decode files (``workers``; unused for in-memory images)."""

    size: int
    stats: tuple[Sequence[float], Sequence[float]]
    workers: int = 0


class ImageSplit(Protocol):
    """What every layer may ask of a split of images."""

    class_names: list[str]
    source: str

    def __len__(self) -> int: ...

    @property
    def num_classes(self) -> int:
        """Classes of the labels; 0 for unlabeled images."""
        ...

    @property
    def in_channels(self) -> int: ...

    @property
    def native_size(self) -> int | None:
        """Side of the stored images; None when they are files of any size."""
        ...

    def labels_of(self, indices: np.ndarray | None = None) -> np.ndarray:
        """int64 labels ``[n]`` of ``indices`` (all images when None); -1 when unlabeled."""
        ...

    def subset(self, indices: np.ndarray) -> Self:
        """The images ``indices`` (in that order) as a split of the same kind."""
        ...

    def without_labels(self) -> Self:
        """The same images, unlabeled: no classes, every label -1."""
        ...

    def eval_batches(
        self, indices: np.ndarray, prep: Preparation, batch_size: int, device: torch.device
    ) -> Iterator[Tensor]:
        """The images ``indices``, clean (no augmentation), prepared as ``prep`` says:
        normalised float32 batches ``[b, C, size, size]`` on ``device``, in order."""
        ...


@dataclass
class ImageArray:
    """A whole small-image data set in memory.

    Attributes:
        images: uint8 [N, C, H, W].
        labels: int64 [N], values in ``[0, len(class_names))``; -1 when unlabeled.
        class_names: one name per class; empty when unlabeled.
        source: where the data came from (loader and path), for run records.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"{self.source}: images must be uint8 [N, C, H, W], "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.source}: labels must be int64 [{self.images.shape[0]}], "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def native_size(self) -> int | None:
        return int(self.images.shape[-1])

    def labels_of(self, indices: np.ndarray | None = None) -> np.ndarray:
        labels = self.labels.numpy()
        return labels if indices is None else labels[indices]

    def subset(self, indices: np.ndarray) -> Self:
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        return type(self)(self.images[idx], self.labels[idx], list(self.class_names), self.source)

    def without_labels(self) -> Self:
        return type(self)(self.images, torch.full_like(self.labels, -1), [], self.source)

    def eval_batches(
        self, indices: np.ndarray, prep: Preparation, batch_size: int, device: torch.device
    ) -> Iterator[Tensor]:
        """Batches normalised on ``device`` (the copy there is of uint8 data), resized with
        antialiasing when ``prep.size`` differs from the stored side (no worker processes)."""
        images = self.images[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
        for start in range(0, len(images), batch_size):
            x = normalize_only(images[start : start + batch_size].to(device), *prep.stats)
            size = prep.size
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            yield x


@dataclass
class FileList:
    """Image files on disk, labelled or not (large-image sources).

    Attributes:
        root: directory the paths are relative to.
        paths: N relative paths.
        labels: int64 [N]; -1 when unlabeled.
        class_names: one name per class; empty when unlabeled.
        source: where the list came from, for run records.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return 3  # decoded as RGB

    @property
    def native_size(self) -> int | None:
        return None

    def labels_of(self, indices: np.ndarray | None = None) -> np.ndarray:
        labels = np.asarray(self.labels, dtype=np.int64)
        return labels if indices is None else labels[indices]

    def subset(self, indices: np.ndarray) -> Self:
        idx = np.asarray(indices, dtype=np.int64)
        paths = [self.paths[i] for i in idx]
        return type(self)(
            self.root, paths, self.labels_of(idx), list(self.class_names), self.source
        )

    def without_labels(self) -> Self:
        labels = np.full(len(self.paths), -1, dtype=np.int64)
        return type(self)(self.root, list(self.paths), labels, [], self.source)

    def eval_batches(
        self, indices: np.ndarray, prep: Preparation, batch_size: int, device: torch.device
    ) -> Iterator[Tensor]:
        """Files decoded by ``prep.workers`` loader processes: short side resized to
        ``size / 0.875``, centre crop ``size``, normalised."""
        # Imported here: the augmentations (torchvision transforms) only matter for files.
        from geoharmony.data.augment import eval_transform

        idx = check_indices(indices, len(self), self.source or str(self.root))
        paths = [self.paths[i] for i in idx]
        dataset = _DecodedFiles(self.root, paths, eval_transform(prep.size, *prep.stats))
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=prep.workers)
        for images in loader:
            yield images.to(device, non_blocking=True)


class _DecodedFiles(Dataset[Tensor]):
    """``root / paths[i]`` decoded as RGB, through ``transform``: clean evaluation images.

    Picklable (loader worker processes get a copy)."""

    def __init__(self, root: Path, paths: list[str], transform: Callable[..., Tensor]) -> None:
        self.root, self.paths, self.transform = root, paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        return self.transform(open_rgb(self.root / self.paths[i]))
