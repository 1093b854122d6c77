from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from geoharmony.data.augment import imagenet_two_view_transform
from geoharmony.data.datasets import IndexedFileDataset, IndexedImageArray
from geoharmony.data.longtail import longtail_indices
from geoharmony.data.sources import DataFormatError, ImageArray, load_image_folder, load_list_file


def small_array(n: int = 40, classes: int = 4) -> ImageArray:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone()
    labels = torch.arange(n, dtype=torch.int64) % classes
    return ImageArray(images, labels, [f"c{i}" for i in range(classes)], "test")


def test_indexed_image_array() -> None:
    data = small_array()
    subset = longtail_indices(data.labels.numpy(), [10, 5, 3, 1], seed=0)
    ds = IndexedImageArray(data, subset)
    assert len(ds) == 19
    assert ds.class_counts == [10, 5, 3, 1]
    for pos in (0, 7, 18):
        image, label, index = ds[pos]
        assert index == pos
        assert image.shape == (3, 4, 4) and image.dtype == torch.uint8
        # Each source image is filled with its source index.
        assert int(image[0, 0, 0]) == subset[pos]
        assert label == int(data.labels[subset[pos]])
    assert ds[-1][2] == 18
    with pytest.raises(IndexError):
        ds[19]

    positions = torch.tensor([3, 0, 18])
    images, labels, idx = ds.get_batch(positions)
    assert images.shape == (3, 3, 4, 4)
    assert images[:, 0, 0, 0].tolist() == subset[[3, 0, 18]].tolist()
    assert labels.tolist() == [int(data.labels[subset[p]]) for p in (3, 0, 18)]
    assert torch.equal(idx, positions)

    batch = next(iter(DataLoader(ds, batch_size=19)))
    assert batch[2].tolist() == list(range(19))
    assert torch.equal(batch[1], ds.labels)

    assert len(IndexedImageArray(data)) == 40
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        IndexedImageArray(data, np.array([0, 40]))


def test_image_array_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageArray(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ["a"], "x")
    with pytest.raises(ValueError, match="int64"):
        ImageArray(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3), ["a"], "x")


def test_indexed_file_dataset(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.write_image(tmp_path / "cat" / "a.png", seed=1, size=(40, 30))
    fakes.write_image(tmp_path / "cat" / "b.jpg", seed=2, size=(40, 30))
    fakes.write_image(tmp_path / "dog" / "c.png", seed=3, size=(40, 30))
    files = load_image_folder(tmp_path)
    ds = IndexedFileDataset(files, np.array([2, 0]))
    assert ds.class_counts == [1, 1]
    image, label, index = ds[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (40, 30)
    assert (label, index) == (1, 0)
    expected = np.asarray(Image.open(tmp_path / "dog" / "c.png"))
    np.testing.assert_array_equal(np.asarray(image), expected)

    views = IndexedFileDataset(files, transform=imagenet_two_view_transform(size=24))
    (v1, v2), label, index = views[1]
    assert v1.shape == (3, 24, 24) and v1.dtype == torch.float32
    assert not torch.equal(v1, v2)
    assert (label, index) == (0, 1)


def test_indexed_file_dataset_gray_to_rgb(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    Image.fromarray(np.full((5, 6), 77, np.uint8)).save(tmp_path / "g" / "gray.png")
    image, _, _ = IndexedFileDataset(load_image_folder(tmp_path))[0]
    assert image.mode == "RGB" and np.asarray(image).shape == (5, 6, 3)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_unreadable_image(tmp_path: Path, fakes: SimpleNamespace, damage: str) -> None:
    fakes.write_image(tmp_path / "imgs" / "ok.png")
    fakes.write_image(tmp_path / "imgs" / "bad.jpg", size=(64, 64))
    bad = tmp_path / "imgs" / "bad.jpg"
    if damage == "truncate":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif damage == "garbage":
        bad.write_bytes(b"this is not a jpeg")
    else:
        bad.unlink()
    lst = tmp_path / "list.txt"
    lst.write_text("imgs/ok.png 0\nimgs/bad.jpg 1\n")
    ds = IndexedFileDataset(load_list_file(tmp_path, lst, check_files=False))
    assert ds[0][1] == 0
    with pytest.raises(DataFormatError, match=r"bad\.jpg: cannot read image"):
        ds[1]
