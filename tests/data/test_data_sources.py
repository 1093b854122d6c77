from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from geoharmony.data.sources import (
    FASHION_MNIST_DEBIAN_ROOT,
    DataFormatError,
    FileList,
    ImageArray,
    load_cifar,
    load_fashion_mnist,
    load_image_folder,
    load_list_file,
    load_source,
    load_splits,
    read_idx,
)

# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_pickle_layout(tmp_path: Path, fakes: SimpleNamespace, protocol: int) -> None:
    written = fakes.make_cifar10(tmp_path, per_batch=4, protocol=protocol)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # parent dir or batches dir
        train = load_cifar(root, 10, train=True)
        assert isinstance(train, ImageArray)
        assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
        assert train.labels.dtype == torch.int64
        np.testing.assert_array_equal(train.images.numpy(), written["train_x"])
        np.testing.assert_array_equal(train.labels.numpy(), written["train_y"])
        assert train.class_names == [f"class{i}" for i in range(10)]
        assert "cifar10" in train.source and "train" in train.source
    test = load_cifar(tmp_path, 10, train=False)
    np.testing.assert_array_equal(test.images.numpy(), written["test_x"])
    np.testing.assert_array_equal(test.labels.numpy(), written["test_y"])


def test_cifar_channel_layout(tmp_path: Path, fakes: SimpleNamespace) -> None:
    # One red pixel at row 2, column 5: the row's first 1024 values are the red plane.
    base = tmp_path / "cifar-100-python"
    fakes.make_cifar100(tmp_path)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 2 * 32 + 5] = 200
    row[0, 1024 + 7] = 100  # green plane, row 0, column 7
    fakes.write_pickle(base / "test", {b"fine_labels": [3], b"coarse_labels": [0], b"data": row})
    img = load_cifar(base, 100, train=False).images[0]
    assert img[0, 2, 5] == 200 and img[1, 0, 7] == 100
    assert int(img.sum()) == 300


def test_cifar100_fine_labels(tmp_path: Path, fakes: SimpleNamespace) -> None:
    written = fakes.make_cifar100(tmp_path, n=6)
    data = load_source("cifar100", tmp_path, train=True)
    assert isinstance(data, ImageArray)
    np.testing.assert_array_equal(data.images.numpy(), written["train_x"])
    np.testing.assert_array_equal(data.labels.numpy(), written["train_y"])
    assert len(data.class_names) == 100 and data.class_names[7] == "fine7"
    assert len(load_source("cifar100", tmp_path, train=False)) == 6


def test_cifar_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"data_batch_1.*data.download=true"):
        load_cifar(tmp_path, 10, train=True)


@pytest.mark.parametrize("classes", [10, 100])
def test_download_fetches_torchvision_s_archive_once(
    tmp_path: Path, fakes: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, classes: int
) -> None:
    """data.download=true: torchvision's downloader gets its own CIFAR URL and MD5 and the
    target folder; the fake downloader (no network here) lays the files out as the archive
    would, and the source reads them. A second load finds them and fetches nothing."""
    from torchvision.datasets import CIFAR10, CIFAR100, utils

    dataset = CIFAR10 if classes == 10 else CIFAR100
    calls: list[tuple] = []

    def fake_download(url: str, root: str, filename: str, md5: str) -> None:
        calls.append((url, root, filename, md5))
        (fakes.make_cifar10 if classes == 10 else fakes.make_cifar100)(Path(root))

    monkeypatch.setattr(utils, "download_and_extract_archive", fake_download)
    root = tmp_path / "data"
    data = load_source(f"cifar{classes}", root, train=True, download=True)
    assert calls == [(dataset.url, str(root), dataset.filename, dataset.tgz_md5)]
    assert len(data.class_names) == classes
    load_source(f"cifar{classes}", root, train=False, download=True)
    assert len(calls) == 1


