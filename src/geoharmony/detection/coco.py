"""COCO-format instance annotations: read, check and encode them.

A detection set is ``ROOT/annotations/instances_{split}.json`` plus the images it names, under
``ROOT/{split}/`` (COCO 2017 spells the folders ``train2017`` and ``val2017``; either works, see
:func:`find_split`). Every problem in a file is reported with the file and the field
(``annotations[12].bbox``), as a :class:`~geoharmony.data.splits.DataFormatError`, before any
model is built.

Masks travel as COCO's *uncompressed RLE*: ``{"size": [H, W], "counts": [...]}``, run lengths
of the mask read column by column (Fortran order), starting with a run of zeros.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoharmony.data.splits import DataFormatError

__all__ = [
    "Annotation",
    "CocoImage",
    "CocoInstances",
    "annotation_file",
    "find_split",
    "load_instances",
    "mask_to_rle",
    "rle_to_mask",
]


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Annotation:
    """One object: ``bbox`` ``[x, y, w, h]`` in pixels, ``segmentation`` polygons (a list of
    ``[x1, y1, x2, y2, ...]``) or an RLE dict, ``category_id`` as the file spells it."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    segmentation: Any
    area: float
    iscrowd: int


@dataclass(frozen=True)
class CocoInstances:
    """A checked annotation file: its images in file order, each image's objects, and the
    categories (id -> name) in file order."""

    path: Path
    images: list[CocoImage]
    annotations: dict[int, list[Annotation]]
    categories: dict[int, str]


