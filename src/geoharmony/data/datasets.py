"""Training-subset datasets that also return each sample's position in the subset.

The position ``index`` (0..len-1) addresses per-sample state such as GH's prior memory bank or
BCL's memorisation scores, which are sized to the training subset, not to the source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

# This module builds on the split types; splits.py imports nothing from here (no cycle).
from geoharmony.data.splits import FileList, ImageArray, check_indices, open_rgb

__all__ = ["IndexedFileDataset", "IndexedImageArray"]


class _LabelledSubset:
    """What both subset kinds share: labels int64 [n], class names, and index checking."""

    labels: torch.Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _position(self, i: int) -> int:
        """``i`` as a position in ``[0, n)`` (negative counts from the end)."""
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        return i % len(self)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> list[int]:
        """Images per class in the subset (length ``num_classes``)."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


class IndexedImageArray(_LabelledSubset, Dataset[tuple[torch.Tensor, int, int]]):
    """A subset of an in-memory :class:`ImageArray`.

    ``dataset[i]`` is ``(image uint8 [C, H, W], label, i)``. For batched on-device augmentation
    prefer :meth:`get_batch`, which gathers a whole batch with one indexing op.

    Args:
        data: the source images.
        indices: int array [n] of source indices forming the subset; None = all.
    """

    def __init__(self, data: ImageArray, indices: np.ndarray | torch.Tensor | None = None):
        self.source_indices = check_indices(indices, len(data), data.source)
        idx = torch.from_numpy(self.source_indices)
        # A contiguous copy of the subset: gathers stay cheap and the source can be freed.
        self.images = data.images[idx].contiguous()  # uint8 [n, C, H, W]
        self.labels = data.labels[idx].contiguous()  # int64 [n]
        self.class_names = list(data.class_names)
        self.source = data.source

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        i = self._position(i)
        return self.images[i], int(self.labels[i]), i

    def get_batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gather a batch by subset positions.

        Args:
            positions: int64 [B] on the CPU.

        Returns:
            images uint8 [B, C, H, W], labels int64 [B], positions int64 [B].
        """
        return self.images[positions], self.labels[positions], positions


class IndexedFileDataset(_LabelledSubset, Dataset[tuple[Any, int, int]]):
    """A subset of a :class:`FileList`, decoded with PIL (converted to RGB) per item.

    ``dataset[i]`` is ``(transform(image), label, i)``; ``transform`` may return a tuple of views.
    Without a transform the PIL image itself is returned.

    Args:
        files: the source file list.
        indices: int array [n] of source indices forming the subset; None = all.
        transform: per-image callable taking a PIL RGB image (and the sample's index when the
            transform has a true ``wants_index`` attribute).
    """

    def __init__(
        self,
        files: FileList,
        indices: np.ndarray | torch.Tensor | None = None,
        transform: Callable[..., Any] | None = None,
    ):
        self.source_indices = check_indices(indices, len(files), files.source or str(files.root))
        self.root = files.root
        self.paths = [files.paths[j] for j in self.source_indices]
        self.labels = torch.from_numpy(
            np.asarray(files.labels, dtype=np.int64)[self.source_indices].copy()
        )
        self.class_names = list(files.class_names)
        self.source = files.source
        self.transform = transform

    def load_image(self, i: int) -> Image.Image:
        """Decode subset item ``i`` as an RGB PIL image."""
        return open_rgb(self.root / self.paths[i])

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        i = self._position(i)
        image = self.load_image(i)
        if self.transform is None:
            out: Any = image
        elif getattr(self.transform, "wants_index", False):
            out = self.transform(image, i)  # e.g. an augmentation driven by a per-sample score
        else:
            out = self.transform(image)
        return out, int(self.labels[i]), i