def test_download_is_refused_for_other_sources(tmp_path: Path) -> None:
    from geoharmony.config import ConfigError
    from geoharmony.configure import load_config
    from geoharmony.data.build import build_run_data

    cfg = load_config(None, ["data.download=true", "data.source=folder", f"data.root={tmp_path}"])
    with pytest.raises(ConfigError, match=r"data\.download=true fetches cifar10 and cifar100 only"):
        build_run_data(cfg.data)


def test_missing_list_file_says_where_the_official_splits_are(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"ImageNet_LT_train.txt.*Places_val.txt"):
        load_list_file(tmp_path, tmp_path / "ImageNet_LT_train.txt")


def test_cifar_truncated_pickle(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataFormatError, match=r"data_batch_3"):
        load_cifar(tmp_path, 10, train=True)


def test_cifar_bad_content(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.make_cifar10(tmp_path)
    base = tmp_path / "cifar-10-batches-py"
    fakes.write_pickle(
        base / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    )
    with pytest.raises(DataFormatError, match=r"test_batch.*uint8 \[N, 3072\]"):
        load_cifar(tmp_path, 10, train=False)
    fakes.write_pickle(
        base / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}
    )
    with pytest.raises(DataFormatError, match=r"test_batch.*outside \[0, 10\)"):
        load_cifar(tmp_path, 10, train=False)
    fakes.write_pickle(base / "test_batch", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DataFormatError, match=r"test_batch.*missing key"):
        load_cifar(tmp_path, 10, train=False)
    fakes.write_pickle(base / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(DataFormatError, match=r"batches\.meta.*10 class names"):
        load_cifar(tmp_path, 10, train=True)


def test_cifar_pickle_cannot_run_code(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.make_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(DataFormatError, match=r"batches\.meta.*not allowed"):
        load_cifar(tmp_path, 10, train=True)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Fashion-MNIST / IDX
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_idx(tmp_path: Path, fakes: SimpleNamespace, compress: bool) -> None:
    written = fakes.make_fashion_mnist(tmp_path, n_train=12, n_test=5, compress=compress)
    train = load_fashion_mnist(tmp_path, train=True)
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.uint8
    np.testing.assert_array_equal(train.images[:, 0].numpy(), written["train_x"])
    np.testing.assert_array_equal(train.labels.numpy(), written["train_y"])
    assert train.class_names[0] == "T-shirt/top" and len(train.class_names) == 10
    test = load_source("fashion_mnist", tmp_path, train=False)
    assert len(test) == 5


def _corrupt(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.write_bytes(data)
    return path


def test_idx_errors(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.make_fashion_mnist(tmp_path)
    images = np.zeros((3, 28, 28), np.uint8)
    good = fakes.idx_bytes(images)

    p = _corrupt(tmp_path, "trunc.gz", gzip.compress(good)[:-20])
    with pytest.raises(DataFormatError, match=r"trunc\.gz.*gzip"):
        read_idx(p)
    p = _corrupt(tmp_path, "short-payload.gz", gzip.compress(good[:-10]))
    with pytest.raises(DataFormatError, match=r"short-payload\.gz.*truncated"):
        read_idx(p)
    p = _corrupt(tmp_path, "trailing", good + b"xx")
    with pytest.raises(DataFormatError, match=r"trailing.*trailing data"):
        read_idx(p)
    p = _corrupt(tmp_path, "magic", b"\x01\x02" + good[2:])
    with pytest.raises(DataFormatError, match=r"magic.*bad IDX magic"):
        read_idx(p)
    p = _corrupt(tmp_path, "float", good[:2] + b"\x0d" + good[3:])
    with pytest.raises(DataFormatError, match=r"float.*type 0x0d"):
        read_idx(p)
    p = _corrupt(tmp_path, "header", good[:9])
    with pytest.raises(DataFormatError, match=r"header.*truncated IDX header"):
        read_idx(p)
    with pytest.raises(DataFormatError, match=r"dims.*2 dimensions, expected 3"):
        read_idx(_corrupt(tmp_path, "dims", fakes.idx_bytes(np.zeros((3, 4), np.uint8))), 3)
    np.testing.assert_array_equal(read_idx(_corrupt(tmp_path, "ok", good), 3), images)


def test_fashion_mnist_inconsistent(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.make_fashion_mnist(tmp_path, n_test=5)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(fakes.idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataFormatError, match=r"5 images but .*t10k-labels-idx1-ubyte\.gz has 4"):
        load_fashion_mnist(tmp_path, train=False)
    labels.write_bytes(gzip.compress(fakes.idx_bytes(np.full(5, 10, np.uint8))))
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte\.gz: label 10"):
        load_fashion_mnist(tmp_path, train=False)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz: file not found"):
        load_fashion_mnist(tmp_path, train=True)


@pytest.mark.skipif(
    not (FASHION_MNIST_DEBIAN_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install it)",
)
def test_fashion_mnist_debian_package() -> None:
    train = load_fashion_mnist(None, train=True)
    test = load_fashion_mnist(None, train=False)
    assert train.images.shape == (60_000, 1, 28, 28)
    assert test.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert str(FASHION_MNIST_DEBIAN_ROOT) in train.source


# --------------------------------------------------------------------------------------------
# List files and image folders
# --------------------------------------------------------------------------------------------


def test_list_file(tmp_path: Path, fakes: SimpleNamespace) -> None:
    for i, rel in enumerate(["train/a/0.jpg", "train/b/1.png", "train/b/two words.png"]):
        fakes.write_image(tmp_path / rel, seed=i)
    lst = tmp_path / "ImageNet_LT_train.txt"
    lst.write_text("train/a/0.jpg 0\n\ntrain/b/1.png 2\ntrain/b/two words.png 2\n")
    files = load_list_file(tmp_path, lst)
    assert isinstance(files, FileList)
    assert files.paths == ["train/a/0.jpg", "train/b/1.png", "train/b/two words.png"]
    assert files.labels.tolist() == [0, 2, 2] and files.labels.dtype == np.int64
    assert files.class_names == ["0", "1", "2"]
    same = load_source("list", tmp_path, train=True, train_list=lst)
    assert isinstance(same, FileList) and same.paths == files.paths
    with pytest.raises(ValueError, match=r"test_list"):
        load_source("list", tmp_path, train=False, train_list=lst)


def test_list_file_errors(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.write_image(tmp_path / "a.png")
    lst = tmp_path / "list.txt"
    lst.write_text("a.png 0\na.png cat\n")
    with pytest.raises(DataFormatError, match=r"list\.txt:2: expected 'relative/path label'"):
        load_list_file(tmp_path, lst)
    lst.write_text("a.png 0\njustonefield\n")
    with pytest.raises(DataFormatError, match=r"list\.txt:2:"):
        load_list_file(tmp_path, lst)
    lst.write_text("a.png 0\nmissing.png 1\n")
    with pytest.raises(DataFormatError, match=r"list\.txt: 1 listed files not found.*missing\.png"):
        load_list_file(tmp_path, lst)
    assert len(load_list_file(tmp_path, lst, check_files=False)) == 2
    lst.write_text("\n")
    with pytest.raises(DataFormatError, match=r"list\.txt: no entries"):
        load_list_file(tmp_path, lst)
    with pytest.raises(DataFormatError, match=r"nope\.txt: list file not found"):
        load_list_file(tmp_path, tmp_path / "nope.txt")


def test_image_folder(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.write_image(tmp_path / "zebra" / "z1.PNG")
    fakes.write_image(tmp_path / "ant" / "sub" / "a2.jpeg")
    fakes.write_image(tmp_path / "ant" / "a1.jpg")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    fakes.write_image(tmp_path / "ant" / ".hidden.png")
    (tmp_path / ".cache").mkdir()
    files = load_image_folder(tmp_path)
    assert files.class_names == ["ant", "zebra"]
    assert files.paths == ["ant/a1.jpg", "ant/sub/a2.jpeg", "zebra/z1.PNG"]
    assert files.labels.tolist() == [0, 0, 1]


def test_image_folder_without_classes_is_unlabeled(tmp_path: Path, fakes: SimpleNamespace) -> None:
    # Images directly in the folder, or all in one sub-folder: no class information.
    fakes.write_image(tmp_path / "flat" / "b.png")
    fakes.write_image(tmp_path / "flat" / "a.jpg")
    fakes.write_image(tmp_path / "one" / "all" / "x" / "c.png")
    for root, paths in (("flat", ["a.jpg", "b.png"]), ("one", ["all/x/c.png"])):
        files = load_image_folder(tmp_path / root)
        assert files.paths == paths and files.class_names == [] and files.num_classes == 0
        assert files.labels.tolist() == [-1] * len(paths)
    # labels="none": class-like sub-folders are not classes.
    fakes.write_image(tmp_path / "nested" / "2021" / "p.png")
    fakes.write_image(tmp_path / "nested" / "2022" / "q.png")
    assert load_image_folder(tmp_path / "nested").class_names == ["2021", "2022"]
    files = load_image_folder(tmp_path / "nested", labels="none")
    assert files.paths == ["2021/p.png", "2022/q.png"] and files.num_classes == 0


def test_image_folder_errors(tmp_path: Path, fakes: SimpleNamespace) -> None:
    with pytest.raises(DataFormatError, match=r"no images with extensions"):
        load_image_folder(tmp_path)
    fakes.write_image(tmp_path / "cat" / "0.png")
    fakes.write_image(tmp_path / "dog" / "0.png")
    fakes.write_image(tmp_path / "stray.PNG")
    with pytest.raises(DataFormatError, match=r"1 images .*'stray.PNG'.*data.labels=none"):
        load_image_folder(tmp_path)
    (tmp_path / "stray.PNG").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty: class folder holds no images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataFormatError, match=r"no class sub-folders"):
        load_image_folder(tmp_path / "cat", labels="folders")
    with pytest.raises(DataFormatError, match=r"image folder not found"):
        load_image_folder(tmp_path / "absent")


def test_folder_source_splits(tmp_path: Path, fakes: SimpleNamespace) -> None:
    fakes.write_image(tmp_path / "train" / "cat" / "0.png")
    fakes.write_image(tmp_path / "train" / "dog" / "0.png")
    fakes.write_image(tmp_path / "val" / "dog" / "1.png")
    train = load_source("folder", tmp_path, train=True)
    test = load_source("folder", tmp_path, train=False)
    assert isinstance(train, FileList) and isinstance(test, FileList)
    assert train.class_names == ["cat", "dog"] and len(train) == 2
    assert test.root == tmp_path / "val" and len(test) == 1
    with pytest.raises(DataFormatError, match=r"no test split"):
        load_source("folder", tmp_path / "train", train=False)
    # load_splits: a test split of one class keeps the training split's class ids.
    train, test = load_splits("folder", tmp_path)
    assert test is not None and test.class_names == ["cat", "dog"]
    assert test.labels_of().tolist() == [1]
    assert load_splits("folder", tmp_path / "train")[1] is None  # no test split
    unlabeled, none = load_splits("folder", tmp_path, labels="none")
    assert none is None and unlabeled.num_classes == 0 and len(unlabeled) == 2
    (tmp_path / "val" / "bird").mkdir()
    fakes.write_image(tmp_path / "val" / "bird" / "2.png")
    with pytest.raises(DataFormatError, match=r"test classes \['bird'\] do not occur"):
        load_splits("folder", tmp_path)


def test_load_source_unknown() -> None:
    with pytest.raises(ValueError, match=r"unknown data source 'imagenet'.*cifar10.*folder"):
        load_source("imagenet", "/tmp", train=True)