def annotation_file(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def find_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of ``split`` (``train`` or ``val``) under ``root``:
    ``instances_{split}.json`` with ``{split}/``, or COCO 2017's ``instances_{split}2017.json``
    with ``{split}2017/``. Raises DataFormatError naming what is missing."""
    root = Path(root)
    for name in (split, f"{split}2017"):
        path, images = annotation_file(root, name), root / name
        if path.is_file():
            if not images.is_dir():
                raise DataFormatError(f"{path}: its image folder {images} is missing")
            return path, images
    raise DataFormatError(
        f"{annotation_file(root, split)}: missing (nor {annotation_file(root, split + '2017')}); "
        "a COCO-format set holds annotations/instances_{train,val}.json and the image folders"
    )


def load_instances(path: str | Path, image_root: str | Path | None = None) -> CocoInstances:
    """Read and check an instances file; with ``image_root``, also that every image exists.

    Raises:
        DataFormatError: naming the file and the field at fault.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: the top level must be an object")
    check = _Checker(path)
    images = [check.image(i, item) for i, item in enumerate(check.array(data, "images"))]
    by_id = {im.id: im for im in images}
    if len(by_id) != len(images):
        check.fail("images", "image ids repeat")
    categories: dict[int, str] = {}
    for i, item in enumerate(check.array(data, "categories")):
        where = f"categories[{i}]"
        cid = check.integer(item, "id", where)
        if cid in categories:
            check.fail(f"{where}.id", f"category {cid} appears twice")
        categories[cid] = check.string(item, "name", where)
    if not categories:
        check.fail("categories", "no category")
    annotations: dict[int, list[Annotation]] = {im.id: [] for im in images}
    seen: set[int] = set()
    for i, item in enumerate(check.array(data, "annotations")):
        ann = check.annotation(i, item, by_id, categories)
        if ann.id in seen:
            check.fail(f"annotations[{i}].id", f"annotation id {ann.id} appears twice")
        seen.add(ann.id)
        annotations[ann.image_id].append(ann)
    if image_root is not None:
        for i, im in enumerate(images):
            if not (Path(image_root) / im.file_name).is_file():
                check.fail(f"images[{i}].file_name", f"{Path(image_root) / im.file_name} missing")
    return CocoInstances(path, images, annotations, categories)


class _Checker:
    """Field checks of one file; every failure names ``file: field: problem``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> None:
        raise DataFormatError(f"{self.path}: {field}: {problem}")

    def array(self, data: dict[str, Any], key: str) -> list[Any]:
        value = data.get(key)
        if not isinstance(value, list):
            self.fail(key, "missing or not a list")
        return value  # type: ignore[return-value]

    def _value(self, item: Any, key: str, where: str) -> Any:
        if not isinstance(item, dict):
            self.fail(where, "not an object")
        if key not in item:
            self.fail(f"{where}.{key}", "missing")
        return item[key]

    def integer(self, item: Any, key: str, where: str) -> int:
        value = self._value(item, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where}.{key}", f"must be an integer, got {value!r}")
        return int(value)

    def string(self, item: Any, key: str, where: str) -> str:
        value = self._value(item, key, where)
        if not isinstance(value, str) or not value:
            self.fail(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
        return str(value)

    def image(self, i: int, item: Any) -> CocoImage:
        where = f"images[{i}]"
        im = CocoImage(
            self.integer(item, "id", where),
            self.string(item, "file_name", where),
            self.integer(item, "width", where),
            self.integer(item, "height", where),
        )
        if im.width < 1 or im.height < 1:
            self.fail(where, f"width and height must be positive, got {im.width} x {im.height}")
        return im

    def annotation(
        self, i: int, item: Any, images: dict[int, CocoImage], categories: dict[int, str]
    ) -> Annotation:
        where = f"annotations[{i}]"
        image_id = self.integer(item, "image_id", where)
        if image_id not in images:
            self.fail(f"{where}.image_id", f"no image has id {image_id}")
        category = self.integer(item, "category_id", where)
        if category not in categories:
            self.fail(f"{where}.category_id", f"no category has id {category}")
        box = self._value(item, "bbox", where)
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in box)
        ):
            self.fail(f"{where}.bbox", f"must be [x, y, width, height], got {box!r}")
        x, y, w, h = (float(v) for v in box)
        im = images[image_id]
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > im.width + 1 or y + h > im.height + 1:
            self.fail(
                f"{where}.bbox",
                f"{box} is empty or leaves image {image_id} ({im.width} x {im.height})",
            )
        segmentation = self._value(item, "segmentation", where)
        self.segmentation(segmentation, f"{where}.segmentation", im)
        iscrowd = int(item.get("iscrowd", 0))
        if iscrowd not in (0, 1):
            self.fail(f"{where}.iscrowd", f"must be 0 or 1, got {iscrowd}")
        area = item.get("area", w * h)
        return Annotation(
            self.integer(item, "id", where),
            image_id,
            category,
            (x, y, w, h),
            segmentation,
            float(area),
            iscrowd,
        )

    def segmentation(self, value: Any, where: str, im: CocoImage) -> None:
        if isinstance(value, dict):
            size, counts = value.get("size"), value.get("counts")
            if size != [im.height, im.width]:
                self.fail(f"{where}.size", f"must be [{im.height}, {im.width}], got {size!r}")
            if isinstance(counts, list):
                if sum(counts) != im.height * im.width or any(c < 0 for c in counts):
                    self.fail(f"{where}.counts", "runs must be >= 0 and cover the image")
            elif not isinstance(counts, str):
                self.fail(f"{where}.counts", "must be a list of runs or a compressed string")
            return
        if not isinstance(value, list) or not value:
            self.fail(where, "must be a list of polygons or an RLE object")
        for j, polygon in enumerate(value):
            if (
                not isinstance(polygon, list)
                or len(polygon) < 6
                or len(polygon) % 2
                or not all(isinstance(v, int | float) for v in polygon)
            ):
                self.fail(f"{where}[{j}]", "a polygon is [x1, y1, x2, y2, x3, y3, ...]")


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """``[H, W]`` bool mask -> COCO uncompressed RLE (column-major runs, zeros first)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]  # the first run counts zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(r) for r in runs]}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed COCO RLE -> ``[H, W]`` bool mask (the inverse of :func:`mask_to_rle`)."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, not {height} x {width}")
    return flat.reshape((height, width), order="F")
