"""The pasted-object detection set and the COCO-format reader: masks, boxes and classes are the
items' own, the files are deterministic, and every malformed field is named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from geoharmony.cli import main
from geoharmony.data.splits import DataFormatError, ImageArray
from geoharmony.detection.coco import (
    find_split,
    load_instances,
    mask_to_rle,
    rle_to_mask,
)
from geoharmony.detection.pasted import PasteSettings, write_pasted_set
from tiny_runs import needs_fashion_mnist

# Class c's items are a filled square of intensity 60 + 60 c (so a pixel tells its class).
LEVELS = (60, 120, 180)


def _items(per_class: int, seed: int) -> ImageArray:
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(3 * per_class, 1, 28, 28, dtype=torch.uint8)
    labels = torch.arange(3).repeat_interleave(per_class)
    for i, c in enumerate(labels.tolist()):
        lo = int(torch.randint(2, 8, (1,), generator=g))
        hi = int(torch.randint(18, 26, (1,), generator=g))
        images[i, 0, lo:hi, lo + 1 : hi] = LEVELS[c]
    return ImageArray(images, labels, ["a", "b", "c"], f"squares:{seed}")


SETTINGS = PasteSettings(canvas=64, train_images=30, val_images=8, max_objects=3, seed=5)


@pytest.fixture(scope="module")
def pasted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pasted")
    write_pasted_set(_items(6, 0), _items(4, 1), root, SETTINGS)
    return root


def test_rle_is_coco_s_column_major_runs_starting_with_zeros() -> None:
    mask = np.array([[0, 1], [1, 1]], dtype=bool)
    assert mask_to_rle(mask) == {"size": [2, 2], "counts": [1, 3]}
    assert mask_to_rle(np.ones((2, 3), bool))["counts"] == [0, 6]
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((int(rng.integers(1, 9)), int(rng.integers(1, 9)))) < 0.4
        assert np.array_equal(rle_to_mask(mask_to_rle(m)), m)


def test_every_object_is_its_own_pixels_box_and_class(pasted: Path) -> None:
    for split in ("train", "val"):
        path, folder = find_split(pasted, split)
        coco = load_instances(path, folder)
        assert coco.categories == {1: "a", 2: "b", 3: "c"}
        for image in coco.images:
            canvas = np.asarray(Image.open(folder / image.file_name))
            objects = coco.annotations[image.id]
            covered = np.zeros_like(canvas, dtype=bool)
            for ann in objects:
                mask = rle_to_mask(ann.segmentation)
                assert not (mask & covered).any()  # never overlapping
                covered |= mask
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                x, y, w, h = ann.bbox
                assert (x, y, w, h) == (
                    cols[0],
                    rows[0],
                    cols[-1] - cols[0] + 1,
                    rows[-1] - rows[0] + 1,
                )
                assert ann.area == mask.sum()
                # the class's intensity, away from the resized edges
                assert np.median(canvas[mask]) == LEVELS[ann.category_id - 1]
            assert np.array_equal(covered, canvas > SETTINGS.threshold)
            assert 1 <= len(objects) <= SETTINGS.max_objects


def test_the_same_settings_write_the_same_files(pasted: Path, tmp_path: Path) -> None:
    write_pasted_set(_items(6, 0), _items(4, 1), tmp_path, SETTINGS)
    for name in (
        "annotations/instances_train.json",
        "annotations/instances_val.json",
        "val/000003.png",
    ):
        assert (tmp_path / name).read_bytes() == (pasted / name).read_bytes()


def test_training_classes_follow_the_long_tail_and_validation_is_balanced(tmp_path: Path) -> None:
    s = PasteSettings(
        canvas=64, train_images=300, val_images=300, max_objects=2, imbalance_ratio=10
    )
    summary = write_pasted_set(_items(6, 0), _items(4, 1), tmp_path, s)
    train = summary["splits"]["train"]["objects_per_class"]
    val = summary["splits"]["val"]["objects_per_class"]
    assert train[0] > 2 * train[1] > 0 and train[1] > train[2] > 0  # shares 1 : 0.32 : 0.1
    assert max(val) < 1.3 * min(val)
    assert json.loads((tmp_path / "pasted.json").read_text())["settings"]["imbalance_ratio"] == 10


def _broken(data: dict[str, Any], field: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    ann, image = data["annotations"][0], data["images"][0]
    if field == "annotations":
        del data["annotations"]
    elif field == "bbox":
        ann["bbox"] = [1, 2, 3]
    elif field == "category_id":
        ann["category_id"] = 99
    elif field == "image_id":
        ann["image_id"] = 12345
    elif field == "size":
        ann["segmentation"]["size"] = [1, 1]
    elif field == "outside":
        ann["bbox"] = [image["width"] - 2, 0, 10, 10]
    elif field == "width":
        image["width"] = "wide"
    return data


@pytest.mark.parametrize(
    ("field", "named"),
    [
        ("annotations", "annotations: missing or not a list"),
        ("bbox", "annotations[0].bbox: must be [x, y, width, height]"),
        ("category_id", "annotations[0].category_id: no category has id 99"),
        ("image_id", "annotations[0].image_id: no image has id 12345"),
        ("size", "annotations[0].segmentation.size"),
        ("outside", "annotations[0].bbox"),
        ("width", "images[0].width: must be an integer"),
    ],
)
def test_a_malformed_field_is_named_with_its_file(
    pasted: Path, tmp_path: Path, field: str, named: str
) -> None:
    data = json.loads((pasted / "annotations" / "instances_val.json").read_text())
    bad = tmp_path / "instances_val.json"
    bad.write_text(json.dumps(_broken(data, field)))
    with pytest.raises(DataFormatError) as err:
        load_instances(bad)
    assert str(err.value).startswith(f"{bad}: {named}")


def test_unreadable_and_missing_files_are_named(pasted: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"broken\.json: not valid JSON"):
        load_instances(bad)
    with pytest.raises(DataFormatError, match=r"images\[0\]\.file_name: .* missing"):
        load_instances(pasted / "annotations" / "instances_val.json", tmp_path)
    with pytest.raises(DataFormatError, match=r"instances_test\.json: missing"):
        find_split(pasted, "test")


@needs_fashion_mnist
def test_the_command_pastes_fashion_mnist_and_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"
    args = ["detection-set", "--output", str(out)]
    assert main([*args, "--train-images", "12", "--val-images", "4", "--canvas", "64"]) == 0
    coco = load_instances(*find_split(out, "train"))
    assert len(coco.images) == 12 and coco.categories[1] == "T-shirt/top"
    assert "train: 12 images" in capsys.readouterr().out
    assert main([*args, "--max-objects", "0"]) == 2
    assert "max_objects must be positive" in capsys.readouterr().err
