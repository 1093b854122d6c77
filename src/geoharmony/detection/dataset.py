"""A checked COCO-format split as detector inputs: ``[C, H, W]`` images in [0, 1] with their
targets (torchvision's detection format), and the seeded order training reads them in.

Training skips crowd regions and images without objects (as detectron2 does); evaluation reads
every image and leaves the ground truth, crowds included, to pycocotools.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as coco_mask
from torch import Tensor
from torch.utils.data import Dataset

from geoharmony.data.splits import DataFormatError
from geoharmony.detection.coco import Annotation, CocoImage, CocoInstances

__all__ = ["DetectionSplit", "Sample", "category_labels", "collate"]

Sample = tuple[Tensor, dict[str, Tensor]]


def category_labels(instances: CocoInstances) -> dict[int, int]:
    """Category id as the file spells it -> the detector's label (1..K in file order; 0 is
    the background)."""
    return {cid: i + 1 for i, cid in enumerate(instances.categories)}


def _mask(ann: Annotation, im: CocoImage) -> np.ndarray:
    """``[H, W]`` uint8 mask of a polygon list or an RLE (compressed or not)."""
    seg = ann.segmentation
    if isinstance(seg, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(seg, im.height, im.width))
    elif isinstance(seg["counts"], list):
        rle = coco_mask.frPyObjects(seg, im.height, im.width)
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode()}
    return np.asarray(coco_mask.decode(rle), dtype=np.uint8)


@dataclass
class DetectionSplit(Dataset[Sample]):
    """``(image [C, H, W] float in [0, 1], target)`` per image; the target holds ``boxes``
    ``[N, 4]`` (x1, y1, x2, y2), ``labels`` ``[N]``, ``masks`` ``[N, H, W]`` uint8 and
    ``image_id`` ``[1]`` (the file's id).

    Args:
        instances: the checked annotation file.
        image_root: the folder its ``file_name``s are relative to.
        channels: 1 (grayscale) or 3 (RGB), as the backbone takes.
        train: skip crowd regions and images without objects.

    An item is read by its index, or by ``(index, flip)``: the trainer's sampler decides the
    flips, so that they follow the seed whichever worker loads the image.
    """

    instances: CocoInstances
    image_root: Path
    channels: int
    train: bool = False

    def __post_init__(self) -> None:
        images = self.instances.images
        if self.train:
            images = [
                im for im in images if any(not a.iscrowd for a in self.instances.annotations[im.id])
            ]
        self.images = images
        self.labels = category_labels(self.instances)

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, im: CocoImage) -> Tensor:
        path = self.image_root / im.file_name
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("L" if self.channels == 1 else "RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise DataFormatError(f"{path}: unreadable image ({err})") from None
        if pixels.shape[:2] != (im.height, im.width):
            raise DataFormatError(
                f"{path}: {pixels.shape[1]} x {pixels.shape[0]} pixels, but "
                f"{self.instances.path} says {im.width} x {im.height}"
            )
        image = torch.from_numpy(pixels.copy()).float().div_(255)
        return image[None] if image.ndim == 2 else image.permute(2, 0, 1).contiguous()

    def __getitem__(self, key: int | tuple[int, bool]) -> Sample:
        index, flip = key if isinstance(key, tuple) else (key, False)
        im = self.images[index]
        anns = [a for a in self.instances.annotations[im.id] if not (self.train and a.iscrowd)]
        image = self._image(im)
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a.bbox for a in anns)], dtype=torch.float32
        ).reshape(-1, 4)
        masks = np.zeros((len(anns), im.height, im.width), dtype=np.uint8)
        for i, ann in enumerate(anns):
            masks[i] = _mask(ann, im)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.labels[a.category_id] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": torch.tensor([im.id]),
        }
        return _flipped(image, target) if flip else (image, target)


def _flipped(image: Tensor, target: dict[str, Tensor]) -> Sample:
    """The image mirrored left-right, with its boxes and masks."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def collate(batch: list[Sample]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Detector inputs are lists (images differ in size)."""
    return [b[0] for b in batch], [b[1] for b in batch]
