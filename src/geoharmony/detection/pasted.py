"""A small detection and instance-segmentation set made of real images: items of an in-memory
catalog source (Fashion-MNIST by default) pasted onto empty canvases.

Each canvas gets 1 to ``max_objects`` items at random positions and scales, never overlapping,
so an object's mask is exactly its own pixels (those above ``threshold``), its box their extent
and its class the item's. Training canvases take items of the source's training split, with class
frequencies cut by the ``ldam`` profile at ``imbalance_ratio`` (1: balanced); validation canvases
take items of its test split, classes balanced. The set is written in COCO format
(:mod:`geoharmony.detection.coco`): ``annotations/instances_{train,val}.json`` and PNG canvases
under ``train/`` and ``val/``. Everything is drawn from ``seed``: the same settings and source give
the same files.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geoharmony.data.longtail import profile_counts
from geoharmony.data.splits import ImageArray
from geoharmony.detection.coco import annotation_file, mask_to_rle

__all__ = ["PasteSettings", "paste_canvas", "write_pasted_set"]

_PLACEMENT_TRIES = 50  # positions tried for an item before the canvas takes no more


@dataclass(frozen=True)
class PasteSettings:
    """How the canvases are made (see the module docstring)."""

    canvas: int = 96
    train_images: int = 2000
    val_images: int = 500
    max_objects: int = 4
    min_scale: float = 1.0  # item side, as a multiple of the source's native side
    max_scale: float = 2.0
    imbalance_ratio: float = 1.0
    threshold: int = 16  # of 255: pixels above it are the object's
    seed: int = 0

    def problems(self) -> list[str]:
        """Settings out of range, one message each naming the setting."""
        out = []
        if self.canvas < 8:
            out.append(f"canvas must be at least 8 pixels, got {self.canvas}")
        if self.train_images < 1 or self.val_images < 1:
            out.append("train_images and val_images must be positive")
        if self.max_objects < 1:
            out.append(f"max_objects must be positive, got {self.max_objects}")
        if not 0 < self.min_scale <= self.max_scale:
            out.append(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if self.imbalance_ratio < 1:
            out.append(f"imbalance_ratio must be >= 1, got {self.imbalance_ratio}")
        if not 0 <= self.threshold < 255:
            out.append(f"threshold must be in [0, 255), got {self.threshold}")
        return out


@dataclass(frozen=True)
class _Object:
    category: int  # class id of the source (0-based)
    box: tuple[int, int, int, int]  # x, y, width, height on the canvas
    mask: np.ndarray  # [H, W] bool, canvas-sized


def _scaled_item(image: np.ndarray, side: int, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """``[h, w]`` uint8 item resized to ``side`` -> (pixels, mask cropped to the mask's
    extent); an empty mask gives empty arrays."""
    pixels = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
    mask = pixels > threshold
    if not mask.any():
        return pixels[:0, :0], mask[:0, :0]
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return pixels[crop], mask[crop]


def _overlaps(box: tuple[int, int, int, int], others: list[_Object]) -> bool:
    x, y, w, h = box
    return any(
        x < ox + ow and ox < x + w and y < oy + oh and oy < y + h for ox, oy, ow, oh in
        (o.box for o in others)
    )  # fmt: skip


def paste_canvas(
    items: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
    s: PasteSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[_Object]]:
    """One canvas: ``[canvas, canvas]`` uint8 and its objects, items of ``items`` (``[N, h, w]``
    uint8 with ``labels`` ``[N]``) of the classes drawn in ``classes`` (one per object tried)."""
    canvas = np.zeros((s.canvas, s.canvas), dtype=np.uint8)
    objects: list[_Object] = []
    native = items.shape[-1]
    for category in classes:
        members = np.flatnonzero(labels == category)
        item = items[rng.choice(members)]
        side = round(float(native * rng.uniform(s.min_scale, s.max_scale)))
        pixels, mask = _scaled_item(item, min(side, s.canvas), s.threshold)
        h, w = mask.shape
        if not mask.size or h > s.canvas or w > s.canvas:
            continue
        for _ in range(_PLACEMENT_TRIES):
            x, y = int(rng.integers(0, s.canvas - w + 1)), int(rng.integers(0, s.canvas - h + 1))
            if not _overlaps((x, y, w, h), objects):
                break
        else:
            continue  # no room left
        canvas[y : y + h, x : x + w] = np.where(mask, pixels, canvas[y : y + h, x : x + w])
        full = np.zeros_like(canvas, dtype=bool)
        full[y : y + h, x : x + w] = mask
        objects.append(_Object(int(category), (x, y, w, h), full))
    return canvas, objects


def _split(
    source: ImageArray, count: int, weights: np.ndarray, s: PasteSettings, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[list[_Object]]]:
    if source.images.shape[1] != 1:
        raise ValueError(
            f"{source.source}: pasting takes grayscale items, got {source.images.shape[1]} channels"
        )
    items = source.images[:, 0].numpy()
    labels = source.labels.numpy()
    canvases, objects = [], []
    for _ in range(count):
        n = int(rng.integers(1, s.max_objects + 1))
        classes = rng.choice(len(weights), size=n, p=weights)
        canvas, objs = paste_canvas(items, labels, classes, s, rng)
        canvases.append(canvas)
        objects.append(objs)
    return canvases, objects


def _coco(
    canvases: list[np.ndarray], objects: list[list[_Object]], class_names: list[str]
) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, (canvas, objs) in enumerate(zip(canvases, objects, strict=True), start=1):
        h, w = canvas.shape
        images.append({"id": i, "file_name": f"{i:06d}.png", "width": w, "height": h})
        for obj in objs:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": obj.category + 1,
                    "bbox": list(obj.box),
                    "area": int(obj.mask.sum()),
                    "segmentation": mask_to_rle(obj.mask),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_pasted_set(
    train: ImageArray, test: ImageArray, root: str | Path, s: PasteSettings
) -> dict[str, Any]:
    """Write the set under ``root`` from a source's ``train`` and ``test`` splits; returns a
    summary (also written to ``root/pasted.json``): the settings and, per split, images and
    objects per class.

    Raises:
        ValueError: settings out of range, or a source that is not grayscale.
    """
    if problems := s.problems():
        raise ValueError("; ".join(problems))
    root = Path(root)
    num_classes = len(train.class_names)
    counts = profile_counts("ldam", num_classes, 1000, s.imbalance_ratio)
    weights = {
        "train": np.asarray(counts, dtype=np.float64) / sum(counts),
        "val": np.full(num_classes, 1.0 / num_classes),
    }
    rng = np.random.default_rng(s.seed)
    summary: dict[str, Any] = {"settings": asdict(s), "source": train.source, "splits": {}}
    for split, source, count in (("train", train, s.train_images), ("val", test, s.val_images)):
        canvases, objects = _split(source, count, weights[split], s, rng)
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        coco = _coco(canvases, objects, list(train.class_names))
        for image, canvas in zip(coco["images"], canvases, strict=True):
            Image.fromarray(canvas).save(folder / image["file_name"])
        path = annotation_file(root, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(coco))
        per_class = Counter(a["category_id"] - 1 for a in coco["annotations"])
        summary["splits"][split] = {
            "images": len(canvases),
            "objects": len(coco["annotations"]),
            "objects_per_class": [per_class.get(c, 0) for c in range(num_classes)],
        }
    (root / "pasted.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
